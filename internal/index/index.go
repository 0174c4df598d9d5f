// Package index is storage version 2's namespace index (docs/STORAGE.md,
// section 4): a keyspace of sealed records in one bbolt file.
//
// Whoever holds the file without the key learns the number of records and
// their sizes, nothing else: keys are opaque bytes the caller derives with
// NameKey (a keyed hash, never a name), and every value is sealed with
// XChaCha20-Poly1305 under a key derived from the index's root key, with
// its kind and key as associated data, so a value copied or moved to
// another key does not open (ErrAuth).
//
// Every Update bumps the index's epoch and keeps a root hash: the XOR of a
// keyed MAC of every (kind, key, sealed value). A record removed, added or
// put back from an older copy leaves the stored root hash wrong, which
// Verify reports (ErrRolledBack); a whole index put back from an older,
// consistent copy is caught by an anchor kept outside the data directory
// (WriteAnchor, CheckAnchor).
package index

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/chacha20poly1305"
)

// The HKDF labels and the associated-data prefix are part of the format
// (docs/FORMAT.md version 2): changing one is a format change.
const (
	labelName   = "securefsd v2 name"
	labelRecord = "securefsd v2 record"
	labelSum    = "securefsd v2 root hash"
	aadPrefix   = "securefsd v2 record "
	// RootKeySize is the size of the root key Open takes.
	RootKeySize = 32
	// NameKeySize is the size of a NameKey.
	NameKeySize = 16
)

// Errors callers test with errors.Is.
var (
	// ErrNotFound: no record under that kind and key.
	ErrNotFound = errors.New("index: no such record")
	// ErrAuth: a record (or the index's state) does not open with this
	// root key under its kind and key: damaged, moved, or another index's.
	ErrAuth = errors.New("index: record does not authenticate")
	// ErrRolledBack: records were removed, added or put back from an
	// older copy behind the index's back (Verify), or the index is older
	// than its anchor (CheckAnchor).
	ErrRolledBack = errors.New("index: rolled back or records removed")
	// ErrKind: a kind the caller may not use.
	ErrKind = errors.New("index: reserved or invalid record kind")
)

// Kind names a kind of record (a dirent, an inode...); it is the first
// byte of the stored key and part of every record's associated data.
type Kind byte

// kindState is the index's own state record (epoch and root hash); it is
// not part of the root hash.
const kindState Kind = 0

var bucketName = []byte("v2")

// Index is an open index. Safe for concurrent use: bbolt serializes
// updates and lets views run alongside.
type Index struct {
	db      *bolt.DB
	aead    cipher.AEAD
	nameKey []byte
	sumKey  []byte

	// reserve is a file of reserveSize allocated bytes beside the index
	// (path + ".reserve"): on a full disk an update fails (bbolt writes
	// its pages copy-on-write and may grow its file), so a removal, the
	// one change that frees space, could not happen. An update that
	// meets ENOSPC removes the reserve and runs once more; the reserve
	// is made again once there is room.
	reserve     string
	reserveMu   sync.Mutex
	haveReserve bool
	reserveNext time.Time // no earlier try to make it again
}

// reserveSize is the room the reserve keeps for updates on a full disk:
// the pages of hundreds of removals.
const reserveSize = 1 << 20

// Open opens (creating, mode 0600) the index file at path with its root
// key. The root key of an existing index is checked against its state
// record (ErrAuth if it is another index's key).
func Open(path string, rootKey []byte) (*Index, error) {
	if len(rootKey) != RootKeySize {
		return nil, fmt.Errorf("index: root key of %d bytes, want %d", len(rootKey), RootKeySize)
	}
	x := &Index{}
	var err error
	derive := func(label string) []byte {
		if err != nil {
			return nil
		}
		var k []byte
		k, err = hkdf.Key(sha256.New, rootKey, nil, label, 32)
		return k
	}
	recKey := derive(labelRecord)
	x.nameKey = derive(labelName)
	x.sumKey = derive(labelSum)
	if err != nil {
		return nil, fmt.Errorf("index: derive keys: %w", err)
	}
	if x.aead, err = chacha20poly1305.NewX(recKey); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	clear(recKey)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	x.db = db
	x.reserve = path + ".reserve"
	x.keepReserve()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName)
		if err != nil {
			return err
		}
		if b.Get(stateKey) == nil {
			return x.putState(b, state{})
		}
		_, err = x.getState(b)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	return x, nil
}

