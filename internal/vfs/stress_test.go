package vfs

import (
	"errors"
	"path/filepath"
	"strings"

	"fmt"
	"github.com/securefsd/securefsd/internal/envelope"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

// TestConcurrentNamespace runs random operations from several goroutines
// (like several clients of one user) on a small set of names: no deadlock,
// no race, no panic; afterwards the usage counters match a fresh count and
// no temporary file is left.
func TestConcurrentNamespace(t *testing.T) {
	ts, f := newFS(t)
	names := []string{"a", "b", "d/a", "d/b", "d", "e", "e/f"}
	iters := 300
	if testing.Short() {
		iters = 100
	}
	// Files on the old KEK, moved around by the goroutines while a
	// rotation re-wraps the store.
	f.Mkdir("d", 0o755)
	for _, n := range []string{"a", "b", "d/a", "d/b", "old1", "old2"} {
		writeFile(t, f, n, []byte("before rotation: "+n))
	}
	kr := ts.kr.Clone()
	newID, err := kr.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	ts.SetKeyring(kr)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			buf := make([]byte, 70000)
			var open []*File
			for range iters {
				name := names[rng.IntN(len(names))]
				switch rng.IntN(12) {
				case 0, 1:
					flag := []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_CREATE | os.O_TRUNC, os.O_RDWR}[rng.IntN(4)]
					if h, err := f.OpenFile(name, flag, 0o644); err == nil {
						open = append(open, h)
					}
				case 2, 3:
					if len(open) > 0 {
						h := open[rng.IntN(len(open))]
						h.WriteAt(buf[:rng.IntN(len(buf))], int64(rng.IntN(100000)))
					}
				case 4:
					if len(open) > 0 {
						h := open[rng.IntN(len(open))]
						h.ReadAt(buf[:rng.IntN(len(buf))], int64(rng.IntN(100000)))
					}
				case 5:
					if len(open) > 0 {
						i := rng.IntN(len(open))
						if rng.IntN(4) == 0 {
							open[i].Abort()
						} else {
							open[i].Close()
						}
						open = append(open[:i], open[i+1:]...)
					}
				case 6:
					f.Rename(name, names[rng.IntN(len(names))], rng.IntN(2) == 0)
				case 7:
					if rng.IntN(3) == 0 {
						f.RemoveAll(name)
					} else {
						f.Remove(name)
					}
				case 8:
					f.Mkdir(name, 0o755)
				case 9:
					f.Stat(name)
					f.ReadDir("d")
					if d, err := f.Open("/"); err == nil {
						for {
							if _, err := d.Readdir(2); err != nil {
								break
							}
						}
						d.Close()
					}
				case 10:
					f.Truncate(name, int64(rng.IntN(100000)))
				case 11:
					f.UpdateMeta(name, func(m *Meta) error { m.Props = map[string]string{"{x}y": fmt.Sprint(g)}; return nil })
					f.Checksums(t.Context(), name)
				}
			}
			for _, h := range open {
				h.Close()
			}
		}()
	}
	rw := make(chan error)
	go func() { rw <- ts.Rewrap(t.Context(), nil) }()
	wg.Wait()
	if err := <-rw; err != nil {
		t.Fatalf("rewrap while serving: %v", err)
	}
	u, _ := f.Usage()
	f.h.ns.Lock()
	f.h.recount()
	f.h.ns.Unlock()
	u2, _ := f.Usage()
	if u.Files != u2.Files || u.UsedBytes != u2.UsedBytes {
		t.Fatalf("usage drifted: kept %d files %d bytes, recount %d files %d bytes", u.Files, u.UsedBytes, u2.Files, u2.UsedBytes)
	}
	tmps, _ := os.ReadDir(ts.dir + "/alice/" + tmpDirName)
	if len(tmps) != 0 {
		t.Fatalf("%d temporaries left", len(tmps))
	}
	// Every file left is on the new KEK alone (in storage v2, once the
	// segments nothing reads any more are collected; the index is sealed
	// under its own key, not the keyring).
	if err := ts.Collect(); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(ts.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), indexFileName) {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Size() == 0 {
			return nil // a blob name made ahead (blob.Dir.CreateNew), unused: no envelope yet
		}
		fh, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer fh.Close()
		if ids, err := envelope.KeyIDs(fh); err != nil || len(ids) != 1 || ids[0] != newID {
			t.Errorf("%s: key ids %v %v, want only %d", p, ids, err, newID)
		}
		return nil
	})
	// Everything left reads back without integrity errors.
	n, err := ts.Verify(t.Context(), "alice", func(p string, err error) { t.Errorf("damaged %s: %v", p, err) })
	if err != nil || n == 0 && u.Files > 0 {
		t.Fatalf("verify %d %v", n, err)
	}
}

// TestReaddirStreaming: Readdir(n) returns batches and io.EOF like
// os.File.Readdir, hides reserved entries, and includes new files being
// written.
func TestReaddirStreaming(t *testing.T) {
	_, f := newFS(t)
	f.Mkdir("d", 0o755)
	for i := range 7 {
		writeFile(t, f, fmt.Sprintf("d/f%d", i), []byte("x"))
	}
	f.UpdateMeta("d/f0", func(m *Meta) error { m.Props = map[string]string{"{x}y": "z"}; return nil })
	up, _ := f.Create("d/uploading")
	defer up.Close()
	d, err := f.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	seen := map[string]bool{}
	for {
		batch, err := d.Readdir(3)
		if err == io.EOF {
			if len(batch) != 0 {
				t.Fatal("entries with io.EOF")
			}
			break
		}
		if err != nil || len(batch) == 0 || len(batch) > 3 {
			t.Fatalf("batch %d %v", len(batch), err)
		}
		for _, fi := range batch {
			if seen[fi.Name()] || isReserved(fi.Name()) {
				t.Fatalf("entry %q repeated or reserved", fi.Name())
			}
			seen[fi.Name()] = true
		}
	}
	if len(seen) != 8 || !seen["uploading"] {
		t.Fatalf("saw %v", seen)
	}
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, ErrIsDir) {
		t.Fatalf("read on a directory: %v", err)
	}
	d.Seek(0, io.SeekStart)
	all, err := d.Readdir(-1)
	if err != nil || len(all) != 8 {
		t.Fatalf("readdir(-1) after rewind: %d %v", len(all), err)
	}
	des, err := d.ReadDir(1)
	if err != io.EOF || len(des) != 0 {
		t.Fatalf("ReadDir at end: %v %v", des, err)
	}
	if _, err := f.OpenFile("d", os.O_RDWR, 0); err != nil {
		t.Fatalf("directory O_RDWR (WebDAV PROPPATCH): %v", err)
	}
	if _, err := f.OpenFile("d", os.O_WRONLY, 0); !errors.Is(err, ErrIsDir) {
		t.Fatalf("directory O_WRONLY: %v", err)
	}
	var pe *fs.PathError
	_, err = f.ReadDir("d/f1")
	if !errors.As(err, &pe) || !errors.Is(err, ErrNotDir) {
		t.Fatalf("readdir of a file: %v", err)
	}
}
