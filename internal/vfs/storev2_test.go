package vfs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
)

// TestPaddedStore: a store created with Pad keeps padding (a later open
// without it keeps the store's choice, so every file still reads), and
// the last segment's blob is stored at Padmé of its length.
func TestPaddedStore(t *testing.T) {
	kr, _ := envelope.NewKeyring()
	key := make([]byte, IndexKeySize)
	rand.Read(key)
	dir := filepath.Join(t.TempDir(), "store")
	open := func(pad bool) *Store {
		s, err := NewStore(dir, Options{Keyring: kr, Storage: StorageV2, IndexKey: key, Pad: pad})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(true)
	f, _ := s.Home("alice", HomeOptions{Perm: PermAll})
	sizes := []int{1, 4097, 100_000, 5 << 20}
	data := map[string][]byte{}
	for i, n := range sizes {
		b := make([]byte, n)
		rand.Read(b)
		name := string(rune('a' + i))
		data[name] = b
		writeFile(t, f, name, b)
	}
	// Small segments are kept in the index (content.Ref.InIndex): their
	// records' lengths are the padded blobs' too.
	var stored []int64
	s.v2.x.View(func(tx *index.Tx) error {
		return tx.Scan(index.Kind('b'), nil, func(_, v []byte) error {
			stored = append(stored, int64(len(v)))
			return nil
		})
	})
	s.Close()
	filepath.WalkDir(filepath.Join(dir, blobsDirName), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			stored = append(stored, fi.Size())
		}
		return nil
	})
	// Every plaintext length of a last segment is padded: the stored
	// blob is larger than the smallest envelope of that length.
	for _, n := range []int64{1, 4097, 100_000, 1 << 20} {
		padded := envelope.CiphertextSize(content.Padme(n))
		found := false
		for _, st := range stored {
			found = found || st == padded
		}
		if !found {
			t.Errorf("no blob of %d bytes (a padded last segment of %d): %v", padded, n, stored)
		}
	}
	s = open(false)
	defer s.Close()
	f, _ = s.Home("alice", HomeOptions{Perm: PermAll})
	for name, b := range data {
		if got := readFile(t, f, name); !bytes.Equal(got, b) {
			t.Errorf("%s differs after reopening without Pad", name)
		}
	}
}

// TestSnapshotV2: a snapshot of a version 2 store is the index of its
// moment and links to its blobs; what changes afterwards (an in-place
// write, a removal, a key rotation re-wrapping headers in place) leaves
// the snapshot as it was, and a store opened on it serves that moment.
func TestSnapshotV2(t *testing.T) {
	kr, _ := envelope.NewKeyring()
	key := make([]byte, IndexKeySize)
	rand.Read(key)
	base := t.TempDir()
	s, err := NewStore(filepath.Join(base, "store"), Options{Keyring: kr, Storage: StorageV2, IndexKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, _ := s.Home("alice", HomeOptions{Perm: PermAll})
	a, b := bytes.Repeat([]byte("a"), 100_000), bytes.Repeat([]byte("b"), 5000)
	writeFile(t, f, "a", a)
	f.Mkdir("d", 0o755)
	writeFile(t, f, "d/b", b)
	// An upload in progress is not in the snapshot.
	up, err := f.Create("late")
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("not yet"))
	snap := filepath.Join(base, "snap")
	st, err := s.Snapshot(t.Context(), snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Linked == 0 {
		t.Fatalf("snapshot stats %+v", st)
	}
	up.Close()
	h, _ := f.OpenFile("a", os.O_RDWR, 0)
	h.WriteAt([]byte("changed"), 10)
	h.Close()
	f.Remove("d/b")
	kr2 := kr.Clone()
	kr2.Rotate()
	s.SetKeyring(kr2)
	if err := s.Rewrap(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	s2, err := NewStore(snap, Options{Keyring: kr, IndexKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	g, _ := s2.Home("alice", HomeOptions{Perm: PermAll})
	if got := readFile(t, g, "a"); !bytes.Equal(got, a) {
		t.Error("a changed in the snapshot")
	}
	if got := readFile(t, g, "d/b"); !bytes.Equal(got, b) {
		t.Error("d/b changed in the snapshot")
	}
	if _, err := g.Stat("late"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an upload unfinished at the snapshot is in it: %v", err)
	}
	if n, err := s2.Verify(t.Context(), "", func(p string, err error) { t.Errorf("damaged %s: %v", p, err) }); err != nil || n == 0 {
		t.Errorf("verify of the snapshot: %d %v", n, err)
	}
}

// TestInjectedIndexAndBlobs: a store given its index and blobs
// (Options.Index, Blobs: a cluster node's etcd index and object store)
// keeps nothing of either in its directory, serves what another store
// over the same index and blobs wrote, cannot take a snapshot, and is
// refused if its directory has an index of its own. The caller's index
// stays open after Close.
func TestInjectedIndexAndBlobs(t *testing.T) {
	kr, _ := envelope.NewKeyring()
	key := make([]byte, IndexKeySize)
	rand.Read(key)
	shared := t.TempDir()
	x, err := index.Open(filepath.Join(shared, "index.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	d, err := blob.OpenDir(filepath.Join(shared, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := Options{Keyring: kr, Index: x, Blobs: content.DirBlobs{Dir: d}}
	dir1, dir2 := filepath.Join(t.TempDir(), "store"), filepath.Join(t.TempDir(), "store")
	s1, err := NewStore(dir1, o)
	if err != nil {
		t.Fatal(err)
	}
	if s1.StorageVersion() != StorageV2 {
		t.Fatal("a store given an index is not version 2")
	}
	f1, _ := s1.Home("alice", HomeOptions{Perm: PermAll})
	data := make([]byte, 300_000)
	rand.Read(data)
	writeFile(t, f1, "a.bin", data)
	if _, err := s1.Snapshot(t.Context(), filepath.Join(t.TempDir(), "snap"), nil); err == nil {
		t.Error("snapshot of a store on an injected index and blobs succeeded")
	}
	s1.Close()
	if es, _ := os.ReadDir(dir1); len(es) != 0 {
		t.Errorf("the store directory holds %d entries, want none", len(es))
	}
	s2, err := NewStore(dir2, o)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := s2.Home("alice", HomeOptions{Perm: PermAll})
	if got := readFile(t, f2, "a.bin"); !bytes.Equal(got, data) {
		t.Error("the second store does not read the first one's file")
	}
	s2.Close()

	local := filepath.Join(t.TempDir(), "store")
	ls, err := NewStore(local, Options{Keyring: kr, Storage: StorageV2, IndexKey: key})
	if err != nil {
		t.Fatal(err)
	}
	ls.Close()
	if _, err := NewStore(local, o); !errors.Is(err, ErrStorageVersion) {
		t.Errorf("a store directory with its own index, given another: %v", err)
	}
}

// TestRelaxedNeedsAnIndexFile: relaxed durability is refused on a version
// 1 store (its files are renamed into place, with nothing to replay) and
// on a shared index (etcd commits every update).
func TestRelaxedNeedsAnIndexFile(t *testing.T) {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(t.TempDir(), Options{Keyring: kr, Relaxed: time.Second}); !errors.Is(err, ErrStorageVersion) {
		t.Errorf("relaxed on version 1: %v", err)
	}
	x, err := index.Open(filepath.Join(t.TempDir(), "index.db"), make([]byte, index.RootKeySize))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := NewStore(t.TempDir(), Options{Keyring: kr, Index: x, Relaxed: time.Second}); err == nil {
		t.Error("relaxed on a given index: no error")
	}
}
