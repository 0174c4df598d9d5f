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

var bucketName = []byte("v2")

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
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
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
		return e.db.Update(func(tx *bolt.Tx) error { return fn(boltStore{tx.Bucket(bucketName)}) })
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
	return e.db.View(func(tx *bolt.Tx) error { return fn(boltStore{tx.Bucket(bucketName)}) })
}

func (e *boltEngine) close() error { return e.db.Close() }

type boltStore struct{ b *bolt.Bucket }

func (s boltStore) get(sk []byte) ([]byte, error) { return s.b.Get(sk), nil }

func (s boltStore) put(sk, sealed []byte) error {
	if err := s.b.Put(sk, sealed); err != nil {
		return fmt.Errorf("index: put: %w", err)
	}
	return nil
}

func (s boltStore) delete(sk []byte) error {
	if err := s.b.Delete(sk); err != nil {
		return fmt.Errorf("index: delete: %w", err)
	}
	return nil
}

func (s boltStore) scan(prefix []byte, fn func(sk, sealed []byte) error) error {
	c := s.b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}
