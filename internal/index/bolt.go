package index

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketName = []byte("v2")

// boltEngine keeps the index in one bucket of a bbolt file: bbolt
// serializes updates and lets views run alongside, so update never
// retries.
type boltEngine struct{ db *bolt.DB }

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
	return &boltEngine{db: db}, nil
}

func (e *boltEngine) update(fn func(store) error) error {
	return e.db.Update(func(tx *bolt.Tx) error { return fn(boltStore{tx.Bucket(bucketName)}) })
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
