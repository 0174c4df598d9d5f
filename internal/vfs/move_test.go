package vfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/securefsd/securefsd/internal/envelope"
)

// onDisk returns the inode and the stored bytes of a file of the store.
func onDisk(t *testing.T, ts *testStore, rel string) (uint64, []byte) {
	t.Helper()
	p := filepath.Join(ts.dir, rel)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, b
}

// sameContent: the move rewrote the header only (same inode, same file
// id, same chunks).
func sameContent(t *testing.T, what string, ino1, ino2 uint64, b1, b2 []byte) {
	t.Helper()
	if ino1 != ino2 || len(b1) != len(b2) || !bytes.Equal(b1[envelope.HeaderSize:], b2[envelope.HeaderSize:]) || !bytes.Equal(b1[16:48], b2[16:48]) {
		t.Errorf("%s: the move did not keep the stored file (inode %d -> %d)", what, ino1, ino2)
	}
	if bytes.Equal(b1[:envelope.HeaderSize], b2[:envelope.HeaderSize]) {
		t.Errorf("%s: header not rebound", what)
	}
}

func prop(t *testing.T, f *FS, name string) string {
	t.Helper()
	m, err := f.Meta(name)
	if err != nil {
		t.Fatal(err)
	}
	return m.Props["{urn:test}p"]
}

func noJournals(t *testing.T, ts *testStore) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(ts.dir, movesDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("move journals left: %d", len(ents))
	}
}

