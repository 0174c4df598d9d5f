package users

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// migrations[n] upgrades a database from schema n to n+1 inside the one
// transaction Open runs; a failed step leaves the file as it was. Add a step
// here (and bump SchemaVersion) for every layout change; never edit a
// released step.
var migrations = [SchemaVersion]func(tx *bbolt.Tx) error{
	0: migrateV0toV1,
}

// migrate brings the database to SchemaVersion. A file with no buckets is
// new and is created at SchemaVersion directly; a "users" bucket without a
// "meta" bucket is schema 0.
func (db *DB) migrate() (sealed bool, err error) {
	var rev uint64
	err = db.bolt.Update(func(tx *bbolt.Tx) error {
		meta, users := tx.Bucket(bucketMeta), tx.Bucket(bucketUsers)
		var v uint64
		switch {
		case meta == nil && users == nil:
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if _, err = tx.CreateBucket(bucketUsers); err != nil {
				return err
			}
			v = SchemaVersion
		case meta == nil:
			v = 0
		default:
			var ok bool
			if v, ok = getU64(meta, keySchema); !ok {
				return fmt.Errorf("users: meta bucket without a schema version: %w", ErrSchema)
			}
		}
		if v == sealedSchema {
			if db.seal == nil {
				return ErrKeyRequired
			}
			if err := db.checkSeal(boltTx{tx}); err != nil {
				return err
			}
			rev, _ = getU64(meta, keyRevision)
			return nil
		}
		if v > SchemaVersion {
			return fmt.Errorf("users: database schema %d, this securefsd supports up to %d: %w", v, SchemaVersion, ErrSchema)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("users: migrate schema %d to %d: %w", v, v+1, err)
			}
			db.log.Info("users: migrated database schema", "from", v, "to", v+1)
		}
		meta = tx.Bucket(bucketMeta)
		if err := putU64(meta, keySchema, SchemaVersion); err != nil {
			return err
		}
		rev, _ = getU64(meta, keyRevision)
		if db.seal != nil {
			if err := db.sealAll(tx, meta); err != nil {
				return fmt.Errorf("users: seal the database: %w", err)
			}
			sealed = true
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	db.noteRev(rev)
	return sealed, nil
}

// recordV0 is the pre-release layout: no meta bucket, a read-only flag
// instead of rights, keys as bare authorized_keys lines, no home, no quotas.
type recordV0 struct {
	Name     string    `json:"name"`
	Hash     string    `json:"hash"`
	Keys     []string  `json:"keys"`
	ReadOnly bool      `json:"read_only"`
	Disabled bool      `json:"disabled"`
	Created  time.Time `json:"created"`
}

// migrateV0toV1 adds the meta bucket and rewrites every record: read_only
// becomes PermReadOnly (else PermAll), keys get fingerprints and comments,
// home defaults to the name. A key line that no longer parses is dropped
// (that only removes access) and the rest of the user kept.
func migrateV0toV1(tx *bbolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketMeta); err != nil {
		return err
	}
	users := tx.Bucket(bucketUsers)
	type kv struct {
		k []byte
		r record
	}
	var out []kv
	err := users.ForEach(func(k, v []byte) error {
		var o recordV0
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("record %q: %w", k, err)
		}
		r := record{Name: string(k), PasswordHash: o.Hash, Home: string(k), Perms: uint32(PermAll),
			Disabled: o.Disabled, Created: o.Created}
		if o.ReadOnly {
			r.Perms = uint32(PermReadOnly)
		}
		for _, line := range o.Keys {
			key, _, err := ParseKey(line)
			if err != nil {
				continue
			}
			key.Added = o.Created
			r.Keys = append(r.Keys, key)
		}
		out = append(out, kv{append([]byte(nil), k...), r})
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range out {
		if err := putRecord(users, e.r); err != nil {
			return err
		}
	}
	return nil
}
