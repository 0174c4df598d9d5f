// Package index is storage version 2's namespace index (docs/STORAGE.md,
// section 4): a keyspace of sealed records in one bbolt file (Open) or,
// for several nodes sharing one index, under a prefix in an etcd cluster
// (OpenEtcd, docs/CLUSTER.md). Both engines hold the same stored keys and
// the same sealed values.
//
// Whoever holds the file (or the etcd keyspace) without the key learns the
// number of records and their sizes, nothing else: keys are opaque bytes
// the caller derives with NameKey (a keyed hash, never a name), and every
// value is sealed with XChaCha20-Poly1305 under a key derived from the
// index's root key, with its kind and key as associated data, so a value
// copied or moved to another key does not open (ErrAuth).
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
	"slices"
	"strings"
	"time"

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

// Index is an open index. Safe for concurrent use: bbolt serializes
// updates and lets views run alongside; on etcd, one Index serializes its
// own updates and retries those that conflict with another node's.
type Index struct {
	eng      engine
	aead     cipher.AEAD
	nameHash keyedMAC // name keys (NameKey)
	sumHash  keyedMAC // root-hash terms (recordMAC)
	walHash  keyedMAC // write-ahead log entries (walMAC)
	decoded  decodedCache
}

// Options tunes OpenWith.
type Options struct {
	// Relaxed, if positive, answers an Update once its writes are in
	// memory and appended to a write-ahead log beside the file (written,
	// not fsynced), and commits them to the file at most Relaxed later
	// (relaxedEngine): a crash of the process loses nothing, a power cut
	// at most the updates of the last Relaxed. Zero: every Update is on
	// disk (fsynced) when it returns.
	Relaxed time.Duration
	// Quiet, with Relaxed, also commits once no update has come for
	// Quiet (zero: only the window and the overlay's size start a
	// commit). A burst's last updates then go to disk while the server
	// has nothing else to do, and sooner than the window: otherwise their
	// commit (its writes, its fsync) fell into whatever came next, such as
	// the download of what was just uploaded.
	Quiet time.Duration
}

// Open opens (creating, mode 0600) the index file at path with its root
// key. The root key of an existing index is checked against its state
// record (ErrAuth if it is another index's key).
func Open(path string, rootKey []byte) (*Index, error) {
	return OpenWith(path, rootKey, Options{})
}

// OpenWith is Open with options. Either way, a write-ahead log a relaxed
// index left (its process stopped before committing it) is applied first.
func OpenWith(path string, rootKey []byte, opts Options) (*Index, error) {
	x, err := newIndex(rootKey)
	if err != nil {
		return nil, err
	}
	e, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	if err := x.start(e); err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	_, lastSeq, err := x.replayWAL(e, path)
	if err != nil {
		e.close()
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	if opts.Relaxed > 0 {
		r, err := openRelaxed(e, x, path, opts.Relaxed, opts.Quiet, lastSeq)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("index: open %s: %w", path, err)
		}
		x.eng = r
	}
	return x, nil
}

// Sync puts every Update answered so far on disk (a relaxed index commits
// its overlay now; any other index has nothing to do).
func (x *Index) Sync() error {
	if r, ok := x.eng.(*relaxedEngine); ok {
		return r.sync()
	}
	return nil
}

// file returns the bbolt engine of an index kept in a file, with every
// answered Update committed to it.
func (x *Index) file() (*boltEngine, error) {
	switch e := x.eng.(type) {
	case *boltEngine:
		return e, nil
	case *relaxedEngine:
		if err := e.sync(); err != nil {
			return nil, err
		}
		return e.b, nil
	}
	return nil, errNotFile
}

var errNotFile = errors.New("index: not a bbolt file")

// newIndex derives the index's keys from its root key.
func newIndex(rootKey []byte) (*Index, error) {
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
	nameKey, sumKey, walKey := derive(labelName), derive(labelSum), derive(labelWAL)
	if err != nil {
		return nil, fmt.Errorf("index: derive keys: %w", err)
	}
	x.nameHash, x.sumHash, x.walHash = newKeyedMAC(nameKey), newKeyedMAC(sumKey), newKeyedMAC(walKey)
	if x.aead, err = chacha20poly1305.NewX(recKey); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	clear(recKey)
	return x, nil
}

