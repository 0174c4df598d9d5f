package envelope

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestFileKeepsAEAD: a file keeps the AEAD it was created with through
// writes, growth, shrinking, re-wraps and reopening, whatever the default;
// the streams do too; new files get DefaultAEAD.
func TestFileKeepsAEAD(t *testing.T) {
	if DefaultAEAD != XAES256GCM {
		t.Fatalf("DefaultAEAD = %v", DefaultAEAD)
	}
	forAEADs(t, func(t *testing.T, aead AEAD) {
		kr := testKeyring(t)
		m := newMem(nil)
		f, err := Create(m, kr, Options{Binding: []byte("home"), AEAD: aead})
		must(t, err)
		if f.AEAD() != aead {
			t.Fatalf("AEAD() = %v", f.AEAD())
		}
		want := pattern(20*chunkSize+3, 30)
		for off := 0; off < len(want); off += 3 * chunkSize {
			_, err := f.WriteAt(want[off:min(off+3*chunkSize, len(want))], int64(off))
			must(t, err)
		}
		must(t, f.Truncate(12*chunkSize+1))
		want = want[:12*chunkSize+1]
		must(t, f.Close())
		kr2 := kr.Clone()
		_, err = kr2.Rotate()
		must(t, err)
		if changed, err := Rewrap(m, m.Size(), kr2, Options{Binding: []byte("home")}); err != nil || !changed {
			t.Fatalf("rewrap: %v %v", changed, err)
		}
		if AEAD(m.Bytes()[9]) != aead {
			t.Fatalf("stored AEAD id %d after rewrap", m.Bytes()[9])
		}
		g, err := Open(m, m.Size(), kr2, Options{Binding: []byte("home")})
		must(t, err)
		if g.AEAD() != aead {
			t.Fatalf("reopened: AEAD() = %v", g.AEAD())
		}
		_, err = g.WriteAt([]byte("more"), int64(len(want)))
		must(t, err)
		want = append(want, "more"...)
		must(t, g.Close())
		got, err := readAllBound(t, m.Bytes(), kr2, []byte("home"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read back: %v", err)
		}
		if AEAD(m.Bytes()[9]) != aead {
			t.Fatalf("stored AEAD id %d after writes", m.Bytes()[9])
		}

		var buf bytes.Buffer
		w, err := NewWriter(&buf, kr, Options{AEAD: aead})
		must(t, err)
		_, err = w.Write(want)
		must(t, err)
		must(t, w.Close())
		if AEAD(buf.Bytes()[9]) != aead {
			t.Fatalf("stream: AEAD id %d", buf.Bytes()[9])
		}
		r, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), kr, Options{})
		must(t, err)
		got, err = io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("stream read back: %v", err)
		}
	})
	if _, err := Create(newMem(nil), testKeyring(t), Options{AEAD: 3}); !errors.Is(err, ErrVersion) {
		t.Fatalf("Create(AEAD 3): %v", err)
	}
	if _, err := NewWriter(io.Discard, testKeyring(t), Options{AEAD: 255}); !errors.Is(err, ErrVersion) {
		t.Fatalf("NewWriter(AEAD 255): %v", err)
	}
	f, err := Create(newMem(nil), testKeyring(t), Options{})
	must(t, err)
	if f.AEAD() != DefaultAEAD {
		t.Fatalf("Create: %v", f.AEAD())
	}
}

// heldBuffers counts the pooled buffers a File holds.
func heldBuffers(f *File) int {
	n := len(f.cache.entries) + len(f.cache.spare)
	if f.scratch != nil {
		n++
	}
	if f.pend.buf != nil {
		n++
	}
	return n
}

// TestIdleFileHoldsNoBuffers: after Flush (and Close) a File holds no chunk
// buffer, whatever it did before: reads with read-ahead, a cached upload,
// the append fast path.
func TestIdleFileHoldsNoBuffers(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	data := pattern(40*chunkSize+5, 50)
	for off := 0; off < len(data); off += chunkSize {
		_, err := f.WriteAt(data[off:min(off+chunkSize, len(data))], int64(off))
		must(t, err)
	}
	if heldBuffers(f) == 0 {
		t.Fatal("an upload in progress holds no buffer")
	}
	must(t, f.Flush())
	if n := heldBuffers(f); n != 0 {
		t.Fatalf("after Flush: %d buffers held", n)
	}
	checkAll(t, f, data)
	if heldBuffers(f) == 0 {
		t.Fatal("reads cached nothing")
	}
	must(t, f.Flush())
	if n := heldBuffers(f); n != 0 {
		t.Fatalf("after reads and Flush: %d buffers held", n)
	}
	_, err = f.WriteAt([]byte("x"), 5)
	must(t, err)
	must(t, f.Close())
	if n := heldBuffers(f); n != 0 {
		t.Fatalf("after Close: %d buffers held", n)
	}
}

// TestSequentialReaderHoldsReadAhead: a sequential reader keeps about one
// read-ahead batch cached, not the whole cache.
func TestSequentialReaderHoldsReadAhead(t *testing.T) {
	kr := testKeyring(t)
	data := pattern(3*maxCached*chunkSize, 51)
	m := newMem(writeFile(t, kr, data))
	f, err := Open(m, m.Size(), kr, Options{})
	must(t, err)
	p := make([]byte, 32<<10)
	most := 0
	for off := 0; off < len(data); off += len(p) {
		_, err := f.ReadAt(p, int64(off))
		must(t, err)
		if !bytes.Equal(p, data[off:off+len(p)]) {
			t.Fatalf("read at %d differs", off)
		}
		most = max(most, len(f.cache.entries))
	}
	if most > batchChunks+3 {
		t.Errorf("a sequential reader held %d cached chunks", most)
	}
	must(t, f.Close())
}
