package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/testutil"
)

// etcdNode opens the index under prefix through a client of its own, as
// one securefsd node would.
func etcdNode(t testing.TB, c *testutil.EtcdCluster, prefix string, key []byte, timeout time.Duration) *Index {
	t.Helper()
	x, err := OpenEtcd(EtcdConfig{Client: etcdClient(t, c), Prefix: prefix, MaxTxnOps: c.MaxTxnOps, Timeout: timeout}, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// TestEtcdTwoNodes: two nodes increment overlapping counters at once; no
// increment is lost, the epochs the updates commit are all different and
// rise on each node, and the index verifies at the end.
func TestEtcdTwoNodes(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	key := rootKey(t)
	nodes := []*Index{etcdNode(t, c, "n/i/", key, 0), etcdNode(t, c, "n/i/", key, 0)}
	const workers, rounds, counters = 3, 15, 3
	var mu sync.Mutex
	var epochs []uint64
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*workers)
	for ni, x := range nodes {
		for w := range workers {
			wg.Go(func() {
				var last uint64
				for r := range rounds {
					var committed uint64
					err := x.Update(func(tx *Tx) error {
						// Each update increments two overlapping counters.
						for _, k := range []int{(w + r) % counters, (w + r + 1) % counters} {
							ck := []byte(fmt.Sprint("counter", k))
							var n uint64
							v, err := tx.Get(kindInode, ck)
							switch {
							case err == nil:
								n = binary.BigEndian.Uint64(v)
							case !errors.Is(err, ErrNotFound):
								return err
							}
							if err := tx.Put(kindInode, ck, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
								return err
							}
						}
						committed = tx.Epoch() + 1
						return nil
					})
					if err != nil {
						errs <- fmt.Errorf("node %d: %w", ni, err)
						return
					}
					if committed <= last {
						errs <- fmt.Errorf("node %d: epoch %d after %d", ni, committed, last)
						return
					}
					last = committed
					mu.Lock()
					epochs = append(epochs, committed)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for k := range counters {
		v, err := get(nodes[1], kindInode, fmt.Sprint("counter", k))
		if err != nil {
			t.Fatal(err)
		}
		total += int(binary.BigEndian.Uint64([]byte(v)))
	}
	if want := len(nodes) * workers * rounds * 2; total != want {
		t.Errorf("%d increments stored, %d made: updates lost", total, want)
	}
	slices.Sort(epochs)
	for i, e := range epochs {
		if e != uint64(i+1) {
			t.Fatalf("committed epochs are not 1..%d, one each: %v", len(epochs), epochs)
		}
	}
	if e, _ := nodes[0].Epoch(); e != uint64(len(epochs)) {
		t.Errorf("epoch %d after %d updates", e, len(epochs))
	}
	if n, err := nodes[0].Verify(); err != nil || n != counters {
		t.Errorf("verify: %d %v", n, err)
	}

	// A conflict, made on purpose: node 1 commits while node 0's update
	// runs. Node 0 runs fn again from scratch and sees node 1's record;
	// with one attempt allowed it gives up with ErrConflict, writing
	// nothing.
	runs := 0
	err := nodes[0].Update(func(tx *Tx) error {
		runs++
		if _, err := tx.Get(kindInode, []byte("other")); runs == 1 {
			put(t, nodes[1], kindInode, "other", "node 1 came first")
		} else if err != nil {
			t.Errorf("the second run does not see node 1's record: %v", err)
		}
		return tx.Put(kindInode, []byte("mine"), []byte("node 0"))
	})
	if err != nil || runs != 2 {
		t.Errorf("conflicting update: %d runs, %v", runs, err)
	}
	once, err := OpenEtcd(EtcdConfig{Client: etcdClient(t, c), Prefix: "n/i/", Attempts: 1}, key)
	if err != nil {
		t.Fatal(err)
	}
	err = once.Update(func(tx *Tx) error {
		if _, err := tx.Get(kindInode, []byte("other")); err != nil {
			return err
		}
		put(t, nodes[1], kindInode, "other", "node 1 again")
		return tx.Put(kindInode, []byte("lost"), []byte("never stored"))
	})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("one attempt, conflicting: %v", err)
	}
	if _, err := get(nodes[0], kindInode, "lost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a conflicting update was stored: %v", err)
	}
	if _, err := nodes[0].Verify(); err != nil {
		t.Error(err)
	}
}

// TestEtcdSnapshotAndScan: a View reads one revision (another node's
// commit in its middle is not seen); a scan pages through more records
// than one page in key order and shows an Update's own writes; an Update
// too large for one etcd transaction is refused whole.
func TestEtcdSnapshotAndScan(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	key := rootKey(t)
	a, b := etcdNode(t, c, "s/i/", key, 0), etcdNode(t, c, "s/i/", key, 0)
	put(t, a, kindInode, "first", "1")
	err := a.View(func(tx *Tx) error {
		if _, err := tx.Get(kindInode, []byte("first")); err != nil {
			return err
		}
		put(t, b, kindInode, "second", "committed by b during a's view")
		if _, err := tx.Get(kindInode, []byte("second")); !errors.Is(err, ErrNotFound) {
			t.Errorf("a view saw a later commit: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(a, kindInode, "second"); err != nil {
		t.Errorf("after the view: %v", err)
	}

	const n = 2*etcdPageSize + 100
	for from := 0; from < n; from += 1000 {
		err := a.Update(func(tx *Tx) error {
			for i := from; i < min(from+1000, n); i++ {
				if err := tx.Put(kindDirent, fmt.Appendf(nil, "dir/%06d", i), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	scan := func(tx *Tx) []string {
		var keys []string
		if err := tx.Scan(kindDirent, []byte("dir/"), func(k, v []byte) error { keys = append(keys, string(k)); return nil }); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	b.View(func(tx *Tx) error {
		if keys := scan(tx); len(keys) != n || !slices.IsSorted(keys) {
			t.Errorf("scan: %d keys (want %d), sorted %v", len(keys), n, slices.IsSorted(keys))
		}
		return nil
	})
	err = b.Update(func(tx *Tx) error {
		tx.Put(kindDirent, []byte("dir/001500x"), []byte("new"))
		tx.Delete(kindDirent, []byte("dir/000007"))
		tx.Put(kindDirent, []byte("dir/999999"), []byte("last"))
		keys := scan(tx)
		if len(keys) != n+1 || !slices.IsSorted(keys) || slices.Contains(keys, "dir/000007") ||
			!slices.Contains(keys, "dir/001500x") || keys[len(keys)-1] != "dir/999999" {
			t.Errorf("scan in an update does not show its writes: %d keys", len(keys))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A compaction past the revision a transaction reads: an Update runs
	// again from the start, a View fails with ErrCompacted (not
	// ErrUnavailable).
	raw := etcdClient(t, c)
	compact := func() {
		resp, err := raw.Get(context.Background(), "any")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Compact(context.Background(), resp.Header.Revision); err != nil {
			t.Fatal(err)
		}
	}
	runs := 0
	err = a.Update(func(tx *Tx) error {
		if runs++; runs == 1 {
			put(t, b, kindInode, "compacted", "committed by b, then compacted")
			compact()
		}
		_, err := tx.Get(kindInode, []byte("compacted"))
		return err
	})
	if err != nil || runs != 2 {
		t.Errorf("update across a compaction: %d runs, %v", runs, err)
	}
	err = a.View(func(tx *Tx) error {
		put(t, b, kindInode, "compacted", "again")
		compact()
		_, err := tx.Get(kindInode, []byte("compacted"))
		return err
	})
	if !errors.Is(err, ErrCompacted) || errors.Is(err, ErrUnavailable) {
		t.Errorf("view across a compaction: %v", err)
	}

	before, _ := a.Epoch()
	err = a.Update(func(tx *Tx) error {
		for i := range c.MaxTxnOps {
			tx.Put(kindInode, fmt.Appendf(nil, "big%d", i), []byte("v"))
		}
		return nil
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("update of %d records: %v", c.MaxTxnOps, err)
	}
	err = a.Update(func(tx *Tx) error {
		return tx.Put(kindInode, []byte("huge"), bytes.Repeat([]byte("x"), DefaultMaxReqBytes))
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("update of %d bytes: %v", DefaultMaxReqBytes, err)
	}
	if e, _ := a.Epoch(); e != before {
		t.Errorf("refused updates moved the epoch from %d to %d", before, e)
	}
	if _, err := a.Verify(); err != nil {
		t.Error(err)
	}
}

// TestEtcdMembersDown: with one member of three stopped the index serves
// on; with all stopped, Update and View fail with ErrUnavailable (within
// the timeout: they return), and work again once the members are back.
func TestEtcdMembersDown(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	x := etcdNode(t, c, "d/i/", rootKey(t), 2*time.Second)
	put(t, x, kindInode, "a", "before")

	c.Stop(0)
	put(t, x, kindInode, "b", "one member down")
	if v, err := get(x, kindInode, "a"); err != nil || v != "before" {
		t.Fatalf("one member down: %q %v", v, err)
	}

	c.Stop(1)
	c.Stop(2)
	if err := x.Update(func(tx *Tx) error { return tx.Put(kindInode, []byte("c"), []byte("lost")) }); !errors.Is(err, ErrUnavailable) {
		t.Errorf("update without etcd: %v", err)
	}
	if _, err := get(x, kindInode, "a"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("view without etcd: %v", err)
	}
	if _, err := x.Verify(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("verify without etcd: %v", err)
	}

	c.Restart(0, 1, 2)
	// The client reconnects on its own backoff: wait for it (bounded),
	// then everything works and nothing was half-written.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := x.Update(func(tx *Tx) error { return tx.Put(kindInode, []byte("d"), []byte("after")) })
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the restart: %v", err)
		}
	}
	if n, err := x.Verify(); err != nil || n != 3 {
		t.Errorf("verify after the restart: %d %v", n, err)
	}
}

func BenchmarkEtcdUpdate(b *testing.B) {
	c := testutil.StartEtcd(b, 3)
	x := etcdNode(b, c, "b/i/", rootKey(b), 0)
	v := bytes.Repeat([]byte("r"), 200)
	b.ResetTimer()
	for i := range b.N {
		if err := x.Update(func(tx *Tx) error { return tx.Put(kindInode, fmt.Appendf(nil, "%d", i%100), v) }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEtcdScan10000(b *testing.B) {
	c := testutil.StartEtcd(b, 3)
	x := etcdNode(b, c, "b/i/", rootKey(b), 0)
	dir := []byte("dir-inode-id----")
	for from := 0; from < 10000; from += 1000 {
		err := x.Update(func(tx *Tx) error {
			for i := from; i < from+1000; i++ {
				k := x.NameKey(dir, fmt.Sprint(i, "name"))
				if err := tx.Put(kindDirent, append(bytes.Clone(dir), k[:]...), bytes.Repeat([]byte("r"), 72)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		n := 0
		err := x.View(func(tx *Tx) error {
			return tx.Scan(kindDirent, dir, func(k, v []byte) error { n++; return nil })
		})
		if err != nil || n != 10000 {
			b.Fatal(n, err)
		}
	}
}
