package vfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"testing"
)

// failSyncs makes the next n fsyncs of regular files fail with EIO (as
// after a writeback error); later ones succeed, as a second fsync on Linux
// does once the error was reported. It returns a counter of failures.
func failSyncs(ts *testStore, n int) func() int {
	var mu sync.Mutex
	failed := 0
	ts.syncFile = func(f diskFile) error {
		mu.Lock()
		defer mu.Unlock()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && failed < n {
			failed++
			return syscall.EIO
		}
		return f.Sync()
	}
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
}

// TestFsyncFailureAbortsPublish: a new file or a replacement whose fsync
// fails is not published and Close reports the error, although the fsync
// publish would retry succeeds (issue 14, item 13).
func TestFsyncFailureAbortsPublish(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing []byte
	}{
		{"new", nil},
		{"replacement", []byte("old content")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, f := newFS(t)
			if tc.existing != nil {
				writeFile(t, f, "f.bin", tc.existing)
			}
			before, _ := f.Usage()
			failures := failSyncs(ts, 1)
			h, err := f.OpenFile("f.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.Write(bytes.Repeat([]byte("new"), 1000)); err != nil {
				t.Fatal(err)
			}
			err = h.Close()
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("Close = %v, want EIO", err)
			}
			mustPathErr(t, err, "f.bin")
			if failures() != 1 {
				t.Fatalf("%d fsyncs failed, want 1", failures())
			}
			if tc.existing == nil {
				if _, err := f.Stat("f.bin"); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Stat after failed upload = %v, want not exist", err)
				}
			} else if got := readFile(t, f, "f.bin"); !bytes.Equal(got, tc.existing) {
				t.Fatalf("content %q, want the old content", got)
			}
			after, _ := f.Usage()
			if after.UsedBytes != before.UsedBytes || after.Files != before.Files {
				t.Fatalf("usage %d bytes %d files, want %d, %d", after.UsedBytes, after.Files, before.UsedBytes, before.Files)
			}
			assertNoTemps(t, ts, "alice")
		})
	}
}

// TestFsyncFailureSticky: once an fsync of a file failed (an explicit
// Sync), later fsyncs that succeed do not make it durable: Close fails and
// a replacement is not published.
func TestFsyncFailureSticky(t *testing.T) {
	ts, f := newFS(t)
	writeFile(t, f, "f.bin", []byte("old"))
	failSyncs(ts, 1)
	h, err := f.Create("f.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	if err := h.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second Sync = %v, want the sticky EIO", err)
	}
	if err := h.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close = %v, want EIO", err)
	}
	if got := readFile(t, f, "f.bin"); string(got) != "old" {
		t.Fatalf("content %q, want old", got)
	}

	// In place: the error reaches Close too (it used to be dropped).
	failSyncs(ts, 1)
	h, err = f.OpenFile("f.bin", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	if err := h.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("in-place Close = %v, want EIO", err)
	}
}

// assertNoTemps checks the home's temporary directory is empty.
func assertNoTemps(t *testing.T, ts *testStore, home string) {
	t.Helper()
	var n int
	if testStorage == StorageV2 {
		h, err := ts.home(t, home, HomeOptions{}).h.d.Open(tmpDirName)
		if err != nil {
			t.Fatal(err)
		}
		names, _ := h.Readdirnames(-1)
		n = len(names)
	} else {
		ents, err := os.ReadDir(ts.dir + "/" + home + "/" + tmpDirName)
		if err != nil {
			t.Fatal(err)
		}
		n = len(ents)
	}
	if n != 0 {
		t.Fatalf("%d temporary files left", n)
	}
}
