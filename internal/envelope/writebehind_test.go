package envelope

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// mutations is how many writes and truncates m has taken.
func (m *memBacking) mutations() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nmut
}

// TestWriteBehind: random 4 KiB writes into a stored file fill the cache
// with dirty chunks. WriteBehind then writes out exactly one, the lowest,
// so that the next write to a chunk not cached needs no write-out; the
// bytes stay right through any mix of writes and write-behinds.
func TestWriteBehind(t *testing.T) {
	kr := testKeyring(t)
	want := pattern(3*maxCached*chunkSize+100, 1)
	m := newMem(writeFile(t, kr, want))
	f, err := Open(m, m.Size(), kr, Options{})
	must(t, err)
	write := func(off int64) {
		t.Helper()
		p := randomPool[off%chunkSize : off%chunkSize+4096]
		_, err := f.WriteAt(p, off)
		must(t, err)
		copy(want[off:], p)
	}

	must(t, f.WriteBehind()) // nothing cached: nothing to do
	for i := range int64(maxCached) {
		write(3*i*chunkSize + 512)
	}
	before := m.mutations()
	must(t, f.WriteBehind())
	if got := m.mutations() - before; got != 1 {
		t.Fatalf("WriteBehind with a full dirty cache made %d writes, want 1", got)
	}
	// What it wrote is the lowest chunk, sealed with the new bytes.
	stored, err := Open(newMem(m.Bytes()), m.Size(), kr, Options{})
	must(t, err)
	got := make([]byte, chunkSize)
	_, err = stored.ReadAt(got, 0)
	must(t, err)
	if !bytes.Equal(got, want[:chunkSize]) {
		t.Fatal("chunk 0 written behind does not hold the new bytes")
	}
	// The next write to a chunk not cached reuses that entry: no write.
	before = m.mutations()
	write(chunkSize + 7)
	if got := m.mutations() - before; got != 0 {
		t.Fatalf("a write after WriteBehind made %d writes, want none", got)
	}

	// Random writes and write-behinds, then the whole file.
	r := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		write(r.Int64N(int64(len(want)) - 4096))
		if r.IntN(3) > 0 {
			must(t, f.WriteBehind())
		}
	}
	checkAll(t, f, want)
	must(t, f.Close())
	back, err := readAll(t, m.Bytes(), kr)
	must(t, err)
	if !bytes.Equal(back, want) {
		t.Fatal("after reopen: content differs")
	}
}

// TestWriteBehindLeavesGrowth: chunks past the stored end (a growing
// file, out of order) and the stored final chunk are left to Flush, which
// keeps the write order of docs/FORMAT.md, section 8.1.
func TestWriteBehindLeavesGrowth(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	p := pattern(4096, 3)
	for i := int64(maxCached); i >= 0; i-- { // backwards: nothing settles
		_, err := f.WriteAt(p, i*chunkSize)
		must(t, err)
	}
	before := m.mutations()
	must(t, f.WriteBehind())
	if got := m.mutations() - before; got != 0 {
		t.Fatalf("WriteBehind of a growing file made %d writes, want none", got)
	}
	must(t, f.Close())
}

// TestWriteBehindError: a failed write-out is sticky: the next write
// reports it, as after a failed eviction.
func TestWriteBehindError(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(writeFile(t, kr, pattern(2*maxCached*chunkSize, 1)))
	f, err := Open(m, m.Size(), kr, Options{})
	must(t, err)
	for i := range int64(maxCached) {
		_, err := f.WriteAt([]byte("x"), 2*i*chunkSize)
		must(t, err)
	}
	m.mu.Lock()
	m.failAt = m.nmut + 1
	m.mu.Unlock()
	if err := f.WriteBehind(); !errors.Is(err, errInjected) {
		t.Fatalf("WriteBehind: %v, want the injected error", err)
	}
	if _, err := f.WriteAt([]byte("y"), 1); !errors.Is(err, errInjected) {
		t.Errorf("WriteAt after a failed write-behind: %v", err)
	}
	if err := f.Close(); !errors.Is(err, errInjected) {
		t.Errorf("Close after a failed write-behind: %v", err)
	}
}
