package envelope

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
)

func TestRewrap(t *testing.T) {
	kr := testKeyring(t)
	data := pattern(2*chunkSize+9, 12)
	stored := writeFile(t, kr, data)
	m := newMem(stored)
	size := int64(len(stored))

	changed, err := Rewrap(m, size, kr, Options{})
	if err != nil || changed {
		t.Fatalf("rewrap on the active KEK: %v, %v", changed, err)
	}
	if !bytes.Equal(m.Bytes(), stored) {
		t.Fatal("no-op rewrap changed the file")
	}

	id1 := kr.Active()
	id2, err := kr.Rotate()
	must(t, err)
	syncs := 0
	changed, err = Rewrap(syncFunc{m, func() error { syncs++; return nil }}, size, kr, Options{})
	if err != nil || !changed || syncs != 1 {
		t.Fatalf("rewrap: %v, %v, %d syncs", changed, err, syncs)
	}
	if ids, err := KeyIDs(m); err != nil || !slices.Equal(ids, []uint32{id2}) {
		t.Fatalf("KeyIDs after rewrap: %v, %v", ids, err)
	}
	if !bytes.Equal(m.Bytes()[HeaderSize:], stored[HeaderSize:]) {
		t.Fatal("rewrap touched the content")
	}
	// The old KEK is no longer needed.
	must(t, kr.Remove(id1))
	if got, err := readAll(t, m.Bytes(), kr); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after rewrap: %v", err)
	}
	// Rotating again uses the other slot with the next generation.
	_, err = kr.Rotate()
	must(t, err)
	changed, err = Rewrap(m, size, kr, Options{})
	if err != nil || !changed {
		t.Fatalf("second rewrap: %v, %v", changed, err)
	}
	h, err := readHeader(m)
	must(t, err)
	if h.slots[0].gen != 3 || !h.slots[1].empty() {
		t.Fatalf("slots after two rewraps: gen %d / %d", h.slots[0].gen, h.slots[1].gen)
	}
}

// TestRewrapCrash stops a rewrap between its two header writes (Sync
// fails, as a crash would) and after each of its writes, and checks that
// the file opens with either KEK and that a new Rewrap completes.
func TestRewrapCrash(t *testing.T) {
	kr1 := testKeyring(t)
	data := pattern(1000, 13)
	stored := writeFile(t, kr1, data)
	size := int64(len(stored))
	id1 := kr1.Active()
	kr2 := kr1.Clone()
	id2, err := kr2.Rotate() // active; keeps id1
	must(t, err)
	only2 := kr2.Clone()
	must(t, only2.Remove(id1))

	m := newMem(stored)
	crash := errors.New("crash")
	changed, err := Rewrap(syncFunc{m, func() error { return crash }}, size, kr2, Options{})
	if !errors.Is(err, crash) || !changed {
		t.Fatalf("interrupted rewrap: %v, %v", changed, err)
	}
	mid := m.Bytes()
	if ids, _ := KeyIDs(m); !slices.Equal(ids, []uint32{id2, id1}) {
		t.Fatalf("KeyIDs mid-rewrap: %v", ids)
	}
	for name, kr := range map[string]*Keyring{"old KEK only": kr1, "new KEK only": only2, "both": kr2} {
		if got, err := readAll(t, mid, kr); err != nil || !bytes.Equal(got, data) {
			t.Errorf("mid-rewrap with %s: %v", name, err)
		}
	}
	// Resume: the second write only.
	m2 := newMem(mid)
	m2.record = true
	changed, err = Rewrap(m2, size, kr2, Options{})
	if err != nil || !changed || len(m2.ops) != 1 {
		t.Fatalf("resumed rewrap: %v, %v, %d writes", changed, err, len(m2.ops))
	}
	if ids, _ := KeyIDs(m2); !slices.Equal(ids, []uint32{id2}) {
		t.Fatalf("KeyIDs after resume: %v", ids)
	}
	// A resumed rewrap with only the new KEK works too.
	m3 := newMem(mid)
	if changed, err := Rewrap(m3, size, only2, Options{}); err != nil || !changed {
		t.Fatalf("resume with the new KEK only: %v, %v", changed, err)
	}

	// Every prefix of a full rewrap's writes (and each write torn) leaves
	// a file that opens with the union keyring.
	m4 := newMem(stored)
	m4.record = true
	_, err = Rewrap(m4, size, kr2, Options{})
	must(t, err)
	state := bytes.Clone(stored)
	for k, op := range m4.ops {
		state = applyWrite(state, op.data, op.off)
		if got, err := readAll(t, state, kr2); err != nil || !bytes.Equal(got, data) {
			t.Errorf("after rewrap write %d: %v", k, err)
		}
	}
}

func TestRewrapErrors(t *testing.T) {
	kr := testKeyring(t)
	stored := writeFile(t, kr, []byte("x"))
	size := int64(len(stored))
	if _, err := Rewrap(newMem(stored), size, testKeyring(t), Options{}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown KEK: %v", err)
	}
	if _, err := Rewrap(newMem(stored), HeaderSize+10, kr, Options{}); !errors.Is(err, ErrFormat) {
		t.Errorf("bad size: %v", err)
	}
	if _, err := KeyIDs(newMem([]byte("short"))); !errors.Is(err, ErrFormat) {
		t.Errorf("KeyIDs of junk: %v", err)
	}
}

// TestRewrapWhileOpen: rotation runs while the server writes to the file.
func TestRewrapWhileOpen(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	data := pattern(8*chunkSize, 14)
	id2, err := kr.Rotate()
	must(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := 0; off < len(data); off += 32 << 10 {
			if _, err := f.WriteAt(data[off:off+32<<10], int64(off)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 5 {
		if _, err := Rewrap(m, m.Size(), kr, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	must(t, f.Close())
	if _, err := Rewrap(m, m.Size(), kr, Options{}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := KeyIDs(m); !slices.Equal(ids, []uint32{id2}) {
		t.Fatalf("KeyIDs: %v", ids)
	}
	if got, err := readAll(t, m.Bytes(), kr); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content after concurrent rewrap: %v", err)
	}
}