// TestMoveRebinds: a move between a home and a folder keeps the stored
// file (same inode and chunks: nothing re-encrypted) and rewrites its
// header for the target's binding, for a file and for a directory with
// everything in it; properties and usage follow; the stored bytes put
// back on disk in the old tree fail authentication there.
func TestMoveRebinds(t *testing.T) {
	v1Only(t)
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	data := bytes.Repeat([]byte("0123456789abcdef"), 9000) // 3 chunks
	writeFile(t, alice, "/big", data)
	setProp(t, alice, "/big", "file prop")
	ino1, b1 := onDisk(t, ts, "alice/big")
	if err := alice.Rename("/big", "/Shared/case/big", false); err != nil {
		t.Fatal(err)
	}
	ino2, b2 := onDisk(t, ts, foldersDir+"/case/big")
	sameContent(t, "file", ino1, ino2, b1, b2)
	if got := readFile(t, alice, "/Shared/case/big"); !bytes.Equal(got, data) {
		t.Fatal("moved file reads differently")
	}
	if got := prop(t, alice, "/Shared/case/big"); got != "file prop" {
		t.Errorf("property after the move: %q", got)
	}
	if u, _ := alice.Usage(); u.Files != 0 || u.UsedBytes != 0 {
		t.Errorf("home usage after the move: %+v", u)
	}
	const propSize = int64(len("{urn:test}p"))
	if u, _ := alice.UsageAt("/Shared/case"); u.Files != 1 || u.UsedBytes != int64(len(data))+propSize+int64(len("file prop")) {
		t.Errorf("folder usage after the move: %+v", u)
	}
	// The old tree's binding no longer opens it.
	if err := os.WriteFile(filepath.Join(ts.dir, "alice", "planted"), b2, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Open("/planted"); !errors.Is(err, ErrIntegrity) {
		t.Errorf("rebound file planted back in the home: %v", err)
	}
	os.Remove(filepath.Join(ts.dir, "alice", "planted"))

	// A directory: every file and sidecar in it is rebound.
	if err := alice.MkdirAll("/proj/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, alice, "/proj/sub/b", data[:100])
	setProp(t, alice, "/proj", "dir prop")
	setProp(t, alice, "/proj/sub/b", "b prop")
	inoB, bB := onDisk(t, ts, "alice/proj/sub/b")
	if err := alice.Rename("/proj", "/Shared/other/proj", false); err != nil {
		t.Fatal(err)
	}
	inoB2, bB2 := onDisk(t, ts, foldersDir+"/other/proj/sub/b")
	sameContent(t, "file in a directory", inoB, inoB2, bB, bB2)
	if got := prop(t, alice, "/Shared/other/proj"); got != "dir prop" {
		t.Errorf("directory property after the move: %q", got)
	}
	if got := prop(t, alice, "/Shared/other/proj/sub/b"); got != "b prop" {
		t.Errorf("property in a moved directory: %q", got)
	}
	if u, _ := alice.UsageAt("/Shared/other"); u.Files != 1 || u.UsedBytes != 100+2*propSize+int64(len("dir prop")+len("b prop")) {
		t.Errorf("folder usage after a directory moved in: %+v", u)
	}
	// Over an existing file (overwrite), back home.
	writeFile(t, alice, "/target", []byte("old"))
	if err := alice.Rename("/Shared/case/big", "/target", true); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, alice, "/target"); !bytes.Equal(got, data) {
		t.Fatal("file moved over another reads differently")
	}
	if u, _ := alice.Usage(); u.Files != 1 || u.UsedBytes != int64(len(data))+propSize+int64(len("file prop")) {
		t.Errorf("home usage after moving over a file: %+v", u)
	}
	if u, _ := alice.UsageAt("/Shared/case"); u.Files != 0 || u.UsedBytes != 0 {
		t.Errorf("folder usage after moving out: %+v", u)
	}
	noJournals(t, ts)
	var damaged []string
	if _, err := ts.Verify(context.Background(), "", func(p string, err error) { damaged = append(damaged, p) }); err != nil || len(damaged) > 0 {
		t.Errorf("verify after the moves: %v %v", damaged, err)
	}
}

// TestMoveOpenFileCopies: a file open in the source tree keeps its tree's
// shared state, so its move falls back to a copy (a new stored file).
func TestMoveOpenFileCopies(t *testing.T) {
	v1Only(t)
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	writeFile(t, alice, "/open", []byte("being read"))
	h, err := alice.Open("/open")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ino1, _ := onDisk(t, ts, "alice/open")
	if err := alice.Rename("/open", "/Shared/case/open", false); err != nil {
		t.Fatal(err)
	}
	ino2, _ := onDisk(t, ts, foldersDir+"/case/open")
	if ino1 == ino2 {
		t.Error("an open file was moved by re-binding")
	}
	if got := readFile(t, alice, "/Shared/case/open"); string(got) != "being read" {
		t.Fatalf("copied file reads %q", got)
	}
}

// TestMoveCrash stops a move at each stage, as a crash would, and opens
// the store again: the move is undone (before the rename) or finished
// (after it), a header a torn write damaged is put back from the
// journal, and nothing is lost: content, property, verify clean.
func TestMoveCrash(t *testing.T) {
	v1Only(t)
	data := bytes.Repeat([]byte("crash"), 30000)
	for _, stage := range []string{"journal", "renamed", "torn", "rebound"} {
		t.Run(stage, func(t *testing.T) {
			ts := newStore(t)
			alice, _, _ := views(t, ts)
			if err := alice.MkdirAll("/d", 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, alice, "/d/f", data)
			setProp(t, alice, "/d/f", "kept")
			writeFile(t, alice, "/g", data[:10])
			setProp(t, alice, "/g", "kept too")
			crash := errors.New("crash")
			hook := stage
			if stage == "torn" {
				hook = "renamed"
			}
			ts.moveHook = func(s string) error {
				if s == hook {
					return crash
				}
				return nil
			}
			for _, m := range [][2]string{{"/d", "/Shared/case/d"}, {"/g", "/Shared/case/g"}} {
				if err := alice.Rename(m[0], m[1], false); err == nil || stage != "rebound" && !errors.Is(err, crash) {
					t.Fatalf("move %s stopped at %s: %v", m[0], stage, err)
				}
			}
			ts.Close()
			if stage == "torn" {
				for _, rel := range []string{foldersDir + "/case/d/f", foldersDir + "/case/g"} {
					f, err := os.OpenFile(filepath.Join(ts.dir, rel), os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					f.WriteAt(make([]byte, 100), 60) // half a header write
					f.Close()
				}
			}
			s, err := NewStore(ts.dir, ts.with(Options{}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			home, _ := s.Home("alice", HomeOptions{Perm: PermAll})
			folder, _ := s.Folder("case", HomeOptions{Perm: PermAll})
			where := home
			if stage != "journal" {
				where = folder
			}
			for name, want := range map[string]string{"/d/f": "kept", "/g": "kept too"} {
				got := readFile(t, where, name)
				if name == "/g" && !bytes.Equal(got, data[:10]) || name == "/d/f" && !bytes.Equal(got, data) {
					t.Errorf("%s reads differently after recovery", name)
				}
				if p := prop(t, where, name); p != want {
					t.Errorf("%s property after recovery: %q", name, p)
				}
			}
			other := folder
			if where == folder {
				other = home
			}
			for _, name := range []string{"/d", "/g"} {
				if _, err := other.Stat(name); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s in both trees: %v", name, err)
				}
			}
			noJournals(t, &testStore{dir: ts.dir})
			var damaged []string
			if _, err := s.Verify(context.Background(), "", func(p string, err error) { damaged = append(damaged, p) }); err != nil || len(damaged) > 0 {
				t.Errorf("verify after recovery: %v %v", damaged, err)
			}
		})
	}
}

// TestMoveJournalForged: a journal that does not open with the keyring
// (planted, or damaged) changes nothing and is kept for an operator; the
// store opens.
func TestMoveJournalForged(t *testing.T) {
	v1Only(t)
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	writeFile(t, alice, "/f", []byte("stays"))
	ts.Close()
	if err := os.MkdirAll(filepath.Join(ts.dir, movesDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts.dir, movesDir, "forged"), []byte(`{"v":1,"src":{"name":"alice"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := ts.reopen(t, "alice")
	if got := readFile(t, f, "/f"); string(got) != "stays" {
		t.Fatalf("file after a forged journal: %q", got)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, movesDir, "forged")); err != nil {
		t.Errorf("forged journal removed: %v", err)
	}
}

// BenchmarkMoveAcross moves one file between a home and a folder and back
// per iteration: by re-binding (the cost of two header writes and their
// fsyncs, whatever the size), and by the copy a file open in the source
// forces (the cost of re-encrypting the content twice).
func BenchmarkMoveAcross(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		for _, mode := range []string{"rebind", "copy"} {
			b.Run(fmt.Sprintf("%dMiB/%s", size>>20, mode), func(b *testing.B) {
				ts := newStore(b)
				f := ts.View(ts.home(b, "alice", HomeOptions{}), map[string]*FS{"case": folderFS(b, ts, "case")})
				writeFile(b, f, "/f", make([]byte, size))
				b.SetBytes(int64(2 * size))
				b.ResetTimer()
				for range b.N {
					for _, m := range [][2]string{{"/f", "/Shared/case/f"}, {"/Shared/case/f", "/f"}} {
						var h *File
						if mode == "copy" {
							var err error
							if h, err = f.Open(m[0]); err != nil {
								b.Fatal(err)
							}
						}
						if err := f.Rename(m[0], m[1], false); err != nil {
							b.Fatal(err)
						}
						if h != nil {
							h.Close()
						}
					}
				}
			})
		}
	}
}

func folderFS(b *testing.B, ts *testStore, name string) *FS {
	f, err := ts.Folder(name, HomeOptions{Perm: PermAll})
	if err != nil {
		b.Fatal(err)
	}
	return f
}
