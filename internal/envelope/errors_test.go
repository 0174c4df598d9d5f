package envelope

import (
	"bytes"
	"errors"
	"io"
	"strings"
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

// TestErrorsPrefixedOnce: every error of the exported API carries the
// "envelope:" prefix exactly once, whatever it wraps, and still matches its
// sentinel with errors.Is (issue 15, item 7: no "envelope: x: envelope: y:
// envelope: malformed data").
func TestErrorsPrefixedOnce(t *testing.T) {
	kr := testKeyring(t)
	other := testKeyring(t)
	stored := writeFile(t, kr, pattern(3*chunkSize, 30))
	size := int64(len(stored))
	flip := func(off int64) []byte {
		b := bytes.Clone(stored)
		b[off] ^= 1
		return b
	}
	readAll := func(b []byte) error {
		f, err := Open(newMem(b), int64(len(b)), kr, Options{})
		if err != nil {
			return err
		}
		_, err = f.ReadAt(make([]byte, 3*chunkSize), 0)
		return err
	}
	badKeyring := []byte("securefsd-keyring v1\nactive 7\nkek x AAAA\n")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"open: bad size", func() error { _, err := Open(newMem(stored), HeaderSize+3, kr, Options{}); return err }(), ErrFormat},
		{"open: bad magic", func() error { _, err := Open(newMem(flip(0)), size, kr, Options{}); return err }(), ErrVersion},
		{"open: unknown key", func() error { _, err := Open(newMem(stored), size, other, Options{}); return err }(), ErrUnknownKey},
		{"open: other binding", func() error {
			_, err := Open(newMem(stored), size, kr, Options{Binding: []byte("x")})
			return err
		}(), ErrAuth},
		{"read: damaged chunk", readAll(flip(chunkOffset(1) + 30)), ErrAuth},
		{"read: cut file", readAll(stored[:chunkOffset(2)]), ErrTruncated},
		{"create: unknown AEAD", func() error { _, err := Create(newMem(nil), kr, Options{AEAD: 9}); return err }(), ErrVersion},
		{"create: nil keyring", func() error { _, err := Create(newMem(nil), nil, Options{}); return err }(), ErrUnknownKey},
		{"writer: unknown AEAD", func() error { _, err := NewWriter(io.Discard, kr, Options{AEAD: 9}); return err }(), ErrVersion},
		{"verify: damaged chunk", Verify(newMem(flip(chunkOffset(2)+30)), size, kr, Options{}), ErrAuth},
		{"rewrap: unknown key", func() error { _, err := Rewrap(newMem(stored), size, other, Options{}); return err }(), ErrUnknownKey},
		{"rewrap: nil backing", func() error { _, err := Rewrap(nil, size, kr, Options{}); return err }(), errNoBacking},
		{"key ids: short", func() error { _, err := KeyIDs(newMem(stored[:10])); return err }(), ErrFormat},
		{"plaintext size", func() error { _, err := PlaintextSize(3); return err }(), ErrFormat},
		{"keyring: bad id", func() error { _, err := ParseKeyring(badKeyring, nil); return err }(), ErrFormat},
		{"keyring: empty passphrase", func() error { _, err := MarshalKeyring(kr, []byte{}, Argon2Params{}); return err }(), ErrPassphrase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("got %v, want %v", tc.err, tc.want)
			}
			msg := tc.err.Error()
			if n := strings.Count(msg, "envelope:"); n != 1 || !strings.HasPrefix(msg, "envelope: ") {
				t.Fatalf("%q: prefix %d times", msg, n)
			}
		})
	}
}
