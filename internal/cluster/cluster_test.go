package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/cluster"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/namespace"
	"github.com/securefsd/securefsd/internal/nsfs"
	"github.com/securefsd/securefsd/internal/testutil"
)

func client(t *testing.T, c *testutil.EtcdCluster) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func join(t *testing.T, cl *clientv3.Client) *cluster.Node {
	t.Helper()
	n, err := cluster.Join(cluster.Config{Client: cl, Prefix: "securefsd/", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func oldest(t *testing.T, n *cluster.Node) uint64 {
	t.Helper()
	e, err := n.Oldest()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPins: the oldest pin is the minimum over the live nodes; a node that
// closes takes its pin away at once, one whose lease ends (a dead node:
// its lease revoked behind its back, as an expiry does) too, and the
// node whose lease was lost puts its pin back under a new one.
func TestPins(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	cl := client(t, c)
	a, b, d := join(t, cl), join(t, cl), join(t, cl)
	if got := oldest(t, a); got != math.MaxUint64 {
		t.Fatalf("no pins: oldest %d", got)
	}
	for n, e := range map[*cluster.Node]uint64{a: 7, b: 3, d: 9} {
		if err := n.Publish(e); err != nil {
			t.Fatal(err)
		}
	}
	if got := oldest(t, d); got != 3 {
		t.Fatalf("oldest %d, want 3", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := oldest(t, a); got != 7 {
		t.Fatalf("after b closed: oldest %d, want 7", got)
	}
	// a's lease ends without a.Close (a revoke by another client, the
	// same as an expiry for etcd): its pin is gone for the others...
	id, err := a.Lease()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Revoke(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.Live(); n != 1 {
		t.Fatalf("%d pins after a's lease ended, want d's only", n)
	}
	// ...and a, once it notices, takes a new lease and puts its pin back
	// before it answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		id2, err := a.Lease()
		if err != nil {
			t.Fatal(err)
		}
		if id2 != id {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked lease was never noticed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := oldest(t, d); got != 7 {
		t.Fatalf("after a's new lease: oldest %d, want 7", got)
	}
}

// TestPinsUnavailable: with no etcd quorum, Oldest fails (a collector then
// deletes nothing) rather than answer from what it knew.
func TestPinsUnavailable(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	cl := client(t, c)
	n, err := cluster.Join(cluster.Config{Client: cl, Prefix: "securefsd/", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Publish(1); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	c.Stop(1)
	if _, err := n.Oldest(); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("oldest without a quorum: %v", err)
	}
	c.Restart(0, 1)
	if got := oldest(t, n); got != 1 {
		t.Fatalf("oldest after the quorum is back: %d", got)
	}
}

// node is one securefsd node's storage over the shared index and blobs.
type node struct {
	s    *nsfs.Store
	tree *nsfs.Tree
	n    *cluster.Node // nil if not shared
}

func newNode(t *testing.T, cl *clientv3.Client, key []byte, blobs *blob.Dir, kr *envelope.Keyring, shared bool) node {
	t.Helper()
	x, err := index.OpenEtcd(index.EtcdConfig{Client: cl, Prefix: "securefsd/i/", MaxTxnOps: 1024}, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	o := content.Options{Keyring: kr, SegmentChunks: 2}
	var s *nsfs.Store
	var n *cluster.Node
	if shared {
		n = join(t, cl)
		if s, err = nsfs.NewShared(namespace.New(x, nil), content.DirBlobs{Dir: blobs}, o, n); err != nil {
			t.Fatal(err)
		}
	} else {
		s = nsfs.New(namespace.New(x, nil), content.DirBlobs{Dir: blobs}, o)
	}
	tr, err := s.Tree("alice")
	if err != nil {
		t.Fatal(err)
	}
	return node{s, tr, n}
}

func write(t *testing.T, tr *nsfs.Tree, name string, data []byte) {
	t.Helper()
	f, err := tr.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSharedCollect: node A reads a file that node B then replaces and
// removes; B's collector (after the change, on Refresh, and the full
// Collect) keeps the blobs A's open file reads, and A reads its version
// to the end. Once A closes and refreshes its pin, B's next refresh
// deletes them. The control:
// the same with B not sharing pins (nsfs.New, as a single node) deletes
// them under A's reader, which fails.
func TestSharedCollect(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	cl := client(t, c)
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared", false: "unshared"}[shared], func(t *testing.T) {
			key := make([]byte, index.RootKeySize)
			rand.Read(key)
			if _, err := cl.Delete(context.Background(), "securefsd/", clientv3.WithPrefix()); err != nil {
				t.Fatal(err)
			}
			blobs, err := blob.OpenDir(filepath.Join(t.TempDir(), "blobs"))
			if err != nil {
				t.Fatal(err)
			}
			defer blobs.Close()
			a := newNode(t, cl, key, blobs, kr, true)
			b := newNode(t, cl, key, blobs, kr, shared)
			data := make([]byte, 5*2*envelope.DefaultChunkSize+100)
			rand.Read(data)
			write(t, a.tree, "f", data)

			r, err := a.tree.OpenFile("f", os.O_RDONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			write(t, b.tree, "f", []byte("replaced"))
			if err := b.tree.Remove("f"); err != nil {
				t.Fatal(err)
			}
			if err := b.s.Refresh(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.s.Collect(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
			if !shared {
				if err == nil {
					t.Fatal("the control read its file although an unshared collector ran: the test proves nothing")
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("A's open file after B's collection: %d bytes, %v", len(got), err)
			}
			r.Close()
			// A's pin stays at the epoch it last saw until it refreshes
			// (every few seconds in a server); then B's collector may go.
			if err := a.s.Refresh(); err != nil {
				t.Fatal(err)
			}
			if err := b.s.Refresh(); err != nil {
				t.Fatal(err)
			}
			n := 0
			blobs.List(func(blob.ID, int64) error { n++; return nil })
			if n != 0 {
				t.Errorf("%d blobs left after the reader closed and B refreshed, want 0", n)
			}
		})
	}
}

// TestSharedCollectConcurrent: node A opens and reads a file over and over
// while node B rewrites it and collects, both at once, with A's own
// collector running on every close: no read of A ever fails or returns
// other bytes than one whole version (the pins of files being opened are
// held before their layout is read), and at the end, once both have
// refreshed, only the last version's blobs are left.
func TestSharedCollectConcurrent(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	cl := client(t, c)
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, index.RootKeySize)
	rand.Read(key)
	blobs, err := blob.OpenDir(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	a := newNode(t, cl, key, blobs, kr, true)
	b := newNode(t, cl, key, blobs, kr, true)
	const size = 3*2*envelope.DefaultChunkSize + 7
	version := func(i byte) []byte { return bytes.Repeat([]byte{i}, size) }
	write(t, b.tree, "f", version(0))
	const rounds = 20
	done := make(chan error, 1)
	go func() {
		for i := byte(1); i <= rounds; i++ {
			f, err := b.tree.OpenFile("f", os.O_RDWR|os.O_TRUNC, 0)
			if err == nil {
				_, err = f.WriteAt(version(i), 0)
				err = errors.Join(err, f.Close())
			}
			if err == nil {
				err = b.s.Refresh()
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	reads := 0
	for writing := true; writing; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		default:
		}
		r, err := a.tree.OpenFile("f", os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		r.Close()
		if err != nil {
			t.Fatalf("read %d on node A while B rewrites and collects: %v", reads, err)
		}
		if len(got) != size || !bytes.Equal(got, version(got[0])) {
			t.Fatalf("read %d: %d bytes, not one whole version", reads, len(got))
		}
	}
	if err := a.s.Refresh(); err != nil {
		t.Fatal(err)
	}
	if err := b.s.Refresh(); err != nil {
		t.Fatal(err)
	}
	n := 0
	blobs.List(func(blob.ID, int64) error { n++; return nil })
	if n != 4 {
		t.Errorf("%d blobs left, want the last version's 4 segments", n)
	}
	t.Logf("%d reads during %d rewrites", reads, rounds)
}

// TestOrphansWaitForAlone: a blob no record names (another node's upload
// not yet referenced, or one a killed node left) is not deleted by a
// node's Collect while another node lives; once that node's membership
// ends, Collect deletes it.
func TestOrphansWaitForAlone(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	cl := client(t, c)
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, index.RootKeySize)
	rand.Read(key)
	blobs, err := blob.OpenDir(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	a := newNode(t, cl, key, blobs, kr, true)
	b := newNode(t, cl, key, blobs, kr, true)
	write(t, a.tree, "kept", []byte("referenced"))
	p, err := blobs.Create(blob.NewID())
	if err != nil {
		t.Fatal(err)
	}
	p.Write([]byte("an upload of node A's, not yet in the index"))
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		blobs.List(func(blob.ID, int64) error { n++; return nil })
		return n
	}
	if st, err := b.s.Collect(); err != nil || st.Orphans != 0 || count() != 2 {
		t.Fatalf("collect with another node alive: %+v %v, %d blobs, want the orphan kept", st, err, count())
	}
	if err := a.n.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := b.s.Collect(); err != nil || st.Orphans != 1 || count() != 1 {
		t.Fatalf("collect alone: %+v %v, %d blobs, want the orphan deleted", st, err, count())
	}
}