// start puts the state record of a new index, or checks that the root key
// opens an existing one's (writing nothing); it closes e on failure.
func (x *Index) start(e engine) error {
	x.eng = e
	err := e.update(func(s store) error {
		sealed, err := s.get(stateKey)
		if err != nil {
			return err
		}
		if sealed == nil {
			return x.putState(s, state{})
		}
		_, err = x.openState(sealed)
		return err
	})
	if err != nil {
		e.close()
	}
	return err
}

// Close closes the index file (an etcd index leaves its client open: the
// caller's).
func (x *Index) Close() error { return x.eng.close() }

// NameKey is the key of name under parent: a keyed hash (HMAC-SHA256 under
// a key derived from the root key, truncated to 128 bits) of parent and
// name, so equal names under one parent have one key and the stored key
// says nothing about the name. parent is length-prefixed, so (parent,
// name) pairs never collide by concatenation.
func (x *Index) NameKey(parent []byte, name string) [NameKeySize]byte {
	m := x.nameHash.new()
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
// An error from fn rolls everything back. On etcd, fn runs again from the
// start when another node's update came first (ErrConflict after too many
// attempts): fn must not act outside its Tx, and must set (not add to)
// what it hands out.
func (x *Index) Update(fn func(*Tx) error) error {
	return x.eng.update(func(s store) error {
		st, err := x.getState(s)
		if err != nil {
			return err
		}
		tx := &Tx{x: x, s: s, writable: true, st: st}
		if err := fn(tx); err != nil {
			return err
		}
		if err := tx.flush(); err != nil {
			return err
		}
		tx.st.Epoch++
		return x.putState(s, tx.st)
	})
}

// View runs fn in a read-only transaction (a consistent snapshot).
func (x *Index) View(fn func(*Tx) error) error {
	return x.eng.view(func(s store) error {
		st, err := x.getState(s)
		if err != nil {
			return err
		}
		return fn(&Tx{x: x, s: s, st: st})
	})
}

// Tx is one transaction of Update or View; it is valid only inside it.
type Tx struct {
	x        *Index
	s        store
	writable bool
	st       state

	// pending holds an Update's writes, by stored key, until fn returns:
	// a record written several times in one transaction (an upload's
	// inode is written as it is created, published and renamed) is
	// sealed and stored once, and one written and removed again (its
	// temporary entry) not at all.
	pending map[string]pendingRecord
}

// pendingRecord is a write not yet stored: a value, or a removal.
type pendingRecord struct {
	value   []byte
	removed bool
	// decoded, if not nil, is value as GetDecoded's decode would return
	// it (PutDecoded): GetDecoded returns it, and flush caches it with
	// the sealed value it stores.
	decoded any
}

// lookup returns the transaction's own write of sk, if it made one.
func (tx *Tx) lookup(sk []byte) (pendingRecord, bool) {
	p, ok := tx.pending[string(sk)]
	return p, ok
}

// flush stores the pending writes in key order, each moving the root
// hash by the record it replaces and the one it stores.
func (tx *Tx) flush() error {
	keys := make([]string, 0, len(tx.pending))
	for k := range tx.pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p, sk := tx.pending[k], []byte(k)
		old, err := tx.s.get(sk)
		if err != nil {
			return err
		}
		if old != nil {
			tx.st.xorSum(tx.x.recordMAC(sk, old))
		}
		if p.removed {
			if old != nil {
				if err := tx.s.delete(sk); err != nil {
					return err
				}
			}
			continue
		}
		sealed := tx.x.seal(sk, p.value)
		if err := tx.s.put(sk, sealed); err != nil {
			return err
		}
		tx.st.xorSum(tx.x.recordMAC(sk, sealed))
		if p.decoded != nil {
			// Cached under the new sealed value: if this transaction
			// does not commit, no stored record ever matches it.
			tx.x.decoded.put(sk, sealed, p.decoded)
		}
	}
	tx.pending = nil
	return nil
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
	if p, ok := tx.lookup(storedKey(kind, key)); ok {
		if p.removed {
			return nil, ErrNotFound
		}
		return bytes.Clone(p.value), nil
	}
	sk, sealed, err := tx.sealed(kind, key)
	if err != nil {
		return nil, err
	}
	return tx.x.open(sk, sealed)
}

// sealed returns the stored key and the sealed value of a record, not yet
// opened (ErrNotFound if there is none).
func (tx *Tx) sealed(kind Kind, key []byte) (sk, sealed []byte, err error) {
	if err := checkKind(kind); err != nil {
		return nil, nil, err
	}
	sk = storedKey(kind, key)
	if sealed, err = tx.s.get(sk); err != nil {
		return nil, nil, err
	}
	if sealed == nil {
		return nil, nil, ErrNotFound
	}
	return sk, sealed, nil
}