// Close closes the index file.
func (x *Index) Close() error { return x.db.Close() }

// NameKey is the key of name under parent: a keyed hash (HMAC-SHA256 under
// a key derived from the root key, truncated to 128 bits) of parent and
// name, so equal names under one parent have one key and the stored key
// says nothing about the name. parent is length-prefixed, so (parent,
// name) pairs never collide by concatenation.
func (x *Index) NameKey(parent []byte, name string) [NameKeySize]byte {
	m := hmac.New(sha256.New, x.nameKey)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(parent)))
	m.Write(n[:])
	m.Write(parent)
	m.Write([]byte(name))
	var out [NameKeySize]byte
	copy(out[:], m.Sum(nil))
	return out
}

// Update runs fn in a read-write transaction: every Put and Delete in it
// moves the root hash, and the epoch goes up by one when fn returns nil.
// An error from fn rolls everything back.
func (x *Index) Update(fn func(*Tx) error) error {
	err := x.update(fn)
	if errors.Is(err, syscall.ENOSPC) && x.useReserve() {
		err = x.update(fn)
	}
	if err == nil {
		x.keepReserve()
	}
	return err
}

// useReserve removes the reserve file, if there is one, so an update can
// have its room on a full disk.
func (x *Index) useReserve() bool {
	x.reserveMu.Lock()
	defer x.reserveMu.Unlock()
	x.haveReserve = false
	if err := os.Remove(x.reserve); err != nil {
		return false
	}
	x.reserveNext = time.Now().Add(30 * time.Second)
	return true
}

// keepReserve makes the reserve file if it is missing and there is room
// (at most every 30 s after a failure or its use).
func (x *Index) keepReserve() {
	x.reserveMu.Lock()
	defer x.reserveMu.Unlock()
	if x.haveReserve || time.Now().Before(x.reserveNext) {
		return
	}
	if fi, err := os.Stat(x.reserve); err == nil && fi.Size() == reserveSize {
		x.haveReserve = true
		return
	}
	x.reserveNext = time.Now().Add(30 * time.Second)
	err := writeZeros(x.reserve+".tmp", reserveSize)
	if err == nil {
		err = os.Rename(x.reserve+".tmp", x.reserve)
	}
	if err != nil {
		os.Remove(x.reserve + ".tmp")
		return
	}
	x.haveReserve, x.reserveNext = true, time.Time{}
}

// writeZeros writes a file of n zero bytes (allocated, not sparse) and
// syncs it.
func writeZeros(path string, n int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := n; left > 0 && err == nil; left -= len(buf) {
		_, err = f.Write(buf[:min(len(buf), left)])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (x *Index) update(fn func(*Tx) error) error {
	return x.db.Update(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketName)
		st, err := x.getState(b)
		if err != nil {
			return err
		}
		tx := &Tx{x: x, b: b, writable: true, st: st}
		if err := fn(tx); err != nil {
			return err
		}
		tx.st.Epoch++
		return x.putState(b, tx.st)
	})
}

// View runs fn in a read-only transaction (a consistent snapshot).
func (x *Index) View(fn func(*Tx) error) error {
	return x.db.View(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketName)
		st, err := x.getState(b)
		if err != nil {
			return err
		}
		return fn(&Tx{x: x, b: b, st: st})
	})
}

// Tx is one transaction of Update or View; it is valid only inside it.
type Tx struct {
	x        *Index
	b        *bolt.Bucket
	writable bool
	st       state
}

// Epoch is the index's epoch as this transaction started (an Update's
// commit makes it Epoch()+1).
func (tx *Tx) Epoch() uint64 { return tx.st.Epoch }

func storedKey(kind Kind, key []byte) []byte {
	return append([]byte{byte(kind)}, key...)
}

func checkKind(kind Kind) error {
	if kind == kindState {
		return ErrKind
	}
	return nil
}

// Get returns the value of the record kind/key (ErrNotFound, ErrAuth).
// The returned slice is the caller's.
func (tx *Tx) Get(kind Kind, key []byte) ([]byte, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	sk := storedKey(kind, key)
	sealed := tx.b.Get(sk)
	if sealed == nil {
		return nil, ErrNotFound
	}
	return tx.x.open(sk, sealed)
}

