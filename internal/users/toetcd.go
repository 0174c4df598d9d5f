package users

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrPrefixInUse: CopyToEtcd's target prefix already holds a database.
var ErrPrefixInUse = errors.New("users: the etcd prefix already holds a user database")

// CopyToEtcd copies this sealed single-node database into an empty etcd
// prefix, record for record (the sealed bytes as they are: etcd gets the
// same ciphertext), for moving a data directory into a cluster
// (`securefsd migrate --to-etcd`). The revision counter goes with it, so
// the rollback anchor and open sessions' revisions stay meaningful. It
// reads one bbolt transaction (a consistent copy while the server runs)
// and writes in etcd transactions of at most cfg.MaxTxnOps keys;
// meta/schema is written last, so an interrupted copy is not a database:
// OpenEtcd refuses it (ErrSchema) and CopyToEtcd runs again over it. A
// prefix already holding a database is ErrPrefixInUse.
func (db *DB) CopyToEtcd(ctx context.Context, cfg EtcdConfig) error {
	if db.etcd != nil || db.seal == nil {
		return fmt.Errorf("users: copy to etcd: needs a sealed bbolt database: %w", ErrNotSupported)
	}
	if cfg.Client == nil || cfg.Prefix == "" {
		return errors.New("users: etcd needs a client and a non-empty prefix")
	}
	maxOps := cfg.MaxTxnOps
	if maxOps <= 0 {
		maxOps = DefaultMaxTxnOps
	}
	schemaKey := cfg.Prefix + string(bucketMeta) + "/" + string(keySchema)
	resp, err := cfg.Client.Get(ctx, schemaKey)
	if err != nil {
		return etcdErr("copy", err)
	}
	if len(resp.Kvs) != 0 {
		return fmt.Errorf("users: copy to etcd prefix %q: %w", cfg.Prefix, ErrPrefixInUse)
	}
	return db.bolt.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v, _ := getU64(meta, keySchema); v != sealedSchema {
			return fmt.Errorf("users: copy to etcd: schema %d, want the sealed %d: %w", v, sealedSchema, ErrSchema)
		}
		var ops []clientv3.Op
		flush := func() error {
			if len(ops) == 0 {
				return nil
			}
			// Only while the prefix is still no database: a node that
			// opened it meanwhile made it one.
			_, err := cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(schemaKey), "=", 0)).Then(ops...).Commit()
			ops = ops[:0]
			if err != nil {
				return etcdErr("copy", err)
			}
			return nil
		}
		// The key check first: a copy cut short has it, which tells
		// OpenEtcd the prefix is not new.
		order := append([][]byte{bucketSealCheck}, sealedBuckets...)
		for i, name := range order {
			if i > 0 && bytes.Equal(name, bucketSealCheck) {
				continue
			}
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			err := b.ForEach(func(k, v []byte) error {
				ops = append(ops, clientv3.OpPut(cfg.Prefix+string(name)+"/"+string(k), string(v)))
				if len(ops) == maxOps {
					return flush()
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("users: copy to etcd: %w", err)
			}
		}
		if rev := meta.Get(keyRevision); rev != nil {
			ops = append(ops, clientv3.OpPut(cfg.Prefix+string(bucketMeta)+"/"+string(keyRevision), string(rev)))
		}
		if err := flush(); err != nil {
			return err
		}
		r, err := cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(schemaKey), "=", 0)).
			Then(clientv3.OpPut(schemaKey, string(bytes.Clone(meta.Get(keySchema))))).Commit()
		if err != nil {
			return etcdErr("copy", err)
		}
		if !r.Succeeded {
			return fmt.Errorf("users: copy to etcd prefix %q: %w", cfg.Prefix, ErrPrefixInUse)
		}
		return nil
	})
}

// MatchesEtcd reports whether cfg.Prefix holds exactly what CopyToEtcd
// writes of this database now (every record and the revision counter,
// byte for byte, and nothing else): the copy a `migrate --to-etcd` cut
// short after its last step made, not another database or one changed
// since.
func (db *DB) MatchesEtcd(ctx context.Context, cfg EtcdConfig) (bool, error) {
	if db.etcd != nil || db.seal == nil {
		return false, fmt.Errorf("users: compare with etcd: needs a sealed bbolt database: %w", ErrNotSupported)
	}
	if cfg.Client == nil || cfg.Prefix == "" {
		return false, errors.New("users: etcd needs a client and a non-empty prefix")
	}
	want := map[string][]byte{}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		for _, name := range sealedBuckets {
			if b := tx.Bucket(name); b != nil {
				b.ForEach(func(k, v []byte) error {
					want[cfg.Prefix+string(name)+"/"+string(k)] = bytes.Clone(v)
					return nil
				})
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keySchema, keyRevision} {
			if v := meta.Get(k); v != nil {
				want[cfg.Prefix+string(bucketMeta)+"/"+string(k)] = bytes.Clone(v)
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("users: compare with etcd: %w", err)
	}
	resp, err := cfg.Client.Get(ctx, cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		return false, etcdErr("compare", err)
	}
	if len(resp.Kvs) != len(want) {
		return false, nil
	}
	for _, kv := range resp.Kvs {
		if v, ok := want[string(kv.Key)]; !ok || !bytes.Equal(v, kv.Value) {
			return false, nil
		}
	}
	return true, nil
}
