package vfs

import (
	"bytes"
	"os"
	"testing"

	"github.com/securefsd/securefsd/internal/testutil"
)

// TestWritebackReplacement: an upload (a replacement, fsynced when
// published) asks the kernel to start writeback as it goes; a file written
// in place (not fsynced at close) does not. Contents are unaffected.
func TestWritebackReplacement(t *testing.T) {
	v1Only(t)
	_, f := newFS(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*writebackBytes)/16)

	h, err := f.OpenFile("up.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := h.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if !h.n.back.writeback {
		t.Fatal("replacement without writeback")
	}
	// The ciphertext is larger than the plaintext: at least 2 batches of
	// writebackBytes have been stored before the last write returned.
	if k := h.n.back.kicks.Load(); k < 2 {
		t.Fatalf("writeback started %d times for %d MiB, want >= 2", k, len(data)>>20)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f, "up.bin"); !bytes.Equal(got, data) {
		t.Fatal("contents differ")
	}

	h, err = f.OpenFile("up.bin", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if h.n.back.writeback || h.n.back.kicks.Load() != 0 {
		t.Fatal("in-place write started writeback")
	}
}

// behindEach is a File that writes behind after each write, as the SFTP
// server does while it waits for the next request.
type behindEach struct{ *File }

func (b behindEach) WriteAt(p []byte, off int64) (int, error) {
	n, err := b.File.WriteAt(p, off)
	if err == nil {
		err = b.WriteBehind()
	}
	return n, err
}

// TestWriteBehindInPlace: random 4 KiB writes into a stored file, each
// followed by WriteBehind as the SFTP server calls it, read back right
// through another handle and after the close.
func TestWriteBehindInPlace(t *testing.T) {
	_, f := newFS(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), (6<<20)/16)
	writeFile(t, f, "db.bin", want)
	h, err := f.OpenFile("db.bin", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	testutil.RandomWrites(t, behindEach{h}, want, 600, 512)
	if got := readFile(t, f, "db.bin"); !bytes.Equal(got, want) {
		t.Fatal("contents differ before the close")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f, "db.bin"); !bytes.Equal(got, want) {
		t.Fatal("contents differ after the close")
	}
	ro, err := f.Open("db.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.WriteBehind(); err != nil {
		t.Fatalf("WriteBehind on a read-only handle: %v", err)
	}
}
