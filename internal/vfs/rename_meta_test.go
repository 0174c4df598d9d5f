package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestRenameAfterRestart renames files whose directory metadata is not yet
// cached (a fresh Store over an existing store dir, as after a server
// restart): the entry's dead properties and cached hashes move with it
// and survive the next restart too.
func TestRenameAfterRestart(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
		target   bool // the target exists (rename with overwrite)
		fill     int  // extra files in the source directory
	}{
		{name: "same directory", from: "a/f", to: "a/g"},
		{name: "across directories", from: "a/f", to: "b/g"},
		{name: "over a file", from: "a/f", to: "b/g", target: true},
		{name: "large directory", from: "a/f", to: "b/g", fill: metaBehindEntries + 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, f := newFS(t)
			f.Mkdir("a", 0o755)
			f.Mkdir("b", 0o755)
			for i := range tt.fill {
				writeFile(t, f, fmt.Sprintf("a/fill%03d", i), []byte{byte(i)})
			}
			writeFile(t, f, tt.from, []byte("content"))
			if tt.target {
				writeFile(t, f, tt.to, []byte("old target"))
				setProp(t, f, tt.to, "target")
			}
			setProp(t, f, tt.from, "moved")
			before, err := f.Meta(tt.from)
			if err != nil || before.Hashes == nil {
				t.Fatalf("meta before: %+v %v", before, err)
			}
			f2 := reopen(t, ts)
			if err := f2.Rename(tt.from, tt.to, tt.target); err != nil {
				t.Fatal(err)
			}
			check := func(f *FS, when string) {
				t.Helper()
				m, err := f.Meta(tt.to)
				if err != nil || m.Props["{urn:test}p"] != "moved" || !sameHashes(m.Hashes, before.Hashes) {
					t.Fatalf("%s: meta of %s: %+v %v, want props and hashes %+v", when, tt.to, m, err, before.Hashes)
				}
				got, err := f.Checksums(t.Context(), tt.to, HashMD5, HashSHA1)
				if err != nil || got.MD5 != before.Hashes.MD5 {
					t.Fatalf("%s: checksums %+v %v", when, got, err)
				}
			}
			check(f2, "after rename")
			check(reopen(t, ts), "after another restart")
		})
	}
}

func setProp(t *testing.T, f *FS, name, v string) {
	t.Helper()
	if err := f.UpdateMeta(name, func(m *Meta) error {
		if m.Props == nil {
			m.Props = map[string]string{}
		}
		m.Props["{urn:test}p"] = v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// reopen closes ts's current Store and serves its directory with a new
// one, returning alice's home in it.
func reopen(t *testing.T, ts *testStore) *FS {
	t.Helper()
	if err := ts.Store.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(ts.dir, ts.with(Options{UploadHashes: testUploadHashes}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts.Store = s
	return ts.home(t, "alice", HomeOptions{})
}

func sameHashes(a, b *Hashes) bool {
	return a != nil && b != nil && a.MD5 == b.MD5 && a.SHA1 == b.SHA1 && a.SHA256 == b.SHA256 &&
		a.Size == b.Size && a.ModTime.Equal(b.ModTime)
}

// TestRenameDirOverEmptyDir: a directory renamed over an empty directory
// (whose only content is its metadata sidecar) takes its place with its
// files, open handles and metadata; nothing is left under the old name;
// a non-empty target is refused and both stay.
func TestRenameDirOverEmptyDir(t *testing.T) {
	ts, f := newFS(t)
	f.Mkdir("src", 0o755)
	f.Mkdir("dst", 0o700)
	writeFile(t, f, "src/x", []byte("x"))
	setProp := func(name, v string) {
		if err := f.UpdateMeta(name, func(m *Meta) error { m.Props = map[string]string{"{urn:t}p": v}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setProp("src", "from-src")
	setProp("dst", "from-dst")
	h, err := f.OpenFile("src/x", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Rename("src", "dst", true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("y"), 1); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f, "dst/x"); string(got) != "xy" {
		t.Fatalf("dst/x = %q", got)
	}
	if _, err := f.Stat("src"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("src after the rename: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(ts.dir, "alice", "src")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old name left on disk: %v", err)
	}
	m, err := f.Meta("dst")
	if err != nil || m.Props["{urn:t}p"] != "from-src" {
		t.Fatalf("dst's properties %v %v, want the source's", m.Props, err)
	}
	if fi, _ := f.Stat("dst"); fi.Mode().Perm() != 0o755 {
		t.Fatalf("dst mode %v, want the source's", fi.Mode())
	}

	f.Mkdir("full", 0o755)
	writeFile(t, f, "full/y", nil)
	if err := f.Rename("dst", "full", true); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rename over a non-empty directory = %v", err)
	}
	for _, n := range []string{"dst/x", "full/y"} {
		if _, err := f.Stat(n); err != nil {
			t.Fatalf("%s after the refused rename: %v", n, err)
		}
	}
}

// TestExchange: the store's filesystem swaps two directories atomically
// (the path TestRenameDirOverEmptyDir takes).
func TestExchange(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	f.Mkdir("a", 0o755)
	f.Mkdir("b", 0o700)
	if err := exchange(f.h.root, "a", "b"); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	fi, err := os.Stat(filepath.Join(ts.dir, "alice", "b"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("b after the exchange: %v %v", fi, err)
	}
}
