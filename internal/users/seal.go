package users

// Sealed storage of users.db (storage version 2, docs/STORAGE.md section
// 7). With Options.Key, every record of the users, folders, groups,
// invitations and links buckets is stored under a keyed hash of its name
// (HMAC-SHA256, 128 bits) and its value, the name included, is sealed with
// XChaCha20-Poly1305 bound to its bucket and stored key: a copy of the file
// shows no user, folder or group name, no SSH key or comment, no rights,
// quotas or two-factor secrets, and a value moved to another name does not
// open. The meta bucket (schema version, revision counter) stays plain.
//
// The rest of the package does not see the difference: it works on txn
// and bucket, which have bbolt's method names and seal or pass through.

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of Options.Key.
const KeySize = 32

// KeyBinding is the envelope binding context of the key file that holds
// Options.Key (securefsd keeps it wrapped by the keyring, next to
// users.db, and re-wraps it at key rotation).
var KeyBinding = []byte("securefsd users key")

// The HKDF labels and associated-data prefix are part of the sealed
// format: changing one is a format change.
const (
	labelSealKeys   = "securefsd v2 users keys"
	labelSealValues = "securefsd v2 users values"
	sealAADPrefix   = "securefsd v2 users "
)

// sealedSchema is the schema of a sealed database: schema 1's records,
// sealed. An older securefsd refuses it (a newer schema) instead of
// misreading it.
const sealedSchema = 2

var (
	// ErrKeyRequired: the database is sealed and Options.Key is missing.
	ErrKeyRequired = errors.New("users: the database is sealed: its key is required")
	// ErrSealed: a sealed record (or the key check) does not open with
	// Options.Key: another data directory's key, or a damaged record.
	ErrSealed = errors.New("users: sealed record does not open with this key")
)

// bucketSealCheck holds one sealed value that only the right key opens,
// so Open tells a wrong key at once.
var (
	bucketSealCheck = []byte("sealcheck")
	keySealCheck    = []byte("check")
)

// sealedBuckets are the buckets whose records are sealed.
var sealedBuckets = [][]byte{bucketUsers, bucketFolders, bucketGroups, bucketInvites, bucketLinks, bucketSealCheck}

type sealer struct {
	keys []byte
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("users: key of %d bytes, want %d", len(key), KeySize)
	}
	kk, err := hkdf.Key(sha256.New, key, nil, labelSealKeys, 32)
	if err != nil {
		return nil, err
	}
	vk, err := hkdf.Key(sha256.New, key, nil, labelSealValues, 32)
	if err != nil {
		return nil, err
	}
	defer clear(vk)
	a, err := chacha20poly1305.NewX(vk)
	if err != nil {
		return nil, err
	}
	return &sealer{keys: kk, aead: a}, nil
}

// storedKey is the bbolt key of name k in bucket.
func (s *sealer) storedKey(bucket, k []byte) []byte {
	m := hmac.New(sha256.New, s.keys)
	m.Write(bucket)
	m.Write([]byte{0})
	m.Write(k)
	return m.Sum(nil)[:16]
}

func sealAAD(bucket, sk []byte) []byte {
	return slices.Concat([]byte(sealAADPrefix), bucket, []byte{0}, sk)
}

// seal returns nonce ‖ AEAD(u16 len(k) ‖ k ‖ v).
func (s *sealer) seal(bucket, sk, k, v []byte) []byte {
	plain := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(k)+len(v)), uint16(len(k)))
	plain = append(append(plain, k...), v...)
	out := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(out)
	return s.aead.Seal(out, out, plain, sealAAD(bucket, sk))
}

// open returns the name and value sealed under sk.
func (s *sealer) open(bucket, sk, sealed []byte) (k, v []byte, err error) {
	n := chacha20poly1305.NonceSizeX
	if len(sealed) < n+s.aead.Overhead() {
		return nil, nil, ErrSealed
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], sealAAD(bucket, sk))
	if err != nil || len(plain) < 2 {
		return nil, nil, ErrSealed
	}
	l := int(binary.BigEndian.Uint16(plain))
	if len(plain) < 2+l {
		return nil, nil, ErrSealed
	}
	return plain[2 : 2+l], plain[2+l:], nil
}

// txn is an engine's transaction seen through the database's sealer.
type txn struct {
	tx rawTx
	db *DB
}

