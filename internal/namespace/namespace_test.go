package namespace

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/index"
)

func newNS(t *testing.T) (*NS, string) {
	t.Helper()
	key := make([]byte, index.RootKeySize)
	rand.Read(key)
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := index.Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return New(x, nil), path
}

func update(t *testing.T, n *NS, fn func(tx *Tx) error) {
	t.Helper()
	if err := n.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func layout(size int64, ids ...blob.ID) content.Layout {
	l := content.Layout{Size: size}
	for _, id := range ids {
		l.Segs = append(l.Segs, content.Ref{Blob: id, Gen: 1})
	}
	return l
}

func TestTreeOperations(t *testing.T) {
	n, path := newNS(t)
	const marker = "MRKR-patient-file.pdf"
	var tree Tree
	b1, b2 := blob.NewID(), blob.NewID()
	update(t, n, func(tx *Tx) error {
		var err error
		if tree, err = tx.Tree("alice", true); err != nil {
			return err
		}
		docs, err := tx.Create(tree.Root, "docs", Dir, fs.ModeDir|0o755)
		if err != nil {
			return err
		}
		for _, name := range []string{marker, "b.txt", "a.txt"} {
			if _, err := tx.Create(docs, name, File, 0o644); err != nil {
				return err
			}
		}
		if _, err := tx.Create(docs, "a.txt", File, 0o644); !errors.Is(err, ErrExist) {
			t.Errorf("create over a name: %v", err)
		}
		for _, bad := range []string{"", ".", "..", "a/b"} {
			if _, err := tx.Create(docs, bad, File, 0o644); !errors.Is(err, ErrInvalid) {
				t.Errorf("create %q: %v", bad, err)
			}
		}
		f, err := tx.Resolve(tree, "docs/"+marker)
		if err != nil {
			return err
		}
		return tx.Publish(f, 1, layout(100, b1, b2), nil)
	})
	n.View(func(tx *Tx) error {
		docs, _ := tx.Resolve(tree, "docs")
		ents, err := tx.ReadDir(docs)
		if err != nil || len(ents) != 3 || ents[0].Name != marker || ents[1].Name != "a.txt" {
			t.Errorf("readdir: %+v %v", ents, err)
		}
		tr, _ := tx.Tree("alice", false)
		if tr.Files != 3 || tr.UsedBytes != 100 {
			t.Errorf("usage: %+v", tr)
		}
		if _, err := tx.Resolve(tree, "docs/a.txt/x"); !errors.Is(err, ErrNotDir) {
			t.Errorf("resolve through a file: %v", err)
		}
		if _, err := tx.Resolve(tree, "docs/../docs"); !errors.Is(err, ErrInvalid) {
			t.Errorf("resolve with ..: %v", err)
		}
		return nil
	})
	// Rename over a file: its blobs become garbage; remove; usage.
	update(t, n, func(tx *Tx) error {
		docs, _ := tx.Resolve(tree, "docs")
		if err := tx.Rename(docs, marker, docs, "a.txt"); err != nil {
			return err
		}
		if err := tx.Remove(tree.Root, "docs"); !errors.Is(err, ErrNotEmpty) {
			t.Errorf("remove of a non-empty directory: %v", err)
		}
		return tx.Remove(docs, "a.txt")
	})
	n.View(func(tx *Tx) error {
		g, err := tx.Garbage()
		if err != nil || len(g) != 2 {
			t.Errorf("garbage after removing the published file: %v %v", g, err)
		}
		tr, _ := tx.Tree("alice", false)
		if tr.Files != 1 || tr.UsedBytes != 0 {
			t.Errorf("usage after remove: %+v", tr)
		}
		return nil
	})
	// Nothing of the names in the index file.
	n.x.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"MRKR", "alice", "docs", "b.txt"} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the index file holds %q", s)
		}
	}
}

