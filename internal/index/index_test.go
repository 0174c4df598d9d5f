package index

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

const (
	kindDirent Kind = 'd'
	kindInode  Kind = 'i'
)

func rootKey(t testing.TB) []byte {
	k := make([]byte, RootKeySize)
	rand.Read(k)
	return k
}

func openIndex(t testing.TB, path string, key []byte) *Index {
	t.Helper()
	x, err := Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func put(t testing.TB, x *Index, kind Kind, key, value string) {
	t.Helper()
	if err := x.Update(func(tx *Tx) error { return tx.Put(kind, []byte(key), []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

func get(x *Index, kind Kind, key string) (string, error) {
	var v []byte
	err := x.View(func(tx *Tx) error {
		var err error
		v, err = tx.Get(kind, []byte(key))
		return err
	})
	return string(v), err
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripAndScan(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { testRoundTripAndScan(t, e.new(t)) })
	}
}

func testRoundTripAndScan(t *testing.T, f *fixture) {
	key := rootKey(t)
	x := f.openT(t, key)
	dir := []byte("dir-inode-id----")
	names := []string{"b.txt", "a.txt", "a very long name " + string(bytes.Repeat([]byte("x"), 1000))}
	err := x.Update(func(tx *Tx) error {
		for _, n := range names {
			k := x.NameKey(dir, n)
			if err := tx.Put(kindDirent, append(bytes.Clone(dir), k[:]...), []byte(n)); err != nil {
				return err
			}
		}
		return tx.Put(kindInode, []byte("other"), []byte("not a dirent"))
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = x.View(func(tx *Tx) error {
		return tx.Scan(kindDirent, dir, func(k, v []byte) error { got = append(got, string(v)); return nil })
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("scan: %d records, %v", len(got), err)
	}
	if _, err := get(x, kindDirent, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing record: %v", err)
	}
	if e, _ := x.Epoch(); e != 1 {
		t.Errorf("epoch %d after one update", e)
	}
	if n, err := x.Verify(); err != nil || n != 4 {
		t.Errorf("verify: %d, %v", n, err)
	}
	// Delete, replace, and an update that fails changes nothing.
	err = x.Update(func(tx *Tx) error {
		k := x.NameKey(dir, "b.txt")
		return tx.Delete(kindDirent, append(bytes.Clone(dir), k[:]...))
	})
	if err != nil {
		t.Fatal(err)
	}
	put(t, x, kindInode, "other", "replaced")
	boom := errors.New("boom")
	if err := x.Update(func(tx *Tx) error { tx.Put(kindInode, []byte("other"), []byte("lost")); return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if v, err := get(x, kindInode, "other"); err != nil || v != "replaced" {
		t.Errorf("after a failed update: %q %v", v, err)
	}
	if n, err := x.Verify(); err != nil || n != 3 {
		t.Errorf("verify after changes: %d, %v", n, err)
	}
	if err := x.Update(func(tx *Tx) error { return tx.Put(kindState, nil, nil) }); !errors.Is(err, ErrKind) {
		t.Errorf("put of the reserved kind: %v", err)
	}
	// Reopen with the key: same content; with another key: refused.
	x.Close()
	if _, err := f.open(t, rootKey(t)); !errors.Is(err, ErrAuth) {
		t.Errorf("open with another key: %v", err)
	}
	x = f.openT(t, key)
	if v, err := get(x, kindInode, "other"); err != nil || v != "replaced" {
		t.Errorf("after reopen: %q %v", v, err)
	}
}

// TestNameKeys: a name's key depends on its parent, and says nothing of
// the name (no name bytes in the file).
func TestNameKeys(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { testNameKeys(t, e.new(t)) })
	}
}

func testNameKeys(t *testing.T, f *fixture) {
	x := f.openT(t, rootKey(t))
	if x.NameKey([]byte("p1"), "n") == x.NameKey([]byte("p2"), "n") {
		t.Error("one name has one key under two parents")
	}
	if x.NameKey([]byte("ab"), "c") == x.NameKey([]byte("a"), "bc") {
		t.Error("parent and name collide by concatenation")
	}
	const marker = "MARKER-clinic-patient-name"
	k := x.NameKey([]byte("root"), marker)
	put(t, x, kindDirent, string(k[:]), marker+" in the value")
	x.Close()
	if bytes.Contains(f.bytes(t), []byte("MARKER")) {
		t.Error("the index's store holds a name in the clear")
	}
}

// TestTamper performs what someone with the disk and no key can do to
// single records: move or copy a value to another key, damage one, remove
// one, put one back from an older copy, plant one.
func TestTamper(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(m, old map[string][]byte)
		getErr  error // what Get of "i/a" gives
		wantErr error // what Verify gives
	}{
		{"value moved to another key", func(m, _ map[string][]byte) { m["ia"] = m["ib"] }, ErrAuth, ErrAuth},
		{"value moved to another kind", func(m, _ map[string][]byte) { m["da"] = m["ia"] }, nil, ErrAuth},
		{"damaged", func(m, _ map[string][]byte) {
			v := bytes.Clone(m["ia"])
			v[len(v)-1] ^= 1
			m["ia"] = v
		}, ErrAuth, ErrAuth},
		{"removed", func(m, _ map[string][]byte) { delete(m, "ib") }, nil, ErrRolledBack},
		{"put back from an older copy", func(m, old map[string][]byte) { m["ia"] = old["ia"] }, nil, ErrRolledBack},
		{"an old record put back after its removal", func(m, old map[string][]byte) { m["ic"] = old["ic"] }, nil, ErrRolledBack},
		{"state put back from an older copy", func(m, old map[string][]byte) {
			m[string(stateKey)] = old[string(stateKey)]
		}, nil, ErrRolledBack},
	}
	for _, e := range engines(t) {
		for _, c := range cases {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				f := e.new(t)
				key := rootKey(t)
				x := f.openT(t, key)
				put(t, x, kindInode, "a", "version 1")
				put(t, x, kindInode, "c", "removed later")
				x.Close()
				var old map[string][]byte
				f.edit(t, func(m map[string][]byte) { old = maps.Clone(m) })
				x = f.openT(t, key)
				put(t, x, kindInode, "a", "version 2")
				put(t, x, kindInode, "b", "other")
				x.Update(func(tx *Tx) error { return tx.Delete(kindInode, []byte("c")) })
				x.Close()
				f.edit(t, func(m map[string][]byte) { c.edit(m, old) })
				x = f.openT(t, key)
				if _, err := get(x, kindInode, "a"); !errors.Is(err, c.getErr) && !(c.getErr == nil && err == nil) {
					t.Errorf("get: %v, want %v", err, c.getErr)
				}
				if _, err := x.Verify(); !errors.Is(err, c.wantErr) {
					t.Errorf("verify: %v, want %v", err, c.wantErr)
				}
			})
		}
	}
}

// TestAnchor: a whole index put back from an older, consistent copy
// passes Verify but not the anchor; an index ahead of its anchor passes;
// an anchor of another index does not open.
func TestAnchor(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { testAnchor(t, e) })
	}
}

func testAnchor(t *testing.T, e struct {
	name string
	new  func(t testing.TB) *fixture
}) {
	f := e.new(t)
	anchor := filepath.Join(t.TempDir(), "anchor")
	key := rootKey(t)
	x := f.openT(t, key)
	if err := x.CheckAnchor(anchor); !errors.Is(err, ErrNoAnchor) {
		t.Fatalf("no anchor: %v", err)
	}
	put(t, x, kindInode, "a", "1")
	x.Close()
	var copied map[string][]byte
	f.edit(t, func(m map[string][]byte) { copied = maps.Clone(m) })
	x = f.openT(t, key)
	put(t, x, kindInode, "a", "2")
	if err := x.WriteAnchor(anchor); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(anchor); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("anchor file: %v %v", fi, err)
	}
	put(t, x, kindInode, "b", "after the anchor")
	if err := x.CheckAnchor(anchor); err != nil {
		t.Errorf("index ahead of its anchor: %v", err)
	}
	x.Close()

	// The older copy: consistent (Verify passes), caught by the anchor.
	f.edit(t, func(m map[string][]byte) { clear(m); maps.Copy(m, copied) })
	x = f.openT(t, key)
	if _, err := x.Verify(); err != nil {
		t.Errorf("verify of a consistent older copy: %v", err)
	}
	if err := x.CheckAnchor(anchor); !errors.Is(err, ErrRolledBack) {
		t.Errorf("older copy against the anchor: %v", err)
	}
	// Same epoch, other history.
	put(t, x, kindInode, "z", "fork")
	if err := x.CheckAnchor(anchor); !errors.Is(err, ErrRolledBack) {
		t.Errorf("forked copy at the anchor's epoch: %v", err)
	}
	x.Close()

	other := e.new(t).openT(t, rootKey(t))
	if err := other.CheckAnchor(anchor); !errors.Is(err, ErrAuth) {
		t.Errorf("another index's anchor: %v", err)
	}
}

// FuzzOpenRecord: whatever bytes a record holds, opening it fails cleanly
// (never a panic, never a value) unless they were sealed for that key.
func FuzzOpenRecord(f *testing.F) {
	x := openIndex(f, filepath.Join(f.TempDir(), "index.db"), rootKey(f))
	f.Add([]byte("ia"), []byte{})
	f.Add([]byte("ia"), x.seal([]byte("ib"), []byte("v")))
	f.Add(stateKey, make([]byte, 64))
	f.Fuzz(func(t *testing.T, sk, sealed []byte) {
		if v, err := x.open(sk, sealed); err == nil {
			t.Fatalf("forged record opened: %q", v)
		}
		if _, err := parseState(sealed); err == nil && len(sealed) != stateSize {
			t.Fatal("state of the wrong size parsed")
		}
	})
}

func BenchmarkScan10000(b *testing.B) {
	x := openIndex(b, filepath.Join(b.TempDir(), "index.db"), rootKey(b))
	dir := []byte("dir-inode-id----")
	x.Update(func(tx *Tx) error {
		for i := range 10000 {
			k := x.NameKey(dir, string(rune(i))+"name")
			tx.Put(kindDirent, append(bytes.Clone(dir), k[:]...), bytes.Repeat([]byte("r"), 72))
		}
		return nil
	})
	b.ResetTimer()
	for range b.N {
		n := 0
		x.View(func(tx *Tx) error {
			return tx.Scan(kindDirent, dir, func(k, v []byte) error { n++; return nil })
		})
		if n != 10000 {
			b.Fatal(n)
		}
	}
}

// BenchmarkUpdate is BenchmarkEtcdUpdate's counterpart on bbolt: one
// record and the state in one fsynced transaction.
func BenchmarkUpdate(b *testing.B) {
	x := openIndex(b, filepath.Join(b.TempDir(), "index.db"), rootKey(b))
	v := bytes.Repeat([]byte("r"), 200)
	b.ResetTimer()
	for i := range b.N {
		if err := x.Update(func(tx *Tx) error { return tx.Put(kindInode, fmt.Appendf(nil, "%d", i%100), v) }); err != nil {
			b.Fatal(err)
		}
	}
}
