package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// memBacking is an in-memory Backing, safe for concurrent use. If record is
// set, it logs every mutation (for crash replays).
type memBacking struct {
	mu     sync.RWMutex // ReadAt takes it shared, like concurrent preads
	data   []byte
	record bool
	ops    []memOp
	failAt int // if > 0, the failAt-th mutation (1-based) fails
	nmut   int
}

type memOp struct {
	truncate bool
	off      int64 // write offset, or truncate size
	data     []byte
}

var errInjected = errors.New("injected I/O error")

func newMem(data []byte) *memBacking { return &memBacking{data: bytes.Clone(data)} }

func (m *memBacking) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memBacking) mutate() error {
	m.nmut++
	if m.failAt > 0 && m.nmut == m.failAt {
		return errInjected
	}
	return nil
}

func (m *memBacking) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return 0, err
	}
	if m.record {
		m.ops = append(m.ops, memOp{off: off, data: bytes.Clone(p)})
	}
	m.data = applyWrite(m.data, p, off)
	return len(p), nil
}

func applyWrite(data, p []byte, off int64) []byte {
	if end := off + int64(len(p)); end > int64(len(data)) {
		if end <= int64(cap(data)) {
			old := int64(len(data))
			data = data[:end]
			clear(data[old:max(old, off)]) // a gap reads as zeros, like a hole
		} else {
			data = append(data, make([]byte, end-int64(len(data)))...)
		}
	}
	copy(data[off:], p)
	return data
}

func applyTruncate(data []byte, size int64) []byte {
	if size <= int64(len(data)) {
		return data[:size]
	}
	return append(data, make([]byte, size-int64(len(data)))...)
}

func (m *memBacking) Truncate(size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return err
	}
	if m.record {
		m.ops = append(m.ops, memOp{truncate: true, off: size})
	}
	m.data = applyTruncate(m.data, size)
	return nil
}

func (m *memBacking) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.data))
}

func (m *memBacking) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data)
}

func testKeyring(t testing.TB) *Keyring {
	t.Helper()
	kr, err := NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// pattern returns n deterministic, position-dependent bytes.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n:n]
}

// writeFile creates an envelope file holding data and returns its bytes.
func writeFile(t testing.TB, kr *Keyring, data []byte) []byte {
	t.Helper()
	return writeFileAEAD(t, DefaultAEAD, kr, data)
}

// forAEADs runs fn as a subtest for each content AEAD.
func forAEADs(t *testing.T, fn func(t *testing.T, aead AEAD)) {
	t.Helper()
	for _, a := range []AEAD{XChaCha20Poly1305, XAES256GCM} {
		t.Run(a.String(), func(t *testing.T) { fn(t, a) })
	}
}

// writeFileAEAD is writeFile for a file of the given AEAD.
func writeFileAEAD(t testing.TB, aead AEAD, kr *Keyring, data []byte) []byte {
	t.Helper()
	m := newMem(nil)
	f, err := Create(m, kr, Options{AEAD: aead})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 {
		if _, err := f.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

// readAll opens stored bytes and reads the whole plaintext through a File.
func readAll(t testing.TB, stored []byte, kr *Keyring) ([]byte, error) {
	t.Helper()
	return readAllBound(t, stored, kr, nil)
}

// readAllBound is readAll with a binding context.
func readAllBound(t testing.TB, stored []byte, kr *Keyring, binding []byte) ([]byte, error) {
	t.Helper()
	f, err := Open(newMem(stored), int64(len(stored)), kr, Options{Binding: binding})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make([]byte, f.Size()+1)
	n, err := f.ReadAt(out, 0)
	if err != io.EOF {
		if err == nil {
			t.Fatalf("ReadAt past the end returned no io.EOF")
		}
		return nil, err
	}
	return out[:n], nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// encChunk is stored chunk i of the encrypted file f.
func encChunk(f []byte, i int64) []byte { return f[chunkOffset(i) : chunkOffset(i)+encChunkSize] }

// withChunk returns a copy of the encrypted file dst with stored chunk i
// replaced by src.
func withChunk(dst []byte, i int64, src []byte) []byte {
	c := bytes.Clone(dst)
	copy(c[chunkOffset(i):], src)
	return c
}

// Sync is a no-op: a memBacking has nothing to make durable (Rewrap needs
// the method).
func (m *memBacking) Sync() error { return nil }

// syncFunc gives a backing for Rewrap a Sync that calls fn (to count syncs
// or to crash between Rewrap's two header writes).
type syncFunc struct {
	*memBacking
	fn func() error
}

func (s syncFunc) Sync() error { return s.fn() }