// rawTx and rawBucket are what txn and bucket need of an engine: bbolt's
// transaction (boltTx) and bucket, or an etcd transaction (etcd.go). A
// rawBucket holds stored keys and stored (sealed or plain) values.
type rawTx interface {
	bucket(name []byte) rawBucket // nil if it does not exist
	createBucketIfNotExists(name []byte) (rawBucket, error)
}

type rawBucket interface {
	Get(k []byte) []byte
	Put(k, v []byte) error
	Delete(k []byte) error
	ForEach(fn func(k, v []byte) error) error
}

// boltTx is a bbolt transaction as a rawTx.
type boltTx struct{ tx *bbolt.Tx }

func (t boltTx) bucket(name []byte) rawBucket {
	if b := t.tx.Bucket(name); b != nil {
		return b
	}
	return nil // not a nil *bbolt.Bucket in a non-nil interface
}

func (t boltTx) createBucketIfNotExists(name []byte) (rawBucket, error) {
	return t.tx.CreateBucketIfNotExists(name)
}

// Bucket returns the named bucket, nil if it does not exist.
func (t *txn) Bucket(name []byte) *bucket {
	b := t.tx.bucket(name)
	if b == nil {
		return nil
	}
	return t.wrap(name, b)
}

// CreateBucketIfNotExists returns the named bucket, made if missing.
func (t *txn) CreateBucketIfNotExists(name []byte) (*bucket, error) {
	b, err := t.tx.createBucketIfNotExists(name)
	if err != nil {
		return nil, err
	}
	return t.wrap(name, b), nil
}

func (t *txn) wrap(name []byte, b rawBucket) *bucket {
	w := &bucket{b: b, name: name, db: t.db}
	if t.db.seal != nil && slices.ContainsFunc(sealedBuckets, func(s []byte) bool { return bytes.Equal(s, name) }) {
		w.s = t.db.seal
	}
	return w
}

// bucket is an engine's bucket whose records are sealed (s set) or plain.
type bucket struct {
	b    rawBucket
	name []byte
	s    *sealer
	db   *DB
}

// Get returns the value of k, nil if none. A sealed record that does not
// open is logged and reads as missing: the caller fails closed (an
// unknown user, folder or link).
func (b *bucket) Get(k []byte) []byte {
	if b.s == nil {
		return b.b.Get(k)
	}
	sk := b.s.storedKey(b.name, k)
	sealed := b.b.Get(sk)
	if sealed == nil {
		return nil
	}
	name, v, err := b.s.open(b.name, sk, sealed)
	if err != nil || !bytes.Equal(name, k) {
		b.db.log.Error("users: a sealed record does not open (damaged or moved): treated as missing", "bucket", string(b.name))
		return nil
	}
	return v
}

// Put stores v under k.
func (b *bucket) Put(k, v []byte) error {
	if b.s == nil {
		return b.b.Put(k, v)
	}
	if len(k) > 0xffff {
		return fmt.Errorf("users: key of %d bytes", len(k))
	}
	sk := b.s.storedKey(b.name, k)
	return b.b.Put(sk, b.s.seal(b.name, sk, k, v))
}

// Delete removes k (nothing if absent).
func (b *bucket) Delete(k []byte) error {
	if b.s == nil {
		return b.b.Delete(k)
	}
	return b.b.Delete(b.s.storedKey(b.name, k))
}

