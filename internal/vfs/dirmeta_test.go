package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReadDirMeta: a listing's metadata equals what Meta gives per entry,
// subdirectories included, and cached hashes come only while valid.
func TestReadDirMeta(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	if err := f.MkdirAll("d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Mkdir("d/plain", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "stale", "open", "bare"} {
		writeFile(t, f, "d/"+n, []byte("content of "+n))
	}
	setProp(t, f, "d/a", "red")
	setProp(t, f, "d/sub", "blue")
	setProp(t, f, "d", "yes")
	if err := f.Chtimes("d/stale", time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	// An out-of-band mtime change leaves a cached hash stale.
	if err := os.Chtimes(filepath.Join(ts.dir, "alice", "d", "stale"), time.Unix(2e9, 0), time.Unix(2e9, 0)); err != nil {
		t.Fatal(err)
	}
	h, err := f.OpenFile("d/open", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	fis, metas, err := f.ReadDirMeta("/d")
	if err != nil {
		t.Fatal(err)
	}
	want, err := f.ReadDir("/d")
	if err != nil {
		t.Fatal(err)
	}
	if len(fis) != len(want) {
		t.Fatalf("listed %d entries, ReadDir %d", len(fis), len(want))
	}
	if _, ok := metas["."]; ok {
		t.Error("the directory's own metadata is listed as an entry")
	}
	for _, fi := range fis {
		m := metas[fi.Name()]
		one, err := f.Meta("d/" + fi.Name())
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(m.Props) != fmt.Sprint(one.Props) {
			t.Errorf("%s: props %v, Meta gives %v", fi.Name(), m.Props, one.Props)
		}
		switch fi.Name() {
		case "a", "b", "bare":
			if m.Hashes == nil || m.Hashes.MD5 == "" || m.Hashes.SHA1 == "" || m.Hashes.Size != fi.Size() {
				t.Errorf("%s: hashes %+v, want the upload's", fi.Name(), m.Hashes)
			}
		case "stale", "open", "sub", "plain":
			if m.Hashes != nil {
				t.Errorf("%s: hashes %+v, want none", fi.Name(), m.Hashes)
			}
		}
	}
	if metas["sub"].Props["{urn:test}p"] != "blue" || metas["a"].Props["{urn:test}p"] != "red" {
		t.Errorf("props: %+v", metas)
	}
	if _, ok := metas["plain"]; ok {
		t.Error("a directory without metadata has an entry")
	}
	// The Meta values are the caller's.
	metas["a"].Props["{urn:test}p"] = "green"
	if m, _ := f.Meta("d/a"); m.Props["{urn:test}p"] != "red" {
		t.Error("changing a returned Meta changed the stored one")
	}
}

// TestReadDirMetaPerm: listing needs PermList; hashes need a right to
// read them, as with Checksums.
func TestReadDirMetaPerm(t *testing.T) {
	ts, f := newFS(t)
	writeFile(t, f, "x", []byte("x"))
	listOnly := ts.home(t, "alice", HomeOptions{Perm: PermList})
	_, metas, err := listOnly.ReadDirMeta("/")
	if err != nil {
		t.Fatal(err)
	}
	if metas["x"].Hashes != nil {
		t.Error("hashes given without PermDownload or PermUpload")
	}
	none := ts.home(t, "alice", HomeOptions{Perm: PermDownload})
	if _, _, err := none.ReadDirMeta("/"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("without PermList: %v, want fs.ErrPermission", err)
	}
	if _, _, err := f.ReadDirMeta("/x"); err == nil {
		t.Error("ReadDirMeta of a file succeeded")
	}
}

// TestReadDirMetaDamaged: a damaged sidecar does not hide the listing.
func TestReadDirMetaDamaged(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	if err := f.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "d/a", []byte("a"))
	setProp(t, f, "d/a", "v")
	ts.Store.Close()
	side := filepath.Join(ts.dir, "alice", "d", metaFileName)
	if err := os.WriteFile(side, []byte("not an envelope"), 0o600); err != nil {
		t.Fatal(err)
	}
	f2 := ts.reopen(t, "alice")
	fis, metas, err := f2.ReadDirMeta("d")
	if !errors.Is(err, ErrIntegrity) {
		t.Errorf("err = %v, want ErrIntegrity", err)
	}
	if len(fis) != 1 || fis[0].Name() != "a" || len(metas) != 0 {
		t.Errorf("listing %d entries, metadata %v; want a without metadata", len(fis), metas)
	}
}

// TestSidecarPruneLarge: entries of names removed behind the VFS's back
// are pruned when a large sidecar is loaded (one directory read), and the
// others are kept.
func TestSidecarPruneLarge(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	if err := f.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := 0; i < n; i++ {
		writeFile(t, f, fmt.Sprintf("d/f%02d", i), []byte("x"))
	}
	ts.Store.Close() // flushes written-behind hashes
	if err := os.Remove(filepath.Join(ts.dir, "alice", "d", "f07")); err != nil {
		t.Fatal(err)
	}
	f2 := ts.reopen(t, "alice")
	_, metas, err := f2.ReadDirMeta("d")
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != n-1 {
		t.Errorf("metadata of %d entries, want %d", len(metas), n-1)
	}
	h := f2.h
	h.metaMu.Lock()
	_, stale := h.metaDirs["d"].entries["f07"]
	h.metaMu.Unlock()
	if stale {
		t.Error("the entry of a removed file survived loading")
	}
}
