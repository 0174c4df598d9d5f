package envelope

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// writeBound creates a file bound to binding holding data and returns its bytes.
func writeBound(t testing.TB, kr *Keyring, binding, data []byte) []byte {
	t.Helper()
	m := newMem(nil)
	f, err := Create(m, kr, Options{Binding: binding})
	must(t, err)
	if len(data) > 0 {
		_, err := f.WriteAt(data, 0)
		must(t, err)
	}
	must(t, f.Close())
	return m.Bytes()
}

// readBound reads stored through every bound reader (File, stream, Verify),
// checks that they agree and returns the plaintext or the first error.
func readBound(t *testing.T, stored []byte, kr *Keyring, binding []byte) ([]byte, error) {
	t.Helper()
	size := int64(len(stored))
	var fileData []byte
	f, fErr := Open(newMem(stored), size, kr, Options{Binding: binding})
	if fErr == nil {
		fileData = make([]byte, f.Size())
		if _, err := f.ReadAt(fileData, 0); err != nil && err != io.EOF {
			fErr = err
		}
		must(t, f.Close())
	}
	var streamData []byte
	r, sErr := NewReader(newMem(stored), size, kr, Options{Binding: binding})
	if sErr == nil {
		streamData, sErr = io.ReadAll(r)
	}
	vErr := Verify(newMem(stored), size, kr, Options{Binding: binding})
	if (fErr == nil) != (sErr == nil) || (fErr == nil) != (vErr == nil) {
		t.Fatalf("File says %v, stream %v, Verify %v", fErr, sErr, vErr)
	}
	if fErr != nil {
		return nil, fErr
	}
	if !bytes.Equal(fileData, streamData) {
		t.Fatal("File and stream read different plaintexts")
	}
	return fileData, nil
}

func TestBinding(t *testing.T) {
	kr := testKeyring(t)
	data := pattern(2*chunkSize+9, 11)
	alice := []byte("securefsd home alice")
	bob := []byte("securefsd home bob")
	boundA := writeBound(t, kr, alice, data)
	unbound := writeFile(t, kr, data)

	var streamed bytes.Buffer
	w, err := NewWriter(&streamed, kr, Options{Binding: alice})
	must(t, err)
	_, err = w.Write(data)
	must(t, err)
	must(t, w.Close())

	for _, tc := range []struct {
		name    string
		file    []byte
		binding []byte
		want    error // nil: reads data
	}{
		{"same binding", boundA, alice, nil},
		{"stream-written, same binding", streamed.Bytes(), alice, nil},
		{"unbound file, empty binding", unbound, nil, nil},
		{"unbound file, empty non-nil binding", unbound, []byte{}, nil},
		{"other binding", boundA, bob, ErrAuth},
		{"stream-written, other binding", streamed.Bytes(), bob, ErrAuth},
		{"bound file read unbound", boundA, nil, ErrAuth},
		{"unbound file read bound", unbound, alice, ErrAuth},
		{"binding with a byte appended", boundA, append(bytes.Clone(alice), 0), ErrAuth},
		{"binding cut by one byte", boundA, alice[:len(alice)-1], ErrAuth},
		{"binding differing in case", boundA, bytes.ToUpper(alice), ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBound(t, tc.file, kr, tc.binding)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("err %v, plaintext equal %v", err, bytes.Equal(got, data))
			}
		})
	}
	// The unbound API is the bound one with an empty binding.
	if _, err := openAndReadAll(t, boundA, kr); !errors.Is(err, ErrAuth) {
		t.Fatalf("Open of a bound file: %v", err)
	}
}

// TestBindingNotStored: the binding leaves no trace in the stored bytes, and
// a wrong binding is reported at the header (Open), before any chunk.
func TestBindingNotStored(t *testing.T) {
	kr := testKeyring(t)
	secret := []byte("securefsd home a-very-recognisable-home-name")
	stored := writeBound(t, kr, secret, []byte("x"))
	if bytes.Contains(stored, []byte("recognisable")) {
		t.Fatal("binding stored in the file")
	}
	if len(stored) != int(CiphertextSize(1)) {
		t.Fatalf("bound file is %d bytes, want %d", len(stored), CiphertextSize(1))
	}
	// Only the header is given: Open must fail without reading chunks.
	if _, err := Open(newMem(stored[:HeaderSize]), int64(len(stored)), kr, Options{Binding: []byte("other")}); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong binding at header: %v", err)
	}
}

