package vfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// views builds alice's and bob's views: alice has every right on folder
// "case", bob read-only; carol none. Folder "other" is alice's only.
func views(t *testing.T, ts *testStore) (alice, bob, carol *FS) {
	t.Helper()
	folder := func(name string, p Perm) *FS {
		f, err := ts.Folder(name, HomeOptions{Perm: p, Quota: Quota{Files: 3}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	alice = ts.View(ts.home(t, "alice", HomeOptions{}), map[string]*FS{"case": folder("case", PermAll), "other": folder("other", PermAll)})
	bob = ts.View(ts.home(t, "bob", HomeOptions{}), map[string]*FS{"case": folder("case", PermList|PermDownload)})
	carol = ts.View(ts.home(t, "carol", HomeOptions{}), nil)
	return alice, bob, carol
}

func names(fis []fs.FileInfo) []string {
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name())
	}
	return out
}

func TestViewRoutesFolders(t *testing.T) {
	ts := newStore(t)
	alice, bob, carol := views(t, ts)
	writeFile(t, alice, "/Shared/case/brief.txt", []byte("v1"))
	if got := readFile(t, bob, "/Shared/case/brief.txt"); string(got) != "v1" {
		t.Fatalf("bob reads %q", got)
	}
	// The file is in the folder's tree, not in alice's home.
	if _, err := ts.stored(foldersDir+"/case", "brief.txt"); err != nil {
		t.Fatalf("not in the folder's tree: %v", err)
	}
	if _, err := ts.stored("alice", "Shared"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("in alice's home: %v", err)
	}
	fis, err := alice.ReadDir("/")
	if err != nil || len(fis) != 1 || fis[0].Name() != "Shared" || !fis[0].IsDir() {
		t.Fatalf("alice's top: %v %v", names(fis), err)
	}
	fis, err = alice.ReadDir("/Shared")
	if err != nil || len(fis) != 2 || fis[0].Name() != "case" || fis[1].Name() != "other" {
		t.Fatalf("alice's /Shared: %v %v", names(fis), err)
	}
	fis, err = bob.ReadDir("/Shared")
	if err != nil || len(fis) != 1 || fis[0].Name() != "case" {
		t.Fatalf("bob's /Shared lists %v %v", names(fis), err)
	}
	// The directory handle lists the same (SFTP, WebDAV read through it).
	d, err := bob.Open("/Shared")
	if err != nil {
		t.Fatal(err)
	}
	fis, err = d.Readdir(-1)
	d.Close()
	if err != nil || len(fis) != 1 || fis[0].Name() != "case" {
		t.Fatalf("bob's /Shared handle lists %v %v", names(fis), err)
	}
	if fi, err := bob.Stat("/Shared/case"); err != nil || fi.Name() != "case" || !fi.IsDir() {
		t.Fatalf("stat of the mount: %v %v", fi, err)
	}
	// carol sees nothing, and nothing tells her a folder exists.
	for _, name := range []string{"/Shared", "/Shared/case", "/Shared/case/brief.txt", "/Shared/nope"} {
		if _, err := carol.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("carol stat %s: %v", name, err)
		}
		if _, err := carol.Open(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("carol open %s: %v", name, err)
		}
		if _, err := carol.Checksums(context.Background(), name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("carol checksums %s: %v", name, err)
		}
	}
	if fis, err := carol.ReadDir("/"); err != nil || len(fis) != 0 {
		t.Errorf("carol's top: %v %v", names(fis), err)
	}
	for _, name := range []string{"/Shared/case/x", "/Shared/x"} {
		if _, err := carol.OpenFile(name, os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
			t.Errorf("carol created %s", name)
		}
	}
	if err := carol.Mkdir("/Shared", 0o755); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("carol mkdir /Shared: %v", err)
	}
	// bob is read-only in the folder.
	if _, err := bob.OpenFile("/Shared/case/brief.txt", os.O_WRONLY|os.O_TRUNC, 0); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("bob overwrote: %v", err)
	}
	for name, err := range map[string]error{
		"remove": bob.Remove("/Shared/case/brief.txt"),
		"rename": bob.Rename("/Shared/case/brief.txt", "/Shared/case/b2", false),
		"mkdir":  bob.Mkdir("/Shared/case/d", 0o755),
		"chmod":  bob.Chmod("/Shared/case/brief.txt", 0o600),
		"out":    bob.Rename("/Shared/case/brief.txt", "/mine.txt", false),
		"meta":   bob.UpdateMeta("/Shared/case/brief.txt", func(*Meta) error { return nil }),
	} {
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("bob %s: %v", name, err)
		}
	}
	// Nobody changes the prefix directory or a mount.
	for name, err := range map[string]error{
		"remove mount": alice.RemoveAll("/Shared/case"),
		"rename mount": alice.Rename("/Shared/case", "/x", false),
		"remove dir":   alice.Remove("/Shared"),
		"chmod dir":    alice.Chmod("/Shared", 0o777),
	} {
		if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("alice %s: %v", name, err)
		}
	}
	// A name right under the prefix is a folder the view does not hold.
	if err := alice.Rename("/Shared/case/brief.txt", "/Shared/brief.txt", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("rename into the prefix directory: %v", err)
	}
}

