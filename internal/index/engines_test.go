package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

// fixture is one index's store in one engine, with what someone holding
// the store without the key can do to it.
type fixture struct {
	// open opens the index (the same store at every call).
	open func(t testing.TB, key []byte) (*Index, error)
	// edit hands fn every stored key and sealed value, and stores what fn
	// leaves in the map behind the index's back (bbolt: with the index
	// closed, as the file is locked).
	edit func(t testing.TB, fn func(m map[string][]byte))
	// bytes is everything the store holds: the file, or every key and
	// value in the etcd cluster.
	bytes func(t testing.TB) []byte
}

// engines are the index's engines, each giving fresh stores; the etcd one
// starts a 3-member cluster at its first use in the test.
func engines(t *testing.T) []struct {
	name string
	new  func(t testing.TB) *fixture
} {
	var cluster *testutil.EtcdCluster
	var client *clientv3.Client
	var n atomic.Int64
	return []struct {
		name string
		new  func(t testing.TB) *fixture
	}{
		{"bbolt", newBoltFixture},
		{"etcd", func(st testing.TB) *fixture {
			if cluster == nil {
				cluster = testutil.StartEtcd(t, 3)
				client = etcdClient(t, cluster)
			}
			return newEtcdFixture(client, cluster, fmt.Sprintf("securefsd/%d/i/", n.Add(1)))
		}},
	}
}

func etcdClient(t testing.TB, c *testutil.EtcdCluster) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func newBoltFixture(t testing.TB) *fixture {
	path := filepath.Join(t.TempDir(), "index.db")
	return &fixture{
		open: func(t testing.TB, key []byte) (*Index, error) { return Open(path, key) },
		edit: func(t testing.TB, fn func(map[string][]byte)) {
			t.Helper()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketName)
				m := map[string][]byte{}
				b.ForEach(func(k, v []byte) error { m[string(k)] = bytes.Clone(v); return nil })
				fn(m)
				if err := tx.DeleteBucket(bucketName); err != nil {
					return err
				}
				b, err := tx.CreateBucket(bucketName)
				if err != nil {
					return err
				}
				for k, v := range m {
					if err := b.Put([]byte(k), v); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		bytes: func(t testing.TB) []byte { return readFile(t, path) },
	}
}

func newEtcdFixture(cl *clientv3.Client, c *testutil.EtcdCluster, prefix string) *fixture {
	return &fixture{
		open: func(t testing.TB, key []byte) (*Index, error) {
			return OpenEtcd(EtcdConfig{Client: cl, Prefix: prefix, MaxTxnOps: c.MaxTxnOps}, key)
		},
		edit: func(t testing.TB, fn func(map[string][]byte)) {
			t.Helper()
			ctx := context.Background()
			resp, err := cl.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			old := map[string][]byte{}
			for _, kv := range resp.Kvs {
				old[string(kv.Key[len(prefix):])] = kv.Value
			}
			m := maps.Clone(old)
			fn(m)
			for k := range old {
				if _, ok := m[k]; !ok {
					if _, err := cl.Delete(ctx, prefix+k); err != nil {
						t.Fatal(err)
					}
				}
			}
			for k, v := range m {
				if !bytes.Equal(old[k], v) {
					if _, err := cl.Put(ctx, prefix+k, string(v)); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
		bytes: func(t testing.TB) []byte {
			t.Helper()
			resp, err := cl.Get(context.Background(), "\x00", clientv3.WithFromKey())
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			for _, kv := range resp.Kvs {
				b = append(append(b, kv.Key...), kv.Value...)
			}
			return b
		},
	}
}

func (f *fixture) openT(t testing.TB, key []byte) *Index {
	t.Helper()
	x, err := f.open(t, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// TestDecodedCache: GetDecoded decodes a record once while its sealed
// value stays the same, again once it changes; on etcd, where another
// writer can change a record under a running node, a damaged value is
// refused even though the old one is cached.
func TestDecodedCache(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			f := e.new(t)
			x := f.openT(t, rootKey(t))
			decodes := 0
			read := func() (string, error) {
				var v any
				err := x.View(func(tx *Tx) error {
					var err error
					v, err = tx.GetDecoded(kindInode, []byte("a"), func(b []byte) (any, error) {
						decodes++
						return string(b), nil
					})
					return err
				})
				s, _ := v.(string)
				return s, err
			}
			put(t, x, kindInode, "a", "version 1")
			for range 3 {
				if v, err := read(); err != nil || v != "version 1" {
					t.Fatalf("read: %q %v", v, err)
				}
			}
			if decodes != 1 {
				t.Errorf("%d decodes of an unchanged record, want 1", decodes)
			}
			put(t, x, kindInode, "a", "version 2")
			if v, err := read(); err != nil || v != "version 2" || decodes != 2 {
				t.Errorf("after a change: %q %v, %d decodes", v, err, decodes)
			}
			if e.name != "etcd" {
				return // bbolt's file is locked while open
			}
			f.edit(t, func(m map[string][]byte) {
				v := bytes.Clone(m["ia"])
				v[len(v)-1] ^= 1
				m["ia"] = v
			})
			if _, err := read(); !errors.Is(err, ErrAuth) {
				t.Errorf("a value damaged under a cached one: %v, want ErrAuth", err)
			}
		})
	}
}
