package vfs

import (
	"fmt"
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
	s, err := NewStore(ts.dir, Options{Keyring: ts.kr, UploadHashes: testUploadHashes})
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