func TestRenameRules(t *testing.T) {
	n, _ := newNS(t)
	update(t, n, func(tx *Tx) error {
		tree, _ := tx.Tree("bob", true)
		other, _ := tx.Tree("case", true)
		a, _ := tx.Create(tree.Root, "a", Dir, fs.ModeDir|0o755)
		ab, _ := tx.Create(a, "b", Dir, fs.ModeDir|0o755)
		full, _ := tx.Create(tree.Root, "full", Dir, fs.ModeDir|0o755)
		tx.Create(full, "x", File, 0o644)
		tx.Create(tree.Root, "f", File, 0o644)
		if err := tx.Rename(tree.Root, "a", ab, "a"); !errors.Is(err, ErrInvalid) {
			t.Errorf("directory into itself: %v", err)
		}
		if err := tx.Rename(tree.Root, "a", tree.Root, "full"); !errors.Is(err, ErrNotEmpty) {
			t.Errorf("directory over a non-empty one: %v", err)
		}
		if err := tx.Rename(tree.Root, "a", tree.Root, "f"); !errors.Is(err, ErrNotDir) {
			t.Errorf("directory over a file: %v", err)
		}
		if err := tx.Rename(tree.Root, "f", tree.Root, "a"); !errors.Is(err, ErrIsDir) {
			t.Errorf("file over a directory: %v", err)
		}
		// Between trees: the entry and its usage move (blobs untouched).
		fi, _ := tx.Resolve(tree, "f")
		if err := tx.Publish(fi, 1, layout(500, blob.NewID()), nil); err != nil {
			return err
		}
		if err := tx.SetQuota("case", 400, 0); err != nil {
			return err
		}
		if err := tx.Rename(tree.Root, "f", other.Root, "f"); !errors.Is(err, ErrQuota) {
			t.Errorf("move over the target's quota: %v", err)
		}
		tx.SetQuota("case", 0, 0)
		if err := tx.Rename(tree.Root, "full", other.Root, "full"); err != nil {
			return err
		}
		if err := tx.Rename(tree.Root, "f", other.Root, "f"); err != nil {
			return err
		}
		if in, _ := tx.Inode(fi); in.Tree != "case" || in.Data.Size != 500 {
			t.Errorf("moved file: %+v", in)
		}
		b, _ := tx.Tree("bob", false)
		c, _ := tx.Tree("case", false)
		if b.Files != 0 || b.UsedBytes != 0 || c.Files != 2 || c.UsedBytes != 500 {
			t.Errorf("usage after moves: bob %+v, case %+v", b, c)
		}
		if err := tx.Rename(other.Root, "full", tree.Root, "full"); err != nil {
			return err
		}
		// A directory moved deeper, then its child back up: parents follow.
		if err := tx.Rename(tree.Root, "a", full, "a"); err != nil {
			return err
		}
		if err := tx.Rename(ab, "", tree.Root, "b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("rename of no name: %v", err)
		}
		moved, err := tx.Resolve(tree, "full/a/b")
		if err != nil || moved != ab {
			t.Errorf("resolve after moving the directory: %v", err)
		}
		if err := tx.Rename(a, "b", tree.Root, "b"); err != nil {
			return err
		}
		if err := tx.Rename(tree.Root, "full", ab, "full"); err != nil {
			t.Errorf("a directory into a former child's place: %v", err)
		}
		return nil
	})
}

func TestQuota(t *testing.T) {
	n, _ := newNS(t)
	update(t, n, func(tx *Tx) error {
		tree, _ := tx.Tree("q", true)
		if err := tx.SetQuota("q", 1000, 2); err != nil {
			return err
		}
		f, _ := tx.Create(tree.Root, "1", File, 0o644)
		tx.Create(tree.Root, "2", File, 0o644)
		if _, err := tx.Create(tree.Root, "3", File, 0o644); !errors.Is(err, ErrQuota) {
			t.Errorf("third file under a quota of 2: %v", err)
		}
		if err := tx.Publish(f, 1, layout(1001, blob.NewID()), nil); !errors.Is(err, ErrQuota) {
			t.Errorf("publish over the byte quota: %v", err)
		}
		if err := tx.Publish(f, 1, layout(1000, blob.NewID()), nil); err != nil {
			return err
		}
		if err := tx.Publish(f, 1, layout(10, blob.NewID()), nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("publish of the same generation again: %v", err)
		}
		return nil
	})
}

