package vfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/testutil"
)

// knownPlaintext returns text lines with a marker followed by random
// bytes, and a scanner that reports any 8-byte run of it found in data.
func knownPlaintext(size int) ([]byte, func(data []byte) int) {
	var b bytes.Buffer
	for i := 0; b.Len() < size/2; i++ {
		fmt.Fprintf(&b, "KNOWN-PLAINTEXT-MARKER line %08d\n", i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Len() < size {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		b.Write(w[:])
	}
	p := b.Bytes()[:size]
	windows := make(map[uint64]struct{}, len(p))
	for i := 0; i+8 <= len(p); i++ {
		windows[binary.LittleEndian.Uint64(p[i:])] = struct{}{}
	}
	scan := func(data []byte) int {
		for i := 0; i+8 <= len(data); i++ {
			if _, ok := windows[binary.LittleEndian.Uint64(data[i:])]; ok {
				// Runs of zeros or other trivial words are not evidence.
				if w := data[i : i+8]; !bytes.Equal(w, make([]byte, 8)) {
					return i
				}
			}
		}
		return -1
	}
	return p, scan
}

// scanStore reads every file under the store directory (temporaries and
// sidecars included) and fails if a run of the plaintext appears.
func scanStore(t *testing.T, dir string, scan func([]byte) int) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			// On a v2 store the background collector deletes a
			// replaced file's blobs while the walk runs: a file gone
			// between listing and reading holds nothing to scan.
			return nil
		}
		if err != nil {
			return err
		}
		files++
		if i := scan(data); i >= 0 {
			t.Fatalf("plaintext found in %s at offset %d", p, i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoPlaintextAtRest writes known plaintext through every write path
// (replacement upload, in-place write, append, truncate-grow, metadata)
// and scans the whole store, temporary files included, mid-upload and
// after.
func TestNoPlaintextAtRest(t *testing.T) {
	ts, f := newFS(t)
	plain, scan := knownPlaintext(600 << 10)
	if scan(plain) != 0 {
		t.Fatal("scanner self-check failed")
	}

	// Mid-upload: a new file and a replacement, flushed to their
	// temporary files but not published.
	writeFile(t, f, "replaced.txt", []byte("old content"))
	up1, err := f.OpenFile("new.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	up2, err := f.OpenFile("replaced.txt", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*File{up1, up2} {
		if _, err := h.Write(plain[:len(plain)/2]); err != nil {
			t.Fatal(err)
		}
		if err := h.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if tmps, _ := os.ReadDir(filepath.Join(ts.dir, "alice", tmpDirName)); testStorage == StorageV1 && len(tmps) < 2 {
		t.Fatalf("expected temporaries mid-upload, found %d", len(tmps))
	}
	scanStore(t, ts.dir, scan)
	for _, h := range []*File{up1, up2} {
		h.Write(plain[len(plain)/2:])
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// In place, random offsets, append, grow by truncate then fill.
	h, err := f.OpenFile("inplace.bin", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	h, _ = f.OpenFile("inplace.bin", os.O_RDWR, 0)
	h.Truncate(int64(len(plain)))
	for off := len(plain) - 4096; off >= 0; off -= 4096 {
		h.WriteAt(plain[off:off+4096], int64(off))
	}
	h.Sync()
	scanStore(t, ts.dir, scan)
	h.Close()
	a, _ := f.OpenFile("append.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	for i := 0; i < len(plain); i += 1000 {
		a.Write(plain[i:min(i+1000, len(plain))])
	}
	a.Close()

	// Metadata and cached hashes.
	f.UpdateMeta("new.txt", func(m *Meta) error {
		m.Props = map[string]string{"{DAV:}x": string(plain[:4096])}
		return nil
	})
	f.Checksums(t.Context(), "inplace.bin")

	for _, name := range []string{"new.txt", "replaced.txt", "inplace.bin", "append.log"} {
		if got := readFile(t, f, name); !bytes.Equal(got, plain) {
			t.Fatalf("%s: content differs", name)
		}
	}
	n := scanStore(t, ts.dir, scan)
	t.Logf("scanned %d files", n)
}

// TestInterruptedReplacement: an upload that dies (process killed before
// Close, or Abort) leaves the old file intact, and the temporary file is
// cleaned up when the home is opened again.
func TestInterruptedReplacement(t *testing.T) {
	for _, mode := range []string{"crash", "abort"} {
		t.Run(mode, func(t *testing.T) {
			ts, f := newFS(t)
			old := bytes.Repeat([]byte("old version\n"), 10000)
			writeFile(t, f, "doc.txt", old)
			h, err := f.OpenFile("doc.txt", os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			h.Write(bytes.Repeat([]byte("NEW"), 50000))
			h.Sync()
			// A new file interrupted too: it must not appear.
			n, _ := f.Create("fresh.txt")
			n.Write([]byte("partial"))
			n.Sync()
			// Meanwhile Stat shows the upload in progress.
			if fi, _ := f.Stat("doc.txt"); fi.Size() != 150000 {
				t.Fatalf("size during upload %d", fi.Size())
			}
			if mode == "abort" {
				if err := h.Abort(); err != nil {
					t.Fatal(err)
				}
				n.Abort()
				if got := readFile(t, f, "doc.txt"); !bytes.Equal(got, old) {
					t.Fatal("old content lost after abort")
				}
				if _, err := f.Stat("fresh.txt"); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("aborted new file visible: %v", err)
				}
				u, _ := f.Usage()
				if u.Files != 1 || u.UsedBytes != int64(len(old)) {
					t.Fatalf("usage after abort %+v", u)
				}
				return
			}
			// Crash: the process goes away without closing the handles.
			ts.Store.Close()
			s2, err := NewStore(ts.dir, ts.with(Options{UploadHashes: testUploadHashes}))
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			f2, _ := s2.Home("alice", HomeOptions{Perm: PermAll})
			if got := readFile(t, f2, "doc.txt"); !bytes.Equal(got, old) {
				t.Fatal("old content lost after crash")
			}
			if _, err := f2.Stat("fresh.txt"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("interrupted new file visible: %v", err)
			}
			tmps, _ := os.ReadDir(filepath.Join(ts.dir, "alice", tmpDirName))
			if len(tmps) != 0 {
				t.Fatalf("%d stale temporaries left", len(tmps))
			}
			u, _ := f2.Usage()
			if u.Files != 1 || u.UsedBytes != int64(len(old)) {
				t.Fatalf("usage after crash %+v", u)
			}
		})
	}
}

// TestInvalidEnvelopeFile: a plaintext file dropped into a home by hand
// lists with a size but never reads as plaintext; tampered ciphertext
// fails too. Both give ErrIntegrity, are logged with the client path, and
// Verify reports them.
func TestInvalidEnvelopeFile(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	home := filepath.Join(ts.dir, "alice")
	os.WriteFile(filepath.Join(home, "dropped.txt"), []byte("plain text put here by an admin\n"), 0o644)
	writeFile(t, f, "good.bin", bytes.Repeat([]byte{7}, 200000))
	writeFile(t, f, "tampered.bin", bytes.Repeat([]byte{9}, 200000))
	p := filepath.Join(home, "tampered.bin")
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 1
	os.WriteFile(p, data, 0o644)

	// A file cut short, or a damaged small file, fails already at open.
	writeFile(t, f, "cut.bin", bytes.Repeat([]byte{5}, 200000))
	writeFile(t, f, "small.txt", []byte("small"))
	cut := filepath.Join(home, "cut.bin")
	cd, _ := os.ReadFile(cut)
	os.WriteFile(cut, cd[:len(cd)-100], 0o644)
	small := filepath.Join(home, "small.txt")
	sd, _ := os.ReadFile(small)
	sd[len(sd)-1] ^= 1
	os.WriteFile(small, sd, 0o644)
	for _, name := range []string{"cut.bin", "small.txt"} {
		if _, err := f.Open(name); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("open %s: %v", name, err)
		}
	}
	os.Remove(cut)
	os.Remove(small)

	if _, err := f.Stat("dropped.txt"); err != nil {
		t.Fatalf("stat of an invalid file: %v", err)
	}
	_, err := f.Open("dropped.txt")
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("open dropped.txt: %v", err)
	}
	mustPathErr(t, err, "dropped.txt")
	h, err := f.Open("tampered.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200000)
	n, err := h.ReadAt(buf, 0)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("read tampered: n=%d %v", n, err)
	}
	mustPathErr(t, err, "tampered.bin")
	if bytes.Contains(buf[:n], []byte{9 ^ 1}) {
		t.Fatal("tampered bytes returned")
	}
	h.Close()
	for _, name := range []string{"dropped.txt", "tampered.bin"} {
		if ts.recs.Count(func(r testutil.Record) bool {
			return r.Attr("integrity") == "true" && r.Level == slog.LevelError && strings.HasSuffix(r.Attr("path"), name)
		}) == 0 {
			t.Fatalf("integrity failure of %s not logged with the client path:\n%s", name, ts.recs.Dump())
		}
	}
	if strings.Contains(fmt.Sprint(err), ts.dir) {
		t.Fatalf("error leaks the disk path: %v", err)
	}
	var bad []string
	checked, err := ts.Verify(t.Context(), "", func(p string, err error) { bad = append(bad, p) })
	if err != nil || checked < 3 { // three files (and the hash-cache sidecar once written)
		t.Fatalf("verify: checked %d, %v", checked, err)
	}
	if strings.Join(bad, ",") != "alice/dropped.txt,alice/tampered.bin" && strings.Join(bad, ",") != "alice/tampered.bin,alice/dropped.txt" {
		t.Fatalf("verify reported %v", bad)
	}
}
