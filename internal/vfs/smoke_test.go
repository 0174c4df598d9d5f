package vfs

import (
	"bytes"
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
