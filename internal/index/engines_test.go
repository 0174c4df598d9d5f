package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
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
	// path is the bbolt file ("" on etcd).
	path string
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
		path: path,
		open: func(t testing.TB, key []byte) (*Index, error) { return Open(path, key) },
		edit: func(t testing.TB, fn func(map[string][]byte)) {
			t.Helper()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				m := map[string][]byte{}
				newBoltStore(tx).scan(nil, func(k, v []byte) error { m[string(k)] = bytes.Clone(v); return nil })
				fn(m)
				for _, name := range [][]byte{bucketName, bigBucketName} {
					if err := tx.DeleteBucket(name); err != nil {
						return err
					}
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				s := newBoltStore(tx)
				for k, v := range m {
					if err := s.put([]byte(k), v); err != nil {
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

			// PutDecoded: the writer's decoded value is served in its own
			// update and after it, with no decode. (The test's decode
			// returns the plain value, so what is served shows whose it is.)
			putDecoded := func(fail bool) error {
				return x.Update(func(tx *Tx) error {
					if err := tx.PutDecoded(kindInode, []byte("a"), []byte("version 3"), "version 3, the writer's"); err != nil {
						return err
					}
					v, err := tx.GetDecoded(kindInode, []byte("a"), func(b []byte) (any, error) {
						decodes++
						return string(b), nil
					})
					if err != nil || v != "version 3, the writer's" {
						t.Errorf("own PutDecoded read back: %v %v", v, err)
					}
					if fail {
						return errors.New("refused")
					}
					return nil
				})
			}
			if err := putDecoded(true); err == nil {
				t.Fatal("failed update: no error")
			}
			if v, err := read(); err != nil || v != "version 2" {
				t.Errorf("after a failed PutDecoded: %q %v, want version 2", v, err)
			}
			if err := putDecoded(false); err != nil {
				t.Fatal(err)
			}
			before := decodes
			if v, err := read(); err != nil || v != "version 3, the writer's" || decodes != before {
				t.Errorf("after PutDecoded: %q %v, %d decodes, want the writer's value and none", v, err, decodes-before)
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

// TestWritesInOneUpdate: an Update's writes are seen by its own reads and
// scans at once, stored once when it returns (a record written and
// removed again in it is never stored), and the root hash stays the one
// Verify computes; a failed Update stores none of them.
func TestWritesInOneUpdate(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			x := e.new(t).openT(t, rootKey(t))
			put(t, x, kindDirent, "d/b", "old b")
			put(t, x, kindDirent, "d/d", "old d")
			err := x.Update(func(tx *Tx) error {
				for _, w := range []struct{ k, v string }{
					{"d/a", "a1"}, {"d/a", "a2"}, {"d/c", "c"}, {"d/tmp", "tmp"}, {"d/b", "new b"},
				} {
					if err := tx.Put(kindDirent, []byte(w.k), []byte(w.v)); err != nil {
						return err
					}
				}
				for _, k := range []string{"d/tmp", "d/d", "d/never"} {
					if err := tx.Delete(kindDirent, []byte(k)); err != nil {
						return err
					}
				}
				if v, err := tx.Get(kindDirent, []byte("d/a")); err != nil || string(v) != "a2" {
					t.Errorf("own write read back: %q %v", v, err)
				}
				if _, err := tx.Get(kindDirent, []byte("d/d")); !errors.Is(err, ErrNotFound) {
					t.Errorf("own removal read back: %v", err)
				}
				v, err := tx.GetDecoded(kindDirent, []byte("d/c"), func(b []byte) (any, error) { return string(b), nil })
				if err != nil || v != "c" {
					t.Errorf("own write decoded: %v %v", v, err)
				}
				var seen []string
				err = tx.Scan(kindDirent, []byte("d/"), func(k, v []byte) error {
					seen = append(seen, string(k)+"="+string(v))
					return nil
				})
				if want := "d/a=a2 d/b=new b d/c=c"; strings.Join(seen, " ") != want {
					t.Errorf("scan in the update: %q, want %q", strings.Join(seen, " "), want)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var stored []string
			x.Records(func(sk, _ []byte) error {
				if sk[0] == byte(kindDirent) {
					stored = append(stored, string(sk[1:]))
				}
				return nil
			})
			if want := "d/a d/b d/c"; strings.Join(stored, " ") != want {
				t.Errorf("stored: %q, want %q", strings.Join(stored, " "), want)
			}
			if n, err := x.Verify(); err != nil || n != 3 {
				t.Errorf("verify: %d records, %v", n, err)
			}
			failed := errors.New("no")
			if err := x.Update(func(tx *Tx) error {
				tx.Put(kindDirent, []byte("d/z"), []byte("z"))
				return failed
			}); !errors.Is(err, failed) {
				t.Fatal(err)
			}
			if _, err := get(x, kindDirent, "d/z"); !errors.Is(err, ErrNotFound) {
				t.Errorf("a failed update's write: %v", err)
			}
		})
	}
}

// TestBigValues: records of any size round-trip, move between bbolt's
// two buckets as they grow and shrink, scan in key order across both,
// and are in the root hash wherever they are.
func TestBigValues(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			f := e.new(t)
			key := rootKey(t)
			x := f.openT(t, key)
			big := func(c byte) string { return strings.Repeat(string(c), 40<<10) }
			want := map[string]string{"a": "small a", "b": big('b'), "c": "small c", "d": big('d')}
			for k, v := range want {
				put(t, x, kindInode, k, v)
			}
			want["a"], want["b"] = big('A'), "small B" // small to big and back
			put(t, x, kindInode, "a", want["a"])
			put(t, x, kindInode, "b", want["b"])
			got := map[string]string{}
			var order []string
			err := x.View(func(tx *Tx) error {
				return tx.Scan(kindInode, nil, func(k, v []byte) error {
					got[string(k)] = string(v)
					order = append(order, string(k))
					return nil
				})
			})
			if err != nil || !maps.Equal(got, want) || strings.Join(order, "") != "abcd" {
				t.Errorf("scan: order %v, equal %v, %v", order, maps.Equal(got, want), err)
			}
			if n, err := x.Verify(); err != nil || n != 4 {
				t.Errorf("verify: %d records, %v", n, err)
			}
			if e.name != "bbolt" {
				return
			}
			x.Close()
			// Each big value in a bucket of its own, the small ones not.
			db, err := bolt.Open(f.path, 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			db.View(func(tx *bolt.Tx) error {
				small, bigs := tx.Bucket(bucketName), tx.Bucket(bigBucketName)
				for k, inBig := range map[string]bool{"ia": true, "ib": false, "ic": false, "id": true} {
					if (bigs.Bucket([]byte(k)) != nil) != inBig || (small.Get([]byte(k)) != nil) == inBig {
						t.Errorf("record %s: in the big values' bucket %v, want %v", k, !inBig, inBig)
					}
				}
				return nil
			})
			db.Close()
			// A second copy of a record in the other bucket (where reads
			// look first) is counted twice in the root hash.
			editBolt := func(fn func(tx *bolt.Tx) error) {
				db, err := bolt.Open(f.path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if err := db.Update(fn); err != nil {
					t.Fatal(err)
				}
			}
			editBolt(func(tx *bolt.Tx) error {
				v := bytes.Clone(tx.Bucket(bigBucketName).Bucket([]byte("ia")).Get(bigValueKey))
				return tx.Bucket(bucketName).Put([]byte("ia"), v)
			})
			x, err = f.open(t, key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x.Verify(); !errors.Is(err, ErrRolledBack) {
				t.Errorf("a record in both buckets: verify %v, want ErrRolledBack", err)
			}
			x.Close()
			editBolt(func(tx *bolt.Tx) error { return tx.Bucket(bucketName).Delete([]byte("ia")) })
			f.edit(t, func(m map[string][]byte) {
				v := bytes.Clone(m["id"])
				v[len(v)-1] ^= 1
				m["id"] = v
			})
			x, err = f.open(t, key)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			if _, err := get(x, kindInode, "d"); !errors.Is(err, ErrAuth) {
				t.Errorf("a damaged big record: %v, want ErrAuth", err)
			}
		})
	}
}