// TestCollect: garbage older than the oldest open reader goes, newer
// stays; a blob published but never committed (a crash) goes unless a
// writer still has it in flight; referenced blobs always stay.
func TestCollect(t *testing.T) {
	n, _ := newNS(t)
	d, err := blob.OpenDir(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	put := func() blob.ID {
		p, err := d.Create(blob.NewID())
		if err != nil {
			t.Fatal(err)
		}
		p.WriteAt([]byte("x"), 0)
		if err := p.Publish(); err != nil {
			t.Fatal(err)
		}
		return p.ID()
	}
	live, old, newer, orphan, inflight := put(), put(), put(), put(), put()
	var f ID
	update(t, n, func(tx *Tx) error {
		tree, _ := tx.Tree("c", true)
		var err error
		if f, err = tx.Create(tree.Root, "f", File, 0o644); err != nil {
			return err
		}
		if err := tx.Publish(f, 1, layout(1, old), nil); err != nil {
			return err
		}
		return tx.Publish(f, 2, layout(1, newer), []blob.ID{old})
	})
	var oldEpoch uint64
	n.View(func(tx *Tx) error { g, _ := tx.Garbage(); oldEpoch = g[old]; return nil })
	update(t, n, func(tx *Tx) error { return tx.Publish(f, 3, layout(1, live), []blob.ID{newer}) })
	st, err := n.Collect(d, oldEpoch+1, func(id blob.ID) bool { return id == inflight })
	if err != nil {
		t.Fatal(err)
	}
	if st.Garbage != 1 || st.Orphans != 1 {
		t.Errorf("collected %+v, want 1 garbage and 1 orphan", st)
	}
	exists := func(id blob.ID) bool {
		b, err := d.Open(id)
		if err == nil {
			b.Close()
		}
		return err == nil
	}
	for id, want := range map[blob.ID]bool{live: true, old: false, newer: true, orphan: false, inflight: true} {
		if exists(id) != want {
			t.Errorf("blob %s exists %v, want %v", id, !want, want)
		}
	}
	// Once no reader is older, the rest of the garbage goes.
	if st, err := n.Collect(d, ^uint64(0), nil); err != nil || st.Garbage != 1 || !exists(live) {
		t.Errorf("second collection: %+v %v", st, err)
	}
}

// TestCollectGarbageCost: a collection with nothing recorded since the
// last one found none reads nothing; one that deletes blobs runs no
// transaction of its own (the next Update forgets their records); records
// a crash left waiting are collected and forgotten by the next run.
func TestCollectGarbageCost(t *testing.T) {
	key := make([]byte, index.RootKeySize)
	rand.Read(key)
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := index.Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	n := New(x, nil)
	d, err := blob.OpenDir(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	garbage := func() int {
		var k int
		n.View(func(tx *Tx) error { g, err := tx.Garbage(); k = len(g); return err })
		return k
	}
	epoch := func() uint64 { e, _ := n.x.Epoch(); return e }
	var f ID
	update(t, n, func(tx *Tx) error {
		tree, _ := tx.Tree("c", true)
		var err error
		f, err = tx.Create(tree.Root, "f", File, 0o644)
		return err
	})
	if _, err := n.CollectGarbage(d, ^uint64(0)); err != nil || n.mayHaveGarbage.Load() {
		t.Fatalf("first collection: %v, hint %v", err, n.mayHaveGarbage.Load())
	}
	ids := []blob.ID{blob.NewID(), blob.NewID(), blob.NewID()}
	update(t, n, func(tx *Tx) error { return tx.Publish(f, 1, layout(1, ids[0]), nil) })
	if n.mayHaveGarbage.Load() {
		t.Error("a publish that replaced nothing marked garbage")
	}
	update(t, n, func(tx *Tx) error { return tx.Publish(f, 2, layout(1, ids[1]), ids[:1]) })
	if !n.mayHaveGarbage.Load() {
		t.Fatal("a replacement did not mark garbage")
	}
	before := epoch()
	if k, err := n.CollectGarbage(d, ^uint64(0)); err != nil || k != 1 {
		t.Fatalf("collection: %d %v", k, err)
	}
	if epoch() != before || garbage() != 1 {
		t.Errorf("the collection ran %d transactions, %d records left (want 0 and 1 waiting)", epoch()-before, garbage())
	}
	if k, _ := n.CollectGarbage(d, ^uint64(0)); k != 0 {
		t.Errorf("a record waiting to be forgotten was collected again: %d", k)
	}
	update(t, n, func(tx *Tx) error { return tx.SetAttr(f, 0o600, time.Time{}) })
	if garbage() != 0 {
		t.Error("the next update did not forget the record")
	}

	// A crash with a record waiting: the next run deletes (nothing) and
	// forgets it.
	update(t, n, func(tx *Tx) error { return tx.Publish(f, 3, layout(1, ids[2]), ids[1:2]) })
	n.CollectGarbage(d, ^uint64(0))
	x.Close()
	if x, err = index.Open(path, key); err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	n = New(x, nil)
	if garbage() != 1 {
		t.Fatalf("%d records after the crash, want the 1 waiting", garbage())
	}
	if st, err := n.Collect(d, ^uint64(0), nil); err != nil || st.Garbage != 1 {
		t.Errorf("collection after the crash: %+v %v", st, err)
	}
	update(t, n, func(*Tx) error { return nil })
	if garbage() != 0 {
		t.Error("the record the crash left is not forgotten")
	}
}

// TestReferenced: the inodes' blobs and the garbage from the given epoch
// on, not older garbage, nor blobs nothing names.
func TestReferenced(t *testing.T) {
	n, _ := newNS(t)
	old, newer, live := blob.NewID(), blob.NewID(), blob.NewID()
	var f ID
	update(t, n, func(tx *Tx) error {
		tree, _ := tx.Tree("c", true)
		var err error
		if f, err = tx.Create(tree.Root, "f", File, 0o644); err != nil {
			return err
		}
		return tx.Publish(f, 1, layout(1, old), nil)
	})
	update(t, n, func(tx *Tx) error { return tx.Publish(f, 2, layout(1, newer), []blob.ID{old}) })
	var from uint64
	n.View(func(tx *Tx) error { from = tx.Epoch(); return nil })
	update(t, n, func(tx *Tx) error { return tx.Publish(f, 3, layout(1, live), []blob.ID{newer}) })
	got, err := n.Referenced(from)
	if err != nil {
		t.Fatal(err)
	}
	want := []blob.ID{newer, live}
	slices.SortFunc(want, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(got, want) {
		t.Fatalf("Referenced(%d) = %v, want %v (old garbage %v left out)", from, got, want, old)
	}
}

// TestDecodedCopy: what an update hands the index with a record
// (decodedCopy) is exactly what decoding the record's JSON gives, and
// shares nothing with the value written.
func TestDecodedCopy(t *testing.T) {
	now := time.Now().UTC()
	seg := func(data []byte) content.Ref {
		return content.Ref{Blob: blob.NewID(), Gen: 3, InIndex: data != nil, Data: data}
	}
	values := []any{
		Dirent{Name: "a name", Inode: NewID()},
		Tree{Name: "home", Root: NewID(), QuotaBytes: 5, UsedBytes: 3, Files: 1},
		Inode{Kind: Dir, Tree: "home", Mode: fs.ModeDir | 0o700, Mtime: now},
		Inode{Kind: File, Tree: "t", Parent: NewID(), Mode: 0o644, Mtime: time.Now().UTC(), Gen: 7,
			Data:  content.Layout{Size: 9, Segs: []content.Ref{seg([]byte("inline")), seg(nil)}},
			Props: map[string]string{"DAV: x": "<x/>"}},
		Inode{Kind: File, Props: map[string]string{}, Data: content.Layout{Segs: []content.Ref{}}},
		Inode{Kind: File}, // zero time
	}
	for _, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodedCopy(v)
		if !ok {
			t.Errorf("%#v: not copied", v)
			continue
		}
		want := reflect.New(reflect.TypeOf(v))
		if err := json.Unmarshal(b, want.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want.Elem().Interface()) {
			t.Errorf("decodedCopy\n%#v\nJSON gives\n%#v", got, want.Elem().Interface())
		}
	}
	in := values[3].(Inode)
	got, _ := decodedCopy(in)
	in.Data.Segs[1].Gen = 99
	in.Props["DAV: x"] = "changed"
	if c := got.(Inode); c.Data.Segs[1].Gen == 99 || c.Props["DAV: x"] == "changed" {
		t.Error("the copy shares the written value's slices or map")
	}
	if _, ok := decodedCopy(Inode{Mtime: time.Now()}); ok {
		t.Error("a time outside UTC copied (JSON would give it back in a zone of its own)")
	}
	if _, ok := decodedCopy(uint64(3)); ok {
		t.Error("a garbage epoch copied")
	}
}