// Put stores value under kind/key, replacing any record there.
func (tx *Tx) Put(kind Kind, key, value []byte) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	sk := storedKey(kind, key)
	if old := tx.b.Get(sk); old != nil {
		tx.st.xorSum(tx.x.recordMAC(sk, old))
	}
	sealed := tx.x.seal(sk, value)
	if err := tx.b.Put(sk, sealed); err != nil {
		return fmt.Errorf("index: put: %w", err)
	}
	tx.st.xorSum(tx.x.recordMAC(sk, sealed))
	return nil
}

// Delete removes the record kind/key; a missing record is no error.
func (tx *Tx) Delete(kind Kind, key []byte) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	sk := storedKey(kind, key)
	old := tx.b.Get(sk)
	if old == nil {
		return nil
	}
	tx.st.xorSum(tx.x.recordMAC(sk, old))
	if err := tx.b.Delete(sk); err != nil {
		return fmt.Errorf("index: delete: %w", err)
	}
	return nil
}

// Scan calls fn, in key order, for every record of kind whose key starts
// with prefix, with the key (after the kind) and the opened value. A
// record that does not open stops the scan with ErrAuth. fn must not
// change the index (collect, then Put or Delete after the scan).
func (tx *Tx) Scan(kind Kind, prefix []byte, fn func(key, value []byte) error) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	p := storedKey(kind, prefix)
	c := tx.b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		val, err := tx.x.open(k, v)
		if err != nil {
			return err
		}
		if err := fn(bytes.Clone(k[1:]), val); err != nil {
			return err
		}
	}
	return nil
}

// aad is a record's associated data: its kind and key.
func aad(storedKey []byte) []byte {
	return append([]byte(aadPrefix), storedKey...)
}

func (x *Index) seal(sk, value []byte) []byte {
	out := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(value)+x.aead.Overhead())
	_, _ = rand.Read(out)
	return x.aead.Seal(out, out, value, aad(sk))
}

func (x *Index) open(sk, sealed []byte) ([]byte, error) {
	if len(sealed) < chacha20poly1305.NonceSizeX+x.aead.Overhead() {
		return nil, fmt.Errorf("record %s: short: %w", describe(sk), ErrAuth)
	}
	n := chacha20poly1305.NonceSizeX
	v, err := x.aead.Open(nil, sealed[:n], sealed[n:], aad(sk))
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", describe(sk), ErrAuth)
	}
	return v, nil
}

// describe names a stored key in errors (kind and hex key: nothing a
// client chose).
func describe(sk []byte) string {
	if len(sk) == 0 {
		return "(empty)"
	}
	return fmt.Sprintf("%d/%s", sk[0], hex.EncodeToString(sk[1:]))
}

// recordMAC is a record's term of the root hash.
func (x *Index) recordMAC(sk, sealed []byte) [32]byte {
	m := hmac.New(sha256.New, x.sumKey)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(sk)))
	m.Write(n[:])
	m.Write(sk)
	m.Write(sealed)
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// Verify opens every record and recomputes the root hash: ErrAuth names
// a record that does not open (the first of them), ErrRolledBack a root
// hash that differs from the stored one (records removed, added or put
// back from an older copy). It returns the number of records checked.
func (x *Index) Verify() (int, error) {
	n := 0
	err := x.db.View(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketName)
		st, err := x.getState(b)
		if err != nil {
			return err
		}
		var sum [32]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Equal(k, stateKey) {
				continue
			}
			if _, err := x.open(k, v); err != nil {
				return err
			}
			mac := x.recordMAC(k, v)
			for i := range sum {
				sum[i] ^= mac[i]
			}
			n++
		}
		if !hmac.Equal(sum[:], st.Sum[:]) {
			return fmt.Errorf("index: root hash of %d records differs from the stored one (epoch %d): %w", n, st.Epoch, ErrRolledBack)
		}
		return nil
	})
	return n, err
}

// Records calls fn with every record as stored: its stored key (kind ‖
// key) and sealed value, the state record included, in key order. It
// opens nothing: it is what anyone with the file sees (an independent
// reader's input, docs/FORMAT.md sections 16 and 17).
func (x *Index) Records(fn func(stored, sealed []byte) error) error {
	return x.db.View(func(btx *bolt.Tx) error {
		return btx.Bucket(bucketName).ForEach(fn)
	})
}

// CopyTo writes a consistent copy of the index file to path (mode 0600),
// as of one moment, while updates go on (a backup).
func (x *Index) CopyTo(path string) error {
	return x.db.View(func(btx *bolt.Tx) error { return btx.CopyFile(path, 0o600) })
}
