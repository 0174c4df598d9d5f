package vfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshot: a snapshot holds every file as clients last saw it
// acknowledged at its moment (an in-place write still cached in an open
// file included), whatever happens after: in-place writes to a linked file
// (a new writer, a truncate, a writer that held the file open during the
// snapshot), a replacement upload, a removal, a move between trees. An
// upload not yet closed at the moment is not in it.
func TestSnapshot(t *testing.T) {
	v1Only(t)
	ts := newStore(t)
	alice, _, _ := views(t, ts)
	for name, data := range map[string]string{"/a": "alpha", "/b": "bravo", "/c": "charlie", "/d": "delta", "/Shared/case/e": "echo"} {
		writeFile(t, alice, name, []byte(data))
	}
	// Open during the snapshot: a writer with cached data, a reader, an
	// upload in progress.
	w, err := alice.OpenFile("/a", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("ALPHA"), 0); err != nil {
		t.Fatal(err)
	}
	r, err := alice.Open("/b")
	if err != nil {
		t.Fatal(err)
	}
	up, err := alice.OpenFile("/new", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("not yet"))

	dst := filepath.Join(t.TempDir(), "snap")
	during := false
	st, err := ts.Snapshot(context.Background(), dst, func() error { during = true; return nil })
	if err != nil || !during {
		t.Fatalf("snapshot: %v (during ran: %v)", err, during)
	}
	if st.Copied != 1 || st.Linked < 5 {
		t.Errorf("snapshot stats %+v: want the open writer copied, the rest linked", st)
	}

	// After the moment.
	w.WriteAt([]byte("after"), 0)
	w.Close()
	bw, err := alice.OpenFile("/b", os.O_WRONLY, 0) // a writer joins the reader's node
	if err != nil {
		t.Fatal(err)
	}
	bw.WriteAt([]byte("BRAVO"), 0)
	bw.Close()
	r.Close()
	if err := alice.Truncate("/c", 2); err != nil {
		t.Fatal(err)
	}
	writeFile(t, alice, "/d", []byte("replaced"))
	if err := alice.Rename("/Shared/case/e", "/e", false); err != nil {
		t.Fatal(err)
	}
	up.Close()

	// The snapshot, opened as a store.
	s, err := NewStore(dst, Options{Keyring: ts.kr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	home, _ := s.Home("alice", HomeOptions{Perm: PermAll})
	folder, _ := s.Folder("case", HomeOptions{Perm: PermAll})
	for name, want := range map[string]string{"/a": "ALPHA", "/b": "bravo", "/c": "charlie", "/d": "delta"} {
		if got := readFile(t, home, name); string(got) != want {
			t.Errorf("snapshot %s = %q, want %q", name, got, want)
		}
	}
	if got := readFile(t, folder, "/e"); string(got) != "echo" {
		t.Errorf("snapshot folder file = %q", got)
	}
	if _, err := home.Stat("/new"); err == nil {
		t.Error("an upload in progress at the moment is in the snapshot")
	}
	// And the live store has the later state.
	for name, want := range map[string]string{"/a": "after", "/b": "BRAVO", "/c": "ch", "/d": "replaced", "/e": "echo", "/new": "not yet"} {
		if got := readFile(t, alice, name); !bytes.HasPrefix(got, []byte(want)) {
			t.Errorf("live %s = %q, want %q", name, got, want)
		}
	}
}