func TestViewNameTricks(t *testing.T) {
	ts := newStore(t)
	alice, bob, _ := views(t, ts)
	writeFile(t, alice, "/Shared/other/secret", []byte("alice only"))
	writeFile(t, alice, "/top", []byte("alice home"))
	for _, name := range []string{
		"/Shared/case/../other/secret", "/Shared/../Shared/other/secret", "Shared/other/secret",
		"/Shared/case/../../alice/top", "/Shared/../top", "/shared/other/secret", "/Shared/OTHER/secret",
		"/Shared/Case/../other/secret", "/Shared/%2e%2e/other/secret", "/Shared/case/%2e%2e/secret",
		"/Shared/./other/secret", "//Shared//other//secret",
	} {
		if _, err := bob.Open(name); err == nil {
			t.Errorf("bob opened %q", name)
		}
	}
	// A real home entry named like the prefix is shadowed, not reachable.
	if err := os.MkdirAll(filepath.Join(ts.dir, "bob", "Shared", "case"), 0o700); err != nil {
		t.Fatal(err)
	}
	fis, _ := bob.ReadDir("/")
	if len(fis) != 1 || fis[0].Name() != "Shared" {
		t.Errorf("bob's top: %v", names(fis))
	}
}

func TestViewFolderQuotaAndMove(t *testing.T) {
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	writeFile(t, alice, "/mine.txt", bytes.Repeat([]byte("x"), 100))
	if err := alice.Rename("/mine.txt", "/Shared/case/mine.txt", false); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Stat("/mine.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source remains: %v", err)
	}
	if got := readFile(t, alice, "/Shared/case/mine.txt"); len(got) != 100 {
		t.Fatalf("moved file has %d bytes", len(got))
	}
	u, _ := alice.Usage()
	if u.Files != 0 {
		t.Errorf("home still counts %d files", u.Files)
	}
	// The folder's quota (3 files) counts uploads into it.
	writeFile(t, alice, "/Shared/case/2", nil)
	writeFile(t, alice, "/Shared/case/3", nil)
	h, err := alice.OpenFile("/Shared/case/4", os.O_WRONLY|os.O_CREATE, 0o644)
	if err == nil {
		err = h.Close()
	}
	if !errors.Is(err, ErrQuota) {
		t.Errorf("fourth file in a 3-file folder: %v", err)
	}
	// Back home, and between folders.
	if err := alice.Rename("/Shared/case/mine.txt", "/Shared/other/mine.txt", false); err != nil {
		t.Fatal(err)
	}
	if err := alice.Rename("/Shared/other/mine.txt", "/back.txt", false); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, alice, "/back.txt"); len(got) != 100 {
		t.Fatalf("file back home has %d bytes", len(got))
	}
}

