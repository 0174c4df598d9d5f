package nsfs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/namespace"
)

// testChunks makes segments of 2 chunks (128 KiB), so small files span
// several segments.
const testChunks = 2

const segSize = testChunks * envelope.DefaultChunkSize

type env struct {
	dir   string
	key   []byte
	kr    *envelope.Keyring
	x     *index.Index
	blobs *blob.Dir
	s     *Store
	// inlineMax is the stores' content.Options.InlineMax.
	inlineMax int64
	// relaxed opens the index with index.Options.Relaxed.
	relaxed time.Duration
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), key: make([]byte, index.RootKeySize)}
	rand.Read(e.key)
	var err error
	if e.kr, err = envelope.NewKeyring(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	return e
}

// open opens (again) the index and the blob directory: a restart.
func (e *env) open(t *testing.T) {
	t.Helper()
	x, err := index.OpenWith(filepath.Join(e.dir, "index.db"), e.key, index.Options{Relaxed: e.relaxed})
	if err != nil {
		t.Fatal(err)
	}
	d, err := blob.OpenDir(filepath.Join(e.dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	e.x, e.blobs = x, d
	e.s = New(namespace.New(x, nil), content.DirBlobs{Dir: d}, content.Options{Keyring: e.kr, SegmentChunks: testChunks, InlineMax: e.inlineMax})
	t.Cleanup(func() { x.Close(); d.Close() })
}

func (e *env) tree(t *testing.T, name string) *Tree {
	t.Helper()
	tr, err := e.s.Tree(name)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func write(t *testing.T, tr *Tree, name string, data []byte) {
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

func read(t *testing.T, tr *Tree, name string) []byte {
	t.Helper()
	f, err := tr.OpenFile(name, os.O_RDONLY, 0)
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

func TestTreeOperations(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	if err := tr.MkdirAll("docs/2026/q4", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := tr.Mkdir("docs", 0o700); !errors.Is(err, fs.ErrExist) {
		t.Errorf("mkdir of an existing name: %v", err)
	}
	big := random(3*segSize + 1000)
	write(t, tr, "docs/big.bin", big)
	write(t, tr, "docs/b.txt", []byte("bee"))
	write(t, tr, "docs/a.txt", []byte("a"))
	if got := read(t, tr, "docs/big.bin"); !bytes.Equal(got, big) {
		t.Fatal("big file read back differs")
	}
	fis, err := tr.ReadDir("docs")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range fis {
		names = append(names, fi.Name())
	}
	if strings.Join(names, " ") != "2026 a.txt b.txt big.bin" {
		t.Errorf("listing: %v", names)
	}
	if fis[3].Size() != int64(len(big)) || fis[3].Mode().Perm() != 0o640 || fis[3].IsDir() || !fis[0].IsDir() {
		t.Errorf("entry: size %d mode %v", fis[3].Size(), fis[3].Mode())
	}
	if used, files, _ := tr.Usage(); used != int64(len(big))+4 || files != 3 {
		t.Errorf("usage %d bytes, %d files", used, files)
	}

	// rename(2)'s rules.
	if err := tr.Rename("docs/a.txt", "docs/b.txt"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, tr, "docs/b.txt"); string(got) != "a" {
		t.Errorf("renamed over: %q", got)
	}
	if _, err := tr.Lstat("docs/a.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old name after rename: %v", err)
	}
	if err := tr.Rename("docs", "docs/2026/inside"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("directory into itself: %v", err)
	}
	if err := tr.Rename("docs/b.txt", "docs/2026"); !errors.Is(err, namespace.ErrIsDir) {
		t.Errorf("file over a directory: %v", err)
	}
	if err := tr.Remove("docs"); !errors.Is(err, namespace.ErrNotEmpty) {
		t.Errorf("remove of a non-empty directory: %v", err)
	}

	// Attributes.
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := tr.Chtimes("docs/b.txt", time.Time{}, mt); err != nil {
		t.Fatal(err)
	}
	if err := tr.Chmod("docs/b.txt", 0); err != nil {
		t.Fatal(err)
	}
	fi, err := tr.Stat("docs/b.txt")
	if err != nil || !fi.ModTime().Equal(mt) || fi.Mode() != 0 {
		t.Errorf("after chtimes and chmod 0: %v %v %v", fi.ModTime(), fi.Mode(), err)
	}

	if err := tr.RemoveAll("docs"); err != nil {
		t.Fatal(err)
	}
	if err := tr.RemoveAll("docs"); err != nil {
		t.Errorf("removeall of a missing name: %v", err)
	}
	if used, files, _ := tr.Usage(); used != 0 || files != 0 {
		t.Errorf("usage after removeall: %d bytes, %d files", used, files)
	}
	// The removed files' blobs went at once (nothing had them open).
	n := 0
	e.blobs.List(func(blob.ID, int64) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d blobs left after removing everything", n)
	}
}

func TestNames(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	for _, name := range []string{"", "/abs", "a/../b", "a//b", "./a", "a/"} {
		if _, err := tr.Lstat(name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Lstat(%q): %v", name, err)
		}
		if _, err := tr.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			t.Errorf("OpenFile(%q) created something", name)
		}
	}
	long := strings.Repeat("ü", 600) // 1,200 bytes: no 255-byte limit in the index
	write(t, tr, long, []byte("x"))
	if got := read(t, tr, long); string(got) != "x" {
		t.Errorf("long name: %q", got)
	}
	if _, err := tr.OpenFile("missing/f", os.O_RDWR|os.O_CREATE, 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("create in a missing directory: %v", err)
	}
	if _, err := tr.OpenFile(long, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("O_EXCL over a file: %v", err)
	}
	tr.Mkdir("d", 0o700)
	if _, err := tr.OpenFile("d", os.O_RDONLY, 0); !errors.Is(err, namespace.ErrIsDir) {
		t.Errorf("open of a directory: %v", err)
	}
	if _, err := tr.OpenFile(long+"/x", os.O_RDWR|os.O_CREATE, 0o600); !errors.Is(err, namespace.ErrNotDir) {
		t.Errorf("a file as a parent: %v", err)
	}
}

// TestFiles: random access, publishing, readers keeping what they opened,
// truncation, a file removed while open.
func TestFiles(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	data := random(2*segSize + 500)
	write(t, tr, "f", data)

	reader, err := tr.OpenFile("f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tr.OpenFile("f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte("patched")
	if _, err := w.WriteAt(patch, segSize+10); err != nil {
		t.Fatal(err)
	}
	// Not yet published: a new reader sees the old content.
	if got := read(t, tr, "f"); !bytes.Equal(got, data) {
		t.Error("unpublished write visible to a new open")
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	copy(data[segSize+10:], patch)
	if got := read(t, tr, "f"); !bytes.Equal(got, data) {
		t.Error("published write not visible")
	}
	// The old reader reads the old segment, which the collector keeps
	// while it is open.
	blobs := func() int {
		n := 0
		e.blobs.List(func(blob.ID, int64) error { n++; return nil })
		return n
	}
	if st, err := e.s.Collect(); err != nil || st.Garbage != 0 || blobs() != 4 {
		t.Errorf("collect with a reader of the old version: %+v %v, %d blobs", st, err, blobs())
	}
	p := make([]byte, len(patch))
	if _, err := reader.ReadAt(p, segSize+10); err != nil || bytes.Equal(p, patch) {
		t.Errorf("old reader: %q %v", p, err)
	}
	reader.Close()
	if blobs() != 3 {
		t.Errorf("%d blobs after the reader of the old segment closed, want the 3 of the file", blobs())
	}
	// The writer goes on at the next generation.
	if err := w.Truncate(100); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, tr, "f"); !bytes.Equal(got, data[:100]) {
		t.Errorf("after truncate: %d bytes", len(got))
	}

	// Removed while open: the handle still reads and writes; nothing is
	// published, nothing is left.
	w, err = tr.OpenFile("f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Remove("f"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("late"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadAt(p[:4], 0); err != nil || string(p[:4]) != "late" {
		t.Errorf("removed file's handle: %q %v", p[:4], err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("close of a removed file: %v", err)
	}
	if _, err := tr.Lstat("f"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed file came back: %v", err)
	}
	e.s.Collect()
	n := 0
	e.blobs.List(func(blob.ID, int64) error { n++; return nil })
	if n != 0 || e.s.OpenFiles() != 0 {
		t.Errorf("%d blobs, %d open files left", n, e.s.OpenFiles())
	}
}

// TestCrash: writes never published (the process stopped before Sync or
// Close) leave the old content whole after a restart.
func TestCrash(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	data := random(segSize + 10)
	write(t, tr, "f", data)
	w, err := tr.OpenFile("f", os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt(random(3*segSize), 0)
	// No Close: the process is gone. Restart on the same directory.
	e.x.Close()
	e.blobs.Close()
	e.open(t)
	tr = e.tree(t, "alice")
	if got := read(t, tr, "f"); !bytes.Equal(got, data) {
		t.Error("unpublished writes visible after a restart")
	}
	if _, err := e.s.Collect(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, tr, "f"); !bytes.Equal(got, data) {
		t.Error("collector took a live blob")
	}
}

// TestBetweenTrees: a move from a home into a folder is one transaction;
// the content is read under the new tree unchanged, usage moves.
func TestBetweenTrees(t *testing.T) {
	e := newEnv(t)
	home, folder := e.tree(t, "alice"), e.tree(t, "folder:team")
	data := random(segSize + 7)
	home.MkdirAll("out/sub", 0o700)
	write(t, home, "out/sub/report.pdf", data)
	if err := home.RenameTo("out", folder, "in"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, folder, "in/sub/report.pdf"); !bytes.Equal(got, data) {
		t.Error("moved file differs")
	}
	hb, hf, _ := home.Usage()
	fb, ff, _ := folder.Usage()
	if hb != 0 || hf != 0 || fb != int64(len(data)) || ff != 1 {
		t.Errorf("usage after the move: home %d/%d, folder %d/%d", hb, hf, fb, ff)
	}
	if err := folder.RenameTo("in", home, "missing/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("move into a missing directory: %v", err)
	}
}

// TestNothingInTheClear: no name, and no byte of a file's content, in the
// index or the blob directory.
func TestNothingInTheClear(t *testing.T) {
	e := newEnv(t)
	const marker = "MRKR-john-doe-hiv-result"
	tr := e.tree(t, "dr-"+marker)
	tr.MkdirAll(marker+"/patients-"+marker, 0o700)
	write(t, tr, marker+"/patients-"+marker+"/"+marker+".pdf", bytes.Repeat([]byte(marker), 5000))
	e.x.Close()
	e.blobs.Close()
	filepath.Walk(e.dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(p, "MRKR") {
			t.Errorf("name on disk: %s", p)
		}
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("MRKR")) {
				t.Errorf("marker in %s", p)
			}
		}
		return nil
	})
	e.open(t)
}

// TestTamper: a file's segment blob replaced by another file's, or by its
// own older version, fails to read as an integrity error.
func TestTamper(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	write(t, tr, "a", random(2*segSize))
	write(t, tr, "b", random(2*segSize))
	blobs := func() map[blob.ID]string {
		m := map[blob.ID]string{}
		e.blobs.List(func(id blob.ID, _ int64) error {
			m[id] = filepath.Join(e.dir, "blobs", id.String()[:2], id.String())
			return nil
		})
		return m
	}
	before := blobs()
	old := map[string][]byte{}
	for _, p := range before {
		old[p], _ = os.ReadFile(p)
	}
	// A new version of a's second segment.
	w, _ := tr.OpenFile("a", os.O_RDWR, 0)
	w.WriteAt([]byte("new"), segSize+1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var fresh string
	for id, p := range blobs() {
		if _, ok := before[id]; !ok {
			fresh = p
		}
	}
	// Put every older blob's bytes in its place in turn: each must fail.
	for p, b := range old {
		if err := os.WriteFile(fresh, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := tr.OpenFile("a", os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadAt(make([]byte, 10), segSize)
		f.Close()
		if !errors.Is(err, envelope.ErrAuth) {
			t.Errorf("segment replaced by %s: %v", filepath.Base(p), err)
		}
	}
}

func TestTrees(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"bob", "alice", ".securefsd-folders/team"} {
		write(t, e.tree(t, n), "f", []byte(n))
	}
	names, err := e.s.TreeNames()
	if err != nil || strings.Join(names, " ") != ".securefsd-folders/team alice bob" {
		t.Errorf("trees: %v %v", names, err)
	}
	if err := e.s.RemoveTree("bob"); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.s.HasTree("bob"); ok || err != nil {
		t.Errorf("removed tree: %v %v", ok, err)
	}
	if ok, _ := e.s.HasTree("alice"); !ok {
		t.Error("alice's tree gone")
	}
	if err := e.s.RemoveTree("bob"); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
	if fis, err := e.tree(t, "bob").ReadDir("."); err != nil || len(fis) != 0 {
		t.Errorf("a tree made again under a removed one's name: %v %v", fis, err)
	}
}

// TestCreateLater: a file of CreateLater is nowhere in the index until
// its publish, which creates it with its content, mode and time in one
// transaction; an aborted one leaves nothing; a name taken meanwhile
// makes the publish fail.
func TestCreateLater(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	tr.Mkdir("tmp", 0o700)
	epoch := func() uint64 { n, _ := e.x.Epoch(); return n }
	before := epoch()
	f, err := tr.CreateLater("tmp/up", 0o640)
	if err != nil {
		t.Fatal(err)
	}
	data := random(segSize + 3)
	f.WriteAt(data, 0)
	mt := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	f.SetTimes(time.Time{}, mt)
	if _, err := tr.Lstat("tmp/up"); !errors.Is(err, fs.ErrNotExist) || epoch() != before {
		t.Fatalf("a CreateLater file is in the index before its publish: %v, epoch %d → %d", err, before, epoch())
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(data)) || fi.Mode() != 0o640 {
		t.Errorf("Stat before the publish: %v %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if epoch() != before+1 {
		t.Errorf("%d transactions for a new file, want 1", epoch()-before)
	}
	fi, err := tr.Lstat("tmp/up")
	if err != nil || fi.Mode() != 0o640 || !fi.ModTime().Equal(mt) || fi.Size() != int64(len(data)) {
		t.Fatalf("after the publish: %v %v", fi, err)
	}
	if got := read(t, tr, "tmp/up"); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	// An empty one is created too; an aborted one is not.
	f, _ = tr.CreateLater("tmp/empty", 0o600)
	f.Close()
	if fi, err := tr.Lstat("tmp/empty"); err != nil || fi.Size() != 0 {
		t.Errorf("empty file: %v %v", fi, err)
	}
	f, _ = tr.CreateLater("tmp/aborted", 0o600)
	f.WriteAt([]byte("x"), 0)
	f.Abort()
	if _, err := tr.Lstat("tmp/aborted"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an aborted file exists: %v", err)
	}
	// The name taken in between: the publish fails, the other file stays.
	f, _ = tr.CreateLater("tmp/race", 0o600)
	f.WriteAt([]byte("late"), 0)
	write(t, tr, "tmp/race", []byte("first"))
	if err := f.Close(); !errors.Is(err, fs.ErrExist) {
		t.Errorf("publish over a name taken meanwhile: %v", err)
	}
	if got := read(t, tr, "tmp/race"); string(got) != "first" {
		t.Errorf("the other file: %q", got)
	}
	if _, err := tr.CreateLater("tmp/race", 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateLater of an existing name: %v", err)
	}
	// Nothing left behind: the blobs are those of the files.
	if _, err := e.s.Collect(); err != nil {
		t.Fatal(err)
	}
}

// TestPublishAs: an upload written under a temporary name (CreateLater)
// and synced is made durable without entering the index, and PublishAs
// then names it, replacing the old file, in one transaction; the old
// file's blobs go, the staged ones stay through a Collect, and an upload
// synced and then aborted leaves no blob.
func TestPublishAs(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	tr.Mkdir("tmp", 0o700)
	write(t, tr, "doc", random(2*segSize))
	epoch := func() uint64 { n, _ := e.x.Epoch(); return n }
	blobs := func() int {
		n := 0
		e.blobs.List(func(blob.ID, int64) error { n++; return nil })
		return n
	}
	before, oldBlobs := epoch(), blobs()

	f, err := tr.CreateLater("tmp/up", 0o640)
	if err != nil {
		t.Fatal(err)
	}
	data := random(segSize + 5)
	f.WriteAt(data, 0)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if epoch() != before {
		t.Errorf("Sync of an unnamed upload ran %d transactions", epoch()-before)
	}
	if _, err := tr.Lstat("tmp/up"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a staged upload is in the index: %v", err)
	}
	// Staged blobs are nobody's in the index, yet not orphans.
	if _, err := e.s.Collect(); err != nil {
		t.Fatal(err)
	}
	if got := blobs(); got != oldBlobs+2 {
		t.Errorf("%d blobs after a Collect with an upload staged, want %d", got, oldBlobs+2)
	}
	// A write after the sync replaces one staged segment: that blob goes
	// at once (nobody else ever had it).
	data[segSize+1] ^= 1
	f.WriteAt(data[segSize:], segSize)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := blobs(); got != oldBlobs+2 {
		t.Errorf("%d blobs after a staged segment was rewritten, want %d", got, oldBlobs+2)
	}
	pub, old, err := f.PublishOver("new")
	if err != nil || old != nil {
		t.Fatalf("PublishOver a new name: replaced %v, %v", old, err)
	}
	if fi, err := tr.Lstat("new"); err != nil || pub == nil || pub.Size() != fi.Size() || !pub.ModTime().Equal(fi.ModTime()) ||
		pub.Mode() != fi.Mode() || pub.Name() != "new" || pub.Sys() != fi.Sys() {
		t.Errorf("PublishOver's published %v, Lstat after it %v (%v)", pub, fi, err)
	}
	if epoch() != before+1 {
		t.Errorf("%d transactions to publish an upload, want 1", epoch()-before)
	}
	// Over another file: one transaction, and the collector's for the
	// old file's blobs; PublishOver reports the file it replaced.
	pub, old, err = f.PublishOver("doc")
	if err != nil {
		t.Fatal(err)
	}
	if old == nil || old.Size() != 2*segSize || old.Name() != "doc" || old.IsDir() {
		t.Errorf("PublishOver replaced %v, want doc of %d bytes", old, 2*segSize)
	}
	if pub == nil || pub.Name() != "doc" || pub.Size() != int64(len(data)) {
		t.Errorf("PublishOver published %v, want doc of %d bytes", pub, len(data))
	}
	if got := read(t, tr, "doc"); !bytes.Equal(got, data) {
		t.Error("the published content differs")
	}
	if fi, err := tr.Lstat("doc"); err != nil || fi.Mode() != 0o640 {
		t.Errorf("after PublishAs: %v %v", fi, err)
	}
	if _, err := tr.Lstat("tmp/up"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary name is left: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := blobs(), 2; got != want {
		t.Errorf("%d blobs after the replacement, want %d (the old file's and the rewritten staged segment are garbage)", got, want)
	}

	// Synced, then aborted: no blob left, nothing in the index.
	before = epoch()
	f, _ = tr.CreateLater("tmp/gone", 0o600)
	f.WriteAt(random(segSize+1), 0)
	f.Sync()
	f.Abort()
	if got := blobs(); got != 2 || epoch() != before {
		t.Errorf("an aborted staged upload: %d blobs (want 2), %d transactions", got, epoch()-before)
	}
	// PublishAs onto a directory fails and keeps both.
	tr.Mkdir("dir", 0o700)
	f, _ = tr.CreateLater("tmp/x", 0o600)
	f.WriteAt([]byte("x"), 0)
	if _, _, err := f.PublishOver("dir"); !errors.Is(err, namespace.ErrIsDir) {
		t.Errorf("PublishOver a directory: %v, want ErrIsDir", err)
	}
	f.Close()
	if fi, err := tr.Lstat("dir"); err != nil || !fi.IsDir() {
		t.Errorf("the directory: %v %v", fi, err)
	}
}

// TestOpenedInfo: OpenFile keeps the entry it read (what a Stat right
// after it returns), except when the open truncated the file.
func TestOpenedInfo(t *testing.T) {
	e := newEnv(t)
	tr := e.tree(t, "alice")
	write(t, tr, "doc", random(1000))
	f, err := tr.OpenFile("doc", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	o := f.OpenedInfo()
	if o == nil || o.Name() != st.Name() || o.Size() != st.Size() || o.Mode() != st.Mode() ||
		!o.ModTime().Equal(st.ModTime()) || o.Sys() != st.Sys() {
		t.Errorf("OpenedInfo %v, Stat %v", o, st)
	}
	f.Close()
	f, err = tr.OpenFile("doc", os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if o := f.OpenedInfo(); o != nil {
		t.Errorf("OpenedInfo after a truncating open: %v (size %d)", o, o.Size())
	}
	f.Close()
}

// TestInlineSegments: with InlineMax, a small file's segment is published
// into the index with its layout (no blob file), survives a restart, and
// once replaced or removed its record goes with the collector like a
// blob; a key rotation re-wraps it; an upload staged by Sync keeps it in
// memory until the publish.
func TestInlineSegments(t *testing.T) {
	e := &env{dir: t.TempDir(), key: make([]byte, index.RootKeySize), inlineMax: 20_000}
	rand.Read(e.key)
	e.kr, _ = envelope.NewKeyring()
	e.open(t)
	inIndex := func() int {
		n := 0
		e.x.View(func(tx *index.Tx) error {
			return tx.Scan(index.Kind('b'), nil, func(_, _ []byte) error { n++; return nil })
		})
		return n
	}
	files := func() int {
		n := 0
		e.blobs.List(func(blob.ID, int64) error { n++; return nil })
		return n
	}
	tr := e.tree(t, "alice")
	small := random(5000)
	write(t, tr, "s", small)
	if inIndex() != 1 || files() != 0 {
		t.Fatalf("a small file: %d blobs in the index, %d files", inIndex(), files())
	}
	e.x.Close()
	e.blobs.Close()
	e.open(t)
	tr = e.tree(t, "alice")
	if got := read(t, tr, "s"); !bytes.Equal(got, small) {
		t.Fatal("small file differs after a restart")
	}

	// Staged by Sync, published by PublishAs: nothing in the index
	// before.
	up, err := tr.CreateLater(".up", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	small2 := random(3000)
	up.WriteAt(small2, 0)
	if err := up.Sync(); err != nil {
		t.Fatal(err)
	}
	if inIndex() != 1 || files() != 0 {
		t.Fatalf("a staged small upload: %d blobs in the index, %d files", inIndex(), files())
	}
	if err := up.PublishAs("s"); err != nil {
		t.Fatal(err)
	}
	up.Close()
	if got := read(t, tr, "s"); !bytes.Equal(got, small2) {
		t.Fatal("replacement differs")
	}
	// The replaced one is garbage: collected, its record goes with the
	// next transaction.
	if _, err := e.s.Collect(); err != nil {
		t.Fatal(err)
	}
	tr.Mkdir("d", 0o700)
	if n := inIndex(); n != 1 {
		t.Fatalf("%d blobs in the index after the replacement was collected, want 1", n)
	}

	// A key rotation re-wraps it in the index.
	kr := e.kr.Clone()
	kid, _ := kr.Rotate()
	e.s.SetKeyring(content.Options{Keyring: kr, SegmentChunks: testChunks, InlineMax: e.inlineMax})
	if n, err := tr.Rewrap("s"); err != nil || n != 1 {
		t.Fatalf("rewrap: %d, %v", n, err)
	}
	ids := map[uint32]int{}
	if err := tr.KeyIDs("s", ids); err != nil || ids[kid] != 1 {
		t.Fatalf("key ids after the rewrap: %v, %v", ids, err)
	}
	if got := read(t, tr, "s"); !bytes.Equal(got, small2) {
		t.Fatal("differs after the rewrap")
	}

	// Grown past InlineMax it moves to a blob file.
	w, _ := tr.OpenFile("s", os.O_RDWR, 0)
	w.WriteAt(random(30_000), 3000)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if files() != 1 {
		t.Fatalf("%d blob files after growing past InlineMax, want 1", files())
	}
	if err := tr.Remove("s"); err != nil {
		t.Fatal(err)
	}
	e.s.Collect()
	tr.Mkdir("d2", 0o700)
	if inIndex() != 0 || files() != 0 {
		t.Fatalf("after the removal: %d blobs in the index, %d files", inIndex(), files())
	}
	if n, err := e.x.Verify(); err != nil {
		t.Fatalf("index check after all that: %d records, %v", n, err)
	}
}

// TestRotateUnderOpenUploads: content written before a key rotation and
// published after it (an upload staged by Sync, an in-place write not yet
// published, small segments kept for the index and blobs alike) is
// re-wrapped by its publish: after the old KEK is gone every file reads,
// and every segment is under the new KEK.
func TestRotateUnderOpenUploads(t *testing.T) {
	e := &env{dir: t.TempDir(), key: make([]byte, index.RootKeySize), inlineMax: 20_000}
	rand.Read(e.key)
	e.kr, _ = envelope.NewKeyring()
	e.open(t)
	tr := e.tree(t, "alice")
	want := map[string][]byte{"edit": random(3000), "up-small": random(4000), "up-big": random(2*segSize + 99)}
	write(t, tr, "edit", want["edit"])
	edit, err := tr.OpenFile("edit", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	edit.WriteAt([]byte("before"), 10)
	copy(want["edit"][10:], "before")
	ups := map[string]*File{}
	for _, name := range []string{"up-small", "up-big"} {
		up, err := tr.CreateLater("."+name, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		up.WriteAt(want[name][:len(want[name])/2], 0)
		if err := up.Sync(); err != nil { // staged under the old KEK
			t.Fatal(err)
		}
		ups[name] = up
	}

	// The rotation: both KEKs, every published file re-wrapped, then
	// the old KEK removed.
	both := e.kr.Clone()
	newID, _ := both.Rotate()
	oldID := e.kr.Active()
	e.s.SetKeyring(content.Options{Keyring: both, SegmentChunks: testChunks, InlineMax: e.inlineMax})
	if _, err := tr.Rewrap("edit"); err != nil {
		t.Fatal(err)
	}
	only := both.Clone()
	if err := only.Remove(oldID); err != nil {
		t.Fatal(err)
	}
	e.s.SetKeyring(content.Options{Keyring: only, SegmentChunks: testChunks, InlineMax: e.inlineMax})

	// The writers go on and publish.
	edit.WriteAt([]byte("after"), 2000)
	copy(want["edit"][2000:], "after")
	if err := edit.Close(); err != nil {
		t.Fatal(err)
	}
	for name, up := range ups {
		up.WriteAt(want[name][len(want[name])/2:], int64(len(want[name])/2))
		if err := up.PublishAs(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		up.Close()
	}

	// A restart with the new KEK alone.
	e.kr = only
	e.x.Close()
	e.blobs.Close()
	e.open(t)
	tr = e.tree(t, "alice")
	for name, b := range want {
		if got := read(t, tr, name); !bytes.Equal(got, b) {
			t.Errorf("%s differs", name)
		}
		ids := map[uint32]int{}
		if err := tr.KeyIDs(name, ids); err != nil || len(ids) != 1 || ids[newID] == 0 {
			t.Errorf("%s: key ids %v, %v (want only %d)", name, ids, err, newID)
		}
	}
}

// TestPublishAhead: an upload whose full segments are published while it
// is written (content.Options.Ahead, as on an object store) keeps them
// through the collector's orphan pass, which runs while it writes, and
// publishes them in its one transaction; an aborted one leaves no blob.
func TestPublishAhead(t *testing.T) {
	e := newEnv(t)
	e.s = New(e.s.ns, content.DirBlobs{Dir: e.blobs}, content.Options{Keyring: e.kr, SegmentChunks: testChunks, Ahead: 2})
	tr := e.tree(t, "alice")
	blobs := func() int {
		n := 0
		e.blobs.List(func(blob.ID, int64) error { n++; return nil })
		return n
	}
	for _, abort := range []bool{false, true} {
		before := blobs()
		f, err := tr.CreateLater("up", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		data := random(5*segSize + 17)
		for off := 0; off < len(data); off += 8 << 10 {
			if _, err := f.WriteAt(data[off:min(off+8<<10, len(data))], int64(off)); err != nil {
				t.Fatal(err)
			}
			if off%segSize == 0 {
				if _, err := e.s.Collect(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got := blobs(); got < before+3 {
			t.Errorf("%d blobs published while writing 6 segments, want at least 3", got-before)
		}
		if abort {
			if err := f.Abort(); err != nil {
				t.Fatal(err)
			}
			if got := blobs(); got != before {
				t.Errorf("%d blobs left by an aborted upload", got-before)
			}
			continue
		}
		if _, err := e.s.Collect(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := read(t, tr, "up"); !bytes.Equal(got, data) {
			t.Fatal("the upload reads back different")
		}
		if got := blobs(); got != before+6 {
			t.Errorf("%d blobs for a 6-segment file", got-before)
		}
		if err := tr.Remove("up"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRelaxedFsync: on a relaxed index, an upload the client fsynced
// before its close is on disk when the close returns; one it did not may
// not be yet (what a power cut then finds: the index file alone, its
// write-ahead log lost).
func TestRelaxedFsync(t *testing.T) {
	e := &env{dir: t.TempDir(), key: make([]byte, index.RootKeySize), relaxed: time.Hour}
	rand.Read(e.key)
	var err error
	if e.kr, err = envelope.NewKeyring(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	tr := e.tree(t, "alice")
	if err := tr.Mkdir("d", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := e.x.Sync(); err != nil {
		t.Fatal(err)
	}
	upload := func(name string, fsync bool) {
		f, err := tr.CreateLater("d/tmp-"+name, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(random(1000), 0)
		if fsync { // as vfs.File.Sync does
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Durable(); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.PublishAs("d/" + name); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	upload("synced", true)
	upload("plain", false) // after: the commit of the synced one took nothing of it
	cut := filepath.Join(t.TempDir(), "index.db")
	b, err := os.ReadFile(filepath.Join(e.dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, b, 0o600); err != nil {
		t.Fatal(err)
	}
	x, err := index.Open(cut, e.key)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	after := New(namespace.New(x, nil), content.DirBlobs{Dir: e.blobs}, content.Options{Keyring: e.kr, SegmentChunks: testChunks})
	at, err := after.Tree("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := at.Lstat("d/synced"); err != nil {
		t.Errorf("an upload fsynced before its close is not on disk: %v", err)
	}
	if _, err := at.Lstat("d/plain"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the plain upload: %v (committed before the window?)", err)
	}
}
