package namespace

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/testutil"
)

// TestLayersCompose drives the storage v2 building blocks together as the
// vfs will: a file created in a home, written through content at a new
// generation, published with its garbage, rewritten in place (copy-on-write
// of one segment), moved into a shared folder (no blob touched), read
// back, and collected once removed. The blob directory then holds nothing.
// It runs on both index engines: bbolt, and a 3-member etcd cluster.
func TestLayersCompose(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) {
		n, _ := newNS(t)
		testLayersCompose(t, n)
	})
	t.Run("etcd", func(t *testing.T) {
		c := testutil.StartEtcd(t, 3)
		cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		key := make([]byte, index.RootKeySize)
		rand.Read(key)
		x, err := index.OpenEtcd(index.EtcdConfig{Client: cl, Prefix: "securefsd/i/", MaxTxnOps: c.MaxTxnOps}, key)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		testLayersCompose(t, New(x, nil))
	})
}

func testLayersCompose(t *testing.T, n *NS) {
	dir := t.TempDir()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := blob.OpenDir(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	o := content.Options{Keyring: kr, SegmentChunks: 2, Pad: true}
	ss := int64(2 * envelope.DefaultChunkSize)

	var home, folder Tree
	var id ID
	update(t, n, func(tx *Tx) error {
		home, _ = tx.Tree("alice", true)
		folder, _ = tx.Tree("case", true)
		var err error
		id, err = tx.Create(home.Root, "report.pdf", File, 0o644)
		return err
	})
	// write publishes data at the next generation of inode id.
	write := func(fn func(f *content.File) error) {
		t.Helper()
		var in Inode
		n.View(func(tx *Tx) error { in, _ = tx.Inode(id); return nil })
		f, err := content.Open(content.DirBlobs{Dir: blobs}, id, in.Data, in.Gen+1, o)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := fn(f); err != nil {
			t.Fatal(err)
		}
		l, garbage, err := f.Commit()
		if err != nil {
			t.Fatal(err)
		}
		update(t, n, func(tx *Tx) error { return tx.Publish(id, in.Gen+1, l, garbage) })
	}
	read := func() []byte {
		t.Helper()
		var in Inode
		n.View(func(tx *Tx) error { in, _ = tx.Inode(id); return nil })
		f, err := content.Open(content.DirBlobs{Dir: blobs}, id, in.Data, in.Gen+1, o)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	data := make([]byte, 3*ss+123)
	rand.Read(data)
	write(func(f *content.File) error { _, err := f.WriteAt(data, 0); return err })
	write(func(f *content.File) error { _, err := f.WriteAt([]byte("patched"), ss+10); return err })
	copy(data[ss+10:], "patched")
	if !bytes.Equal(read(), data) {
		t.Fatal("content after two generations differs")
	}
	// The collector takes the replaced segment once no reader holds the
	// older epoch; the live ones stay.
	if st, err := n.Collect(blobs, ^uint64(0), nil); err != nil || st.Garbage != 1 || st.Orphans != 0 {
		t.Fatalf("collect: %+v %v", st, err)
	}
	// Move into the folder: usage moves, blobs stay, content reads.
	update(t, n, func(tx *Tx) error { return tx.Rename(home.Root, "report.pdf", folder.Root, "report.pdf") })
	n.View(func(tx *Tx) error {
		h, _ := tx.Tree("alice", false)
		c, _ := tx.Tree("case", false)
		if h.Files != 0 || c.Files != 1 || c.UsedBytes != int64(len(data)) {
			t.Errorf("usage after the move: alice %+v, case %+v", h, c)
		}
		got, err := tx.Resolve(c, "report.pdf")
		if err != nil || got != id {
			t.Errorf("resolve in the folder: %v", err)
		}
		return nil
	})
	if !bytes.Equal(read(), data) {
		t.Fatal("content after the move differs")
	}
	// Remove: every blob becomes garbage and goes.
	update(t, n, func(tx *Tx) error { return tx.Remove(folder.Root, "report.pdf") })
	if _, err := n.Collect(blobs, ^uint64(0), nil); err != nil {
		t.Fatal(err)
	}
	left := 0
	blobs.List(func(blob.ID, int64) error { left++; return nil })
	if left != 0 {
		t.Errorf("%d blobs left after removal and collection", left)
	}
	n.View(func(tx *Tx) error {
		if _, err := tx.Inode(id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("inode after removal: %v", err)
		}
		return nil
	})
}