// ForEach calls fn for every record in name order (bbolt's order for a
// plain bucket; a sealed one is opened whole and sorted). A sealed record
// that does not open stops it with ErrSealed.
func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	if b.s == nil {
		return b.b.ForEach(fn)
	}
	type kv struct{ k, v []byte }
	var all []kv
	err := b.b.ForEach(func(sk, sealed []byte) error {
		k, v, err := b.s.open(b.name, sk, sealed)
		if err != nil || !bytes.Equal(sk, b.s.storedKey(b.name, k)) {
			return fmt.Errorf("users: bucket %s: %w", b.name, ErrSealed)
		}
		all = append(all, kv{k, v})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, c kv) int { return bytes.Compare(a.k, c.k) })
	for _, e := range all {
		if err := fn(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// update and view run fn in a read-write or read-only transaction of the
// database's engine (bbolt, or etcd: etcd.go) seen through the sealer. On
// etcd, fn may run more than once (a conflict with another node's update
// runs it again), so it must act only through its txn.
func (db *DB) update(fn func(tx *txn) error) error {
	if db.etcd != nil {
		return db.etcd.update(func(tx rawTx) error { return fn(&txn{tx: tx, db: db}) })
	}
	return db.bolt.Update(func(tx *bbolt.Tx) error { return fn(&txn{tx: boltTx{tx}, db: db}) })
}

func (db *DB) view(fn func(tx *txn) error) error {
	if db.etcd != nil {
		return db.etcd.view(func(tx rawTx) error { return fn(&txn{tx: tx, db: db}) })
	}
	return db.bolt.View(func(tx *bbolt.Tx) error { return fn(&txn{tx: boltTx{tx}, db: db}) })
}

// sealAll turns a plain schema-1 database into a sealed one in tx: every
// record of the sealed buckets is rewritten under its keyed name, the key
// check is written and the schema becomes sealedSchema. One transaction:
// a crash leaves the plain database.
func (db *DB) sealAll(tx *bbolt.Tx, meta *bbolt.Bucket) error {
	for _, name := range sealedBuckets {
		old := tx.Bucket(name)
		if old == nil {
			continue
		}
		var recs [][2][]byte
		if err := old.ForEach(func(k, v []byte) error {
			recs = append(recs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			return nil
		}); err != nil {
			return err
		}
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		nb, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		w := &bucket{b: nb, name: name, s: db.seal, db: db}
		for _, r := range recs {
			if err := w.Put(r[0], r[1]); err != nil {
				return err
			}
		}
		clear(recs)
	}
	check, err := tx.CreateBucketIfNotExists(bucketSealCheck)
	if err != nil {
		return err
	}
	if err := (&bucket{b: check, name: bucketSealCheck, s: db.seal, db: db}).Put(keySealCheck, keySealCheck); err != nil {
		return err
	}
	return putU64(meta, keySchema, sealedSchema)
}

// checkSeal tells a wrong key at open.
func (db *DB) checkSeal(tx rawTx) error {
	b := tx.bucket(bucketSealCheck)
	if b == nil {
		return fmt.Errorf("users: sealed database without its key check: %w", ErrSealed)
	}
	sk := db.seal.storedKey(bucketSealCheck, keySealCheck)
	if _, _, err := db.seal.open(bucketSealCheck, sk, b.Get(sk)); err != nil {
		return fmt.Errorf("users: wrong key for this database (another data directory's?): %w", ErrSealed)
	}
	return nil
}

// compactInPlace rewrites the open database b at path into a fresh file
// (bbolt.Compact: live pages only), fsyncs it, renames it over path and
// returns it open. b is closed. A crash before the rename leaves b's file
// as it was (sealed) and a temporary that the next compaction replaces.
func compactInPlace(b *bbolt.DB, path string, timeout time.Duration) (*bbolt.DB, error) {
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: timeout})
	if err == nil {
		err = bbolt.Compact(dst, b, 0)
		if cerr := dst.Close(); err == nil {
			err = cerr // Close syncs nothing more; Compact's commits fsynced
		}
	}
	if err == nil {
		// Close b (its lock) before the rename: the new file takes over.
		err = b.Close()
		b = nil
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		if d, derr := os.Open(filepath.Dir(path)); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		os.Remove(tmp)
		if b != nil {
			b.Close()
		}
		return nil, fmt.Errorf("compact: %w", err)
	}
	return bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout})
}

// Verify opens every sealed record of the database and calls damaged for
// each one that does not open under its name (moved, damaged, or sealed
// with another key), naming its bucket. It returns how many records it
// checked. A plain database has nothing to check.
func (db *DB) Verify(damaged func(bucket string, err error)) (int, error) {
	if db.seal == nil {
		return 0, nil
	}
	n := 0
	err := db.view(func(t *txn) error {
		for _, name := range sealedBuckets {
			b := t.tx.bucket(name)
			if b == nil {
				continue
			}
			err := b.ForEach(func(sk, sealed []byte) error {
				n++
				k, _, err := db.seal.open(name, sk, sealed)
				if err == nil && !bytes.Equal(sk, db.seal.storedKey(name, k)) {
					err = ErrSealed
				}
				if err != nil && damaged != nil {
					damaged(string(name), fmt.Errorf("record %x: %w", sk, err))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}
