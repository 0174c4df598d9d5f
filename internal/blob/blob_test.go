package blob

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func openDir(t testing.TB) (*Dir, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dir
}

func write(t testing.TB, d *Dir, data []byte) ID {
	t.Helper()
	p, err := d.Create(NewID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	return p.ID()
}

func list(t *testing.T, d *Dir) map[ID]int64 {
	t.Helper()
	got := map[ID]int64{}
	if err := d.List(func(id ID, size int64) error { got[id] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLifecycle(t *testing.T) {
	d, dir := openDir(t)
	data := bytes.Repeat([]byte("blob"), 5000)
	id := write(t, d, data)
	b, err := d.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	b.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, id.String()[:2], id.String())); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("blob file: %v %v", fi, err)
	}
	// Not visible until published; gone after an abort.
	p, err := d.Create(NewID())
	if err != nil {
		t.Fatal(err)
	}
	p.WriteAt([]byte("half"), 0)
	if _, err := d.Open(p.ID()); !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unpublished blob: %v", err)
	}
	p.Abort()
	if got := list(t, d); len(got) != 1 || got[id] != int64(len(data)) {
		t.Errorf("list: %v", got)
	}
	// An id in use is never overwritten.
	if _, err := d.Create(id); !errors.Is(err, ErrExists) {
		t.Errorf("create over an existing blob: %v", err)
	}
	if got := list(t, d); got[id] != int64(len(data)) {
		t.Errorf("the blob after a create over it: %v", got)
	}
	if err := d.Delete(id); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(id); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if _, err := d.Open(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted blob: %v", err)
	}
}

// TestCrashLeftovers: a blob a crash left unpublished is an orphan under
// its id, listed for the collector (nothing references it); what an older
// version left in tmp/ is removed when the directory opens; names that
// are not blobs are never listed.
func TestCrashLeftovers(t *testing.T) {
	d, dir := openDir(t)
	half := NewID()
	p, err := d.Create(half)
	if err != nil {
		t.Fatal(err)
	}
	p.WriteAt([]byte("unpublished"), 0)
	p.File.Close() // the process dies here
	id := write(t, d, []byte("kept"))
	d.Close()
	for _, junk := range []string{"zz/not-a-blob", "ab/" + id.String(), "README", tmpDir + "/" + NewID().String()} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(junk)), 0o700)
		os.WriteFile(filepath.Join(dir, junk), []byte("x"), 0o600)
	}
	d, err = OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(ents) != 0 {
		t.Errorf("unpublished blobs left: %d", len(ents))
	}
	got := list(t, d)
	if len(got) != 2 || got[id] != 4 || got[half] != 11 {
		t.Errorf("list after a crash and planted names: %v", got)
	}
}

// TestSymlinkPlanted: a symlink planted under a blob's name does not let
// Open leave the directory.
func TestSymlinkPlanted(t *testing.T) {
	d, dir := openDir(t)
	id := NewID()
	os.MkdirAll(filepath.Join(dir, id.String()[:2]), 0o700)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("outside"), 0o600)
	if err := os.Symlink(secret, filepath.Join(dir, id.String()[:2], id.String())); err != nil {
		t.Fatal(err)
	}
	if b, err := d.Open(id); err == nil {
		b.Close()
		t.Fatal("a symlink out of the directory opened")
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(NewID().String())
	f.Add("../../etc/passwd")
	f.Add("ABCDEF0123456789ABCDEF0123456789")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q) = %s: not the one form", s, id)
		}
	})
}

// TestCreateNew: blobs under names made ahead are neither listed nor
// opened until published, publish with one fsync (the file's: the batch's
// directory was fsynced when the names were made), and the names left are
// removed at Close or, after a crash, are empty orphans for the
// collector.
func TestCreateNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	syncs := 0
	d.sync = func(f *os.File) error { syncs++; return f.Sync() }
	p, err := d.CreateNew()
	if err != nil {
		t.Fatal(err)
	}
	if syncs != 1 {
		t.Errorf("%d fsyncs to make a batch of names, want 1 (the directory)", syncs)
	}
	if got := list(t, d); len(got) != 0 {
		t.Errorf("names made ahead are listed: %v", got)
	}
	if _, err := d.Open(p.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("a blob being written opens: %v", err)
	}
	p.WriteAt([]byte("named ahead"), 0)
	syncs = 0
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	if syncs != 1 {
		t.Errorf("%d fsyncs to publish, want 1", syncs)
	}
	q, _ := d.CreateNew()
	q.Abort()
	if got := list(t, d); len(got) != 1 || got[p.ID()] != 11 {
		t.Errorf("list: %v", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, _ error) error {
		if e.Type().IsRegular() {
			n++
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d files after Close, want the 1 blob", n)
	}

	// A crash with names made ahead: empty orphans, listed.
	d, err = OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.CreateNew(); err != nil {
		t.Fatal(err)
	}
	d2, err := OpenDir(dir) // the next process, the first one dead
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if got := list(t, d2); len(got) != 1+namesAhead {
		t.Errorf("%d blobs listed after a crash, want the blob and %d empty names", len(got), namesAhead)
	}
}
