package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestSmoke(t *testing.T) {
	_, f := newFS(t)
	data := bytes.Repeat([]byte("hello world "), 20000)
	writeFile(t, f, "/a.txt", data)
	fi, err := f.Stat("a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(data)) {
		t.Fatalf("size %d want %d", fi.Size(), len(data))
	}
	if got := readFile(t, f, "a.txt"); !bytes.Equal(got, data) {
		t.Fatal("content mismatch")
	}
	if err := f.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Rename("a.txt", "d/b.txt", false); err != nil {
		t.Fatal(err)
	}
	list, err := f.ReadDir("d")
	if err != nil || len(list) != 1 || list[0].Name() != "b.txt" || list[0].Size() != int64(len(data)) {
		t.Fatalf("readdir %v %v", list, err)
	}
	h, err := f.OpenFile("d/b.txt", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("XYZ"), 5); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate("d/b.txt", 10); err != nil {
		t.Fatal(err)
	}
	if fi, _ := f.Stat("d/b.txt"); fi.Size() != 10 {
		t.Fatalf("size after truncate %d", fi.Size())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f, "d/b.txt"); string(got) != "helloXYZrl" {
		t.Fatalf("got %q", got)
	}
	u, err := f.Usage()
	if err != nil || u.Files != 1 || u.UsedBytes != 10 {
		t.Fatalf("usage %+v %v", u, err)
	}
	if err := f.RemoveAll("d"); err != nil {
		t.Fatal(err)
	}
	u, _ = f.Usage()
	if u.Files != 0 || u.UsedBytes != 0 {
		t.Fatalf("usage after removeall %+v", u)
	}
}

// TestOpenExisting: an open of an existing name (no create, truncate or
// exclusive flag) that storage v2 makes in one view, without a look
// first, still tells files, directories, missing names and missing rights
// apart as before, on both storage versions.
func TestOpenExisting(t *testing.T) {
	ts, f := newFS(t)
	writeFile(t, f, "a.txt", []byte("abc"))
	if err := f.Mkdir("d", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "d/in.txt", []byte("x"))

	h, err := f.OpenFile("a.txt", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("B"), 1); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f, "a.txt"); string(got) != "aBc" {
		t.Fatalf("a.txt = %q", got)
	}
	d, err := f.OpenFile("d", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fis, err := d.Readdir(-1); err != nil || len(fis) != 1 || fis[0].Name() != "in.txt" {
		t.Fatalf("listing d: %v, %v", fis, err)
	}
	d.Close()
	for _, c := range []struct {
		name string
		flag int
		want string
	}{
		{"d", os.O_WRONLY, category(ErrIsDir)},
		{"missing", os.O_RDONLY, category(fs.ErrNotExist)},
		{"missing", os.O_RDWR, category(fs.ErrNotExist)},
		{"d/missing/x", os.O_RDONLY, category(fs.ErrNotExist)},
	} {
		_, err := f.OpenFile(c.name, c.flag, 0)
		if got := category(err); got != c.want {
			t.Errorf("OpenFile(%q, %#o): %v (%s), want %s", c.name, c.flag, err, got, c.want)
		}
	}

	listOnly := ts.home(t, "alice", HomeOptions{Perm: PermList})
	if _, err := listOnly.Open("a.txt"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("open without the download right: %v", err)
	}
	if d, err := listOnly.Open("d"); err != nil {
		t.Errorf("list-only open of a directory: %v", err)
	} else {
		d.Close()
	}
	readOnly := ts.home(t, "alice", HomeOptions{Perm: PermList | PermDownload})
	if _, err := readOnly.OpenFile("a.txt", os.O_RDWR, 0); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("read-write open without the overwrite right: %v", err)
	}
}
