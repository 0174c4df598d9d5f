package index

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketName holds the records; bigBucketName holds, in a bucket of its
// own named by the stored key, each record whose sealed value is longer
// than bigValue (under the key bigValueKey).
var (
	bucketName    = []byte("v2")
	bigBucketName = []byte("v2big")
	bigValueKey   = []byte{0}
)

// bigValue is the longest sealed value kept in the records' bucket. bbolt
// keeps two to four values in a leaf and writes a changed leaf whole, so
// a new 40 KiB record (a small file's contents, docs/STORAGE.md 10c)
// among others would rewrite 80 to 160 KiB at every commit; in a bucket of
// its own it writes its own pages and a small leaf of bucket headers.
const bigValue = 2048

// boltEngine keeps the index in one bucket of a bbolt file: bbolt
// serializes updates and lets views run alongside, so update never
// retries (but once on a full disk, with the reserve given up).
type boltEngine struct {
	db *bolt.DB

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

func openBolt(path string) (*boltEngine, error) {
	// The free-page list is not written at each commit but found again
	// by a walk of the pages when the file is opened (as etcd opens its
	// own): with small files' contents in the index the list runs to
	// tens of KiB, written at every upload (docs/PERFORMANCE.md).
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketName); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bigBucketName)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	e := &boltEngine{db: db, reserve: path + ".reserve"}
	e.keepReserve()
	return e, nil
}

func (e *boltEngine) update(fn func(store) error) error {
	up := func() error {
		return e.db.Update(func(tx *bolt.Tx) error { return fn(newBoltStore(tx)) })
	}
	err := up()
	if errors.Is(err, syscall.ENOSPC) && e.useReserve() {
		err = up()
	}
	if err == nil {
		e.keepReserve()
	}
	return err
}

// useReserve removes the reserve file, if there is one, so an update can
// have its room on a full disk.
func (e *boltEngine) useReserve() bool {
	e.reserveMu.Lock()
	defer e.reserveMu.Unlock()
	e.haveReserve = false
	if err := os.Remove(e.reserve); err != nil {
		return false
	}
	e.reserveNext = time.Now().Add(30 * time.Second)
	return true
}

// keepReserve makes the reserve file if it is missing and there is room
// (at most every 30 s after a failure or its use).
func (e *boltEngine) keepReserve() {
	e.reserveMu.Lock()
	defer e.reserveMu.Unlock()
	if e.haveReserve || time.Now().Before(e.reserveNext) {
		return
	}
	if fi, err := os.Stat(e.reserve); err == nil && fi.Size() == reserveSize {
		e.haveReserve = true
		return
	}
	e.reserveNext = time.Now().Add(30 * time.Second)
	err := writeZeros(e.reserve+".tmp", reserveSize)
	if err == nil {
		err = os.Rename(e.reserve+".tmp", e.reserve)
	}
	if err != nil {
		os.Remove(e.reserve + ".tmp")
		return
	}
	e.haveReserve, e.reserveNext = true, time.Time{}
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

// copyTo writes a consistent copy of the index file to path.
func (e *boltEngine) copyTo(path string) error {
	return e.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) })
}

func (e *boltEngine) view(fn func(store) error) error {
	return e.db.View(func(tx *bolt.Tx) error { return fn(newBoltStore(tx)) })
}

func (e *boltEngine) close() error { return e.db.Close() }

// boltStore is one transaction's records: those of up to bigValue bytes in
// small, the others in big (a bucket each).
type boltStore struct{ small, big *bolt.Bucket }

func newBoltStore(tx *bolt.Tx) boltStore {
	return boltStore{small: tx.Bucket(bucketName), big: tx.Bucket(bigBucketName)}
}

func (s boltStore) get(sk []byte) ([]byte, error) {
	if v := s.small.Get(sk); v != nil {
		return v, nil
	}
	if b := s.big.Bucket(sk); b != nil {
		return b.Get(bigValueKey), nil
	}
	return nil, nil
}

func (s boltStore) put(sk, sealed []byte) error {
	var err error
	if len(sealed) > bigValue {
		if s.small.Get(sk) != nil {
			err = s.small.Delete(sk)
		}
		var b *bolt.Bucket
		if err == nil {
			b, err = s.big.CreateBucketIfNotExists(sk)
		}
		if err == nil {
			err = b.Put(bigValueKey, sealed)
		}
	} else {
		if s.big.Bucket(sk) != nil {
			err = s.big.DeleteBucket(sk)
		}
		if err == nil {
			err = s.small.Put(sk, sealed)
		}
	}
	if err != nil {
		return fmt.Errorf("index: put: %w", err)
	}
	return nil
}

func (s boltStore) delete(sk []byte) error {
	err := s.small.Delete(sk)
	if err == nil && s.big.Bucket(sk) != nil {
		err = s.big.DeleteBucket(sk)
	}
	if err != nil {
		return fmt.Errorf("index: delete: %w", err)
	}
	return nil
}

// scan merges the two buckets' records in key order.
func (s boltStore) scan(prefix []byte, fn func(sk, sealed []byte) error) error {
	in := func(k []byte) bool { return k != nil && bytes.HasPrefix(k, prefix) }
	sc, bc := s.small.Cursor(), s.big.Cursor()
	sk, sv := sc.Seek(prefix)
	bk, _ := bc.Seek(prefix)
	for in(sk) || in(bk) {
		var err error
		if in(sk) && (!in(bk) || bytes.Compare(sk, bk) < 0) {
			err = fn(sk, sv)
			sk, sv = sc.Next()
		} else {
			err = fn(bk, s.big.Bucket(bk).Get(bigValueKey))
			bk, _ = bc.Next()
		}
		if err != nil {
			return err
		}
	}
	return nil
}