// A file moved on disk between a folder and a home fails authentication.
func TestFolderBinding(t *testing.T) {
	v1Only(t)
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	writeFile(t, alice, "/Shared/case/f", []byte("folder file"))
	writeFile(t, alice, "/h", []byte("home file"))
	ts.Close()
	move := func(from, to string) {
		if err := os.Rename(filepath.Join(ts.dir, from), filepath.Join(ts.dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	move(foldersDir+"/case/f", "alice/f")
	move("alice/h", foldersDir+"/other/h")
	s, err := NewStore(ts.dir, ts.with(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	home, _ := s.Home("alice", HomeOptions{Perm: PermAll})
	other, _ := s.Folder("other", HomeOptions{Perm: PermAll})
	for name, f := range map[string]*FS{"/f": home, "/h": other} {
		h, err := f.Open(name)
		if err == nil {
			_, err = io.ReadAll(h)
			h.Close()
		}
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s moved across trees: %v", name, err)
		}
	}
	// verify covers folders.
	var damaged []string
	if _, err := s.Verify(context.Background(), "", func(p string, err error) { damaged = append(damaged, p) }); err != nil {
		t.Fatal(err)
	}
	if len(damaged) != 2 {
		t.Errorf("verify reported %v", damaged)
	}
	if err := s.RemoveFolder(context.Background(), "other"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveFolder(context.Background(), "other"); err != nil {
		t.Fatalf("second purge: %v", err)
	}
	if ok, _ := s.HasFolder("other"); ok {
		t.Error("folder still there")
	}
}

// Two members uploading one name of a folder at once: the later upload
// replaces the earlier, never a mix of both (homes keep POSIX semantics,
// TestConformanceRandom).
func TestFolderConcurrentUploads(t *testing.T) {
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	bob := ts.View(ts.home(t, "bob", HomeOptions{}), map[string]*FS{"case": must(ts.Folder("case", HomeOptions{Perm: PermAll}))})
	for _, exists := range []bool{false, true} {
		if exists {
			writeFile(t, alice, "/Shared/case/f", []byte("old"))
		}
		a, err := alice.OpenFile("/Shared/case/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		a.Write(bytes.Repeat([]byte("A"), 100))
		b, err := bob.OpenFile("/Shared/case/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		a.Write(bytes.Repeat([]byte("A"), 100))
		b.Write(bytes.Repeat([]byte("B"), 50))
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, alice, "/Shared/case/f"); !bytes.Equal(got, bytes.Repeat([]byte("B"), 50)) {
			t.Errorf("exists=%v: the file holds %q", exists, got)
		}
		u, _ := alice.view.folders["case"].Usage()
		if u.Files != 1 || u.UsedBytes != 50 {
			t.Errorf("exists=%v: folder usage %+v", exists, u)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// BenchmarkViewReadDir: listing a directory of a shared folder through a
// view against the same in a home (scripts/bench.sh shared measures it
// end to end).
func BenchmarkViewReadDir(b *testing.B) {
	ts := newStore(b)
	home := ts.home(b, "alice", HomeOptions{})
	folder := must(ts.Folder("case", HomeOptions{Perm: PermAll}))
	view := ts.View(home, map[string]*FS{"case": folder})
	for _, dir := range []string{"/list", "/Shared/case/list"} {
		if err := view.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range 2000 {
			writeFile(b, view, fmt.Sprintf("%s/f%d", dir, i), nil)
		}
	}
	for _, tc := range []struct{ name, dir string }{{"home", "/list"}, {"folder", "/Shared/case/list"}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if fis, err := view.ReadDir(tc.dir); err != nil || len(fis) != 2000 {
					b.Fatal(len(fis), err)
				}
			}
		})
	}
}

// TestViewMoveDirAcross: a directory tree moves between a home and a
// folder and back (every file re-encrypted for its new tree, times kept);
// onto an existing name it is refused; a failure part-way (the folder's
// file quota) leaves the source whole and no partial copy.
func TestViewMoveDirAcross(t *testing.T) {
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	if err := alice.MkdirAll("/proj/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, alice, "/proj/a.txt", []byte("alpha"))
	writeFile(t, alice, "/proj/sub/b.txt", []byte("beta"))
	if err := alice.Rename("/proj", "/Shared/other/proj", false); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Stat("/proj"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source remains: %v", err)
	}
	if got := readFile(t, alice, "/Shared/other/proj/sub/b.txt"); string(got) != "beta" {
		t.Fatalf("moved file reads %q", got)
	}
	// The moved files are bound to the folder: on disk they sit in its tree.
	if _, err := ts.stored(foldersDir+"/other", "proj/sub/b.txt"); err != nil {
		t.Fatalf("not in the folder's tree: %v", err)
	}
	// Back home; onto an existing name: refused.
	if err := alice.Mkdir("/taken", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := alice.Rename("/Shared/other/proj", "/taken", true); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("onto an existing directory: %v", err)
	}
	if err := alice.Rename("/Shared/other/proj", "/proj2", false); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, alice, "/proj2/a.txt"); string(got) != "alpha" {
		t.Fatalf("back home: %q", got)
	}
	// Folder "case" takes 3 files: a tree of four fails part-way and
	// leaves nothing behind, the source whole.
	for _, n := range []string{"/proj2/c", "/proj2/d"} {
		writeFile(t, alice, n, []byte("x"))
	}
	if err := alice.Rename("/proj2", "/Shared/case/proj2", false); !errors.Is(err, ErrQuota) {
		t.Fatalf("over the folder's quota: %v", err)
	}
	if _, err := alice.Stat("/Shared/case/proj2"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a partial copy remains: %v", err)
	}
	if fis, err := alice.ReadDir("/proj2"); err != nil || len(fis) != 4 {
		t.Fatalf("source after the failed move: %v %v", names(fis), err)
	}
}