// TestTamperBound: every tamper case of unbound files is still caught in a
// bound file, and pieces of a file of another binding do not fit.
func TestTamperBound(t *testing.T) {
	kr := testKeyring(t)
	alice, bob := []byte("securefsd home alice"), []byte("securefsd home bob")
	a := writeBound(t, kr, alice, pattern(3*chunkSize, 1))
	a2 := writeBound(t, kr, alice, pattern(3*chunkSize, 2))
	b := writeBound(t, kr, bob, pattern(3*chunkSize, 3))
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"file id", flip(a, 20), ErrAuth},
		{"slot 0 generation", flip(a, 51), ErrAuth},
		{"wrapped DEK", flip(a, 90), ErrAuth},
		{"middle chunk", flip(a, chunkOffset(1)+100), ErrAuth},
		{"last tag", flip(a, int64(len(a)-1)), ErrAuth},
		{"truncated to two chunks", a[:chunkOffset(2)], ErrTruncated},
		{"header of another binding", append(bytes.Clone(b[:HeaderSize]), a[HeaderSize:]...), ErrAuth},
		{"whole file of another binding", b, ErrAuth},
		{"chunk from another binding", withChunk(a, 1, encChunk(b, 1)), ErrAuth},
		{"chunk from another file, same binding", withChunk(a, 1, encChunk(a2, 1)), ErrAuth},
		{"header from another file, same binding", append(bytes.Clone(a2[:HeaderSize]), a[HeaderSize:]...), ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readBound(t, tc.file, kr, alice); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A whole file of the same binding is valid (swaps within a binding are
	// not detected: docs/FORMAT.md, section 5.5).
	if _, err := readBound(t, a2, kr, alice); err != nil {
		t.Fatalf("other file of the same binding: %v", err)
	}
}

func TestRewrapKeepsBinding(t *testing.T) {
	kr := testKeyring(t)
	alice, bob := []byte("securefsd home alice"), []byte("securefsd home bob")
	data := pattern(chunkSize+3, 5)
	stored := writeBound(t, kr, alice, data)
	kr2 := kr.Clone()
	oldID := kr2.Active()
	_, err := kr2.Rotate()
	must(t, err)

	// A wrong binding (or the unbound Rewrap) is refused and writes nothing.
	for name, rewrap := range map[string]func(m *memBacking) (bool, error){
		"other binding": func(m *memBacking) (bool, error) { return Rewrap(m, m.Size(), kr2, Options{Binding: bob}) },
		"unbound":       func(m *memBacking) (bool, error) { return Rewrap(m, m.Size(), kr2, Options{}) },
	} {
		m := newMem(stored)
		if changed, err := rewrap(m); !errors.Is(err, ErrAuth) || changed {
			t.Fatalf("%s: changed %v, err %v", name, changed, err)
		}
		if !bytes.Equal(m.Bytes(), stored) {
			t.Fatalf("%s: header written", name)
		}
	}

	// Interrupted, then completed, with the right binding.
	m := newMem(stored)
	if _, err := Rewrap(syncFunc{m, func() error { return errors.New("crash") }}, m.Size(), kr2, Options{Binding: alice}); err == nil {
		t.Fatal("rewrap did not stop")
	}
	if _, err := readBound(t, m.Bytes(), kr, alice); err != nil {
		t.Fatalf("mid-rewrap, old keyring: %v", err)
	}
	if _, err := readBound(t, m.Bytes(), kr2, bob); !errors.Is(err, ErrAuth) {
		t.Fatalf("mid-rewrap, other binding: %v", err)
	}
	changed, err := Rewrap(m, m.Size(), kr2, Options{Binding: alice})
	if err != nil || !changed {
		t.Fatalf("complete rewrap: changed %v, err %v", changed, err)
	}
	must(t, kr2.Remove(oldID))
	got, err := readBound(t, m.Bytes(), kr2, alice)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after rewrap: %v", err)
	}
	// The new slot is bound too.
	if _, err := readBound(t, m.Bytes(), kr2, bob); !errors.Is(err, ErrAuth) {
		t.Fatalf("after rewrap, other binding: %v", err)
	}
	if changed, err := Rewrap(m, m.Size(), kr2, Options{Binding: alice}); err != nil || changed {
		t.Fatalf("second rewrap: changed %v, err %v", changed, err)
	}
}

// TestRebind: a rebind moves a file from one binding to another by its
// header alone (same file id, same chunks); the file then opens with the
// new binding only; a second rebind is a no-op; a wrong "from" binding
// writes nothing; a header in the middle of a rotation (both slots) is
// rebound onto the active KEK.
func TestRebind(t *testing.T) {
	kr := testKeyring(t)
	data := pattern(chunkSize+77, 31)
	a, b, c := []byte("securefsd home alice"), []byte("securefsd folder cases"), []byte("securefsd home bob")
	stored := writeBound(t, kr, a, data)
	m := newMem(stored)

	if changed, err := Rebind(m, kr, c, b); !errors.Is(err, ErrAuth) || changed {
		t.Fatalf("rebind from a wrong binding: %v, %v", changed, err)
	}
	if !bytes.Equal(m.Bytes(), stored) {
		t.Fatal("a refused rebind wrote")
	}
	changed, err := Rebind(m, kr, a, b)
	if err != nil || !changed {
		t.Fatalf("rebind: %v, %v", changed, err)
	}
	if !bytes.Equal(m.Bytes()[HeaderSize:], stored[HeaderSize:]) || !bytes.Equal(m.Bytes()[16:48], stored[16:48]) {
		t.Fatal("rebind touched the content or the file id")
	}
	if got, err := readAllBound(t, m.Bytes(), kr, b); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with the new binding: %v", err)
	}
	if _, err := readAllBound(t, m.Bytes(), kr, a); !errors.Is(err, ErrAuth) {
		t.Fatalf("read with the old binding: %v, want ErrAuth", err)
	}
	if changed, err := Rebind(m, kr, a, b); err != nil || changed {
		t.Fatalf("second rebind: %v, %v", changed, err)
	}

	// Mid-rotation: the new KEK's slot written, the old one not cleared.
	stored = writeBound(t, kr, a, data)
	m = newMem(stored)
	_, err = kr.Rotate()
	must(t, err)
	fail := errors.New("crash")
	if _, err := Rewrap(syncFunc{m, func() error { return fail }}, int64(len(stored)), kr, Options{Binding: a}); !errors.Is(err, fail) {
		t.Fatalf("interrupted rewrap: %v", err)
	}
	if changed, err := Rebind(m, kr, a, b); err != nil || !changed {
		t.Fatalf("rebind mid-rotation: %v, %v", changed, err)
	}
	if ids, err := KeyIDs(m); err != nil || !slices.Equal(ids, []uint32{kr.Active()}) {
		t.Fatalf("KeyIDs after rebind: %v, %v", ids, err)
	}
	if got, err := readAllBound(t, m.Bytes(), kr, b); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after rebind mid-rotation: %v", err)
	}
}
