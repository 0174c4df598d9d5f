package envelope

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// errReaderAt fails every read.
type errReaderAt struct{}

func (errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errInjected }

// errBacking fails every read.
type errBacking struct{ errReaderAt }

func (errBacking) WriteAt([]byte, int64) (int, error) { return 0, errInjected }
func (errBacking) Truncate(int64) error               { return errInjected }

// failWriter accepts n bytes, then fails.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errInjected
	}
	w.n -= len(p)
	return len(p), nil
}

func TestIOErrors(t *testing.T) {
	kr := testKeyring(t)
	stored := writeFile(t, kr, pattern(3*chunkSize, 30))
	size := int64(len(stored))

	t.Run("stored file shorter than its stat", func(t *testing.T) {
		short := stored[:chunkOffset(2)+10]
		f, err := Open(newMem(short), size, kr, Options{})
		must(t, err)
		_, err = f.ReadAt(make([]byte, 10), 2*chunkSize)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v", err)
		}
		if err := Verify(newMem(short), size, kr, Options{}); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		if _, err := Open(errBacking{}, size, kr, Options{}); !errors.Is(err, errInjected) {
			t.Fatalf("Open: %v", err)
		}
		if _, err := NewReader(errReaderAt{}, size, kr, Options{}); !errors.Is(err, errInjected) {
			t.Fatalf("NewReader: %v", err)
		}
	})
	t.Run("writer error is sticky", func(t *testing.T) {
		if _, err := NewWriter(&failWriter{n: 10}, kr, Options{}); !errors.Is(err, errInjected) {
			t.Fatalf("header write: %v", err)
		}
		w, err := NewWriter(&failWriter{n: HeaderSize + 100}, kr, Options{})
		must(t, err)
		// The writer seals a batch of chunks at a time: a write of more
		// reaches dst.
		if _, err := w.Write(make([]byte, (batchChunks+1)*chunkSize)); !errors.Is(err, errInjected) {
			t.Fatalf("Write: %v", err)
		}
		if _, err := w.Write([]byte("x")); !errors.Is(err, errInjected) {
			t.Fatalf("second Write: %v", err)
		}
		if err := w.Close(); !errors.Is(err, errInjected) {
			t.Fatalf("Close: %v", err)
		}
	})
	t.Run("writer closed", func(t *testing.T) {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, kr, Options{})
		must(t, err)
		must(t, w.Close())
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("Write after Close")
		}
	})
	t.Run("eviction write error is sticky", func(t *testing.T) {
		m := newMem(nil)
		f, err := Create(m, kr, Options{})
		must(t, err)
		m.mu.Lock()
		m.failAt = m.nmut + 1
		m.mu.Unlock()
		_, err = f.WriteAt(pattern((maxCached+2)*chunkSize, 31), 0)
		if !errors.Is(err, errInjected) {
			t.Fatalf("WriteAt: %v", err)
		}
		if err := f.Flush(); !errors.Is(err, errInjected) {
			t.Fatalf("Flush: %v", err)
		}
	})
	t.Run("truncate error is sticky", func(t *testing.T) {
		m := newMem(stored)
		f, err := Open(m, size, kr, Options{})
		must(t, err)
		m.mu.Lock()
		m.failAt = m.nmut + 2 // the re-seal succeeds, the truncate fails
		m.mu.Unlock()
		if err := f.Truncate(10); !errors.Is(err, errInjected) {
			t.Fatalf("Truncate: %v", err)
		}
		if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, errInjected) {
			t.Fatalf("ReadAt after failed truncate: %v", err)
		}
	})
	t.Run("file id", func(t *testing.T) {
		m := newMem(nil)
		f, err := Create(m, kr, Options{})
		must(t, err)
		id := f.FileID()
		must(t, f.Close())
		g, err := Open(m, m.Size(), kr, Options{})
		must(t, err)
		if g.FileID() != id || id == ([32]byte{}) {
			t.Fatal("file id not kept")
		}
		if !bytes.Equal(m.Bytes()[16:48], id[:]) {
			t.Fatal("file id not at header offset 16")
		}
	})
	t.Run("streaming reader of a cut file", func(t *testing.T) {
		r, err := NewReader(newMem(stored[:chunkOffset(2)]), chunkOffset(2), kr, Options{})
		must(t, err)
		if _, err := io.Copy(io.Discard, r); !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v", err)
		}
		if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrTruncated) {
			t.Fatalf("not sticky: %v", err)
		}
	})
}