// Put stores value under kind/key, replacing any record there. It keeps
// value until the transaction ends (no copy: a file's inline content is
// up to 65 KiB), so the caller must not change it before then.
func (tx *Tx) Put(kind Kind, key, value []byte) error {
	return tx.write(kind, key, pendingRecord{value: value})
}

// PutDecoded is Put of a value whose decoded form the caller has already:
// decoded must be exactly what GetDecoded's decode returns for value, and
// is never to be changed. GetDecoded returns it for the rest of this
// transaction, and, once the transaction has stored the record, for
// later transactions too, without opening or decoding value: a record
// one update writes (a directory's time, a tree's usage) is what the
// next one reads.
func (tx *Tx) PutDecoded(kind Kind, key, value []byte, decoded any) error {
	return tx.write(kind, key, pendingRecord{value: value, decoded: decoded})
}

// Delete removes the record kind/key; a missing record is no error.
func (tx *Tx) Delete(kind Kind, key []byte) error {
	return tx.write(kind, key, pendingRecord{removed: true})
}

func (tx *Tx) write(kind Kind, key []byte, p pendingRecord) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	if !tx.writable {
		return errors.New("index: write in a view")
	}
	if tx.pending == nil {
		tx.pending = make(map[string]pendingRecord)
	}
	tx.pending[string(storedKey(kind, key))] = p
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
	pre := storedKey(kind, prefix)
	mine := map[string][]byte{} // the transaction's own writes under prefix
	for k, p := range tx.pending {
		if strings.HasPrefix(k, string(pre)) {
			switch {
			case p.removed:
				mine[k] = nil
			case p.value == nil:
				mine[k] = []byte{} // an empty value, not a removal
			default:
				mine[k] = p.value
			}
		}
	}
	return mergeScan(mine, func(f func(k, v []byte) error) error { return tx.s.scan(pre, f) },
		func(k string, v []byte) error { return fn([]byte(k[1:]), bytes.Clone(v)) },
		func(k, v []byte) error {
			val, err := tx.x.open(k, v)
			if err != nil {
				return err
			}
			return fn(bytes.Clone(k[1:]), val)
		})
}

// mergeScan calls, in key order, emitOver for each key of over with a
// value (nil: a removal, skipped) and emitBase for each record scanBase
// gives whose key over does not hold: writes not yet stored, over the
// store's records.
func mergeScan(over map[string][]byte, scanBase func(func(k, v []byte) error) error,
	emitOver func(k string, v []byte) error, emitBase func(k, v []byte) error) error {
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	emit := func(before []byte) error {
		for len(keys) > 0 && (before == nil || keys[0] < string(before)) {
			k := keys[0]
			keys = keys[1:]
			if v := over[k]; v != nil {
				if err := emitOver(k, v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := scanBase(func(k, v []byte) error {
		if err := emit(k); err != nil {
			return err
		}
		if _, ok := over[string(k)]; ok {
			return nil // emitted (or removed) above
		}
		return emitBase(k, v)
	})
	if err != nil {
		return err
	}
	return emit(nil)
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
	m := x.sumHash.new()
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
	err := x.eng.view(func(s store) error {
		st, err := x.getState(s)
		if err != nil {
			return err
		}
		var sum [32]byte
		err = s.scan(nil, func(k, v []byte) error {
			if bytes.Equal(k, stateKey) {
				return nil
			}
			if _, err := x.open(k, v); err != nil {
				return err
			}
			mac := x.recordMAC(k, v)
			for i := range sum {
				sum[i] ^= mac[i]
			}
			n++
			return nil
		})
		if err != nil {
			return err
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
	return x.eng.view(func(s store) error { return s.scan(nil, fn) })
}

// CopyTo writes a consistent copy of a bbolt index to path (mode 0600),
// as of one moment, while updates go on (a backup). An etcd index is
// backed up with etcd's own snapshot (docs/CLUSTER.md).
func (x *Index) CopyTo(path string) error {
	e, err := x.file()
	if errors.Is(err, errNotFile) {
		return errors.New("index: CopyTo of an etcd index: take an etcd snapshot")
	}
	if err != nil {
		return err
	}
	return e.copyTo(path)
}
