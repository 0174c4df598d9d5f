package users

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestAnchor: a users.db put back from an older copy is refused against
// its anchor; one ahead of it passes; an anchor of another database, or
// damaged, does not open.
func TestAnchor(t *testing.T) {
	skipOnEtcd(t)
	db, path := openTest(t, Options{})
	anchor := filepath.Join(t.TempDir(), "anchor")
	if err := db.CheckAnchor(anchor); !errors.Is(err, ErrNoAnchor) {
		t.Fatalf("no anchor: %v", err)
	}
	ctx := t.Context()
	if err := db.Add(ctx, User{Name: "alice", Perms: PermAll}, []byte("a long enough password")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	old, _ := os.ReadFile(path)
	db = openAt(t, path, Options{})
	if err := db.Add(ctx, User{Name: "bob", Perms: PermAll}, []byte("a long enough password")); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := db.WriteAnchor(anchor); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(anchor); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("anchor file: %v %v", fi, err)
	}
	db.Update(ctx, "bob", func(u *User) error { u.Disabled = true; return nil }) // ahead of the anchor
	if err := db.CheckAnchor(anchor); err != nil {
		t.Errorf("database ahead of its anchor: %v", err)
	}
	db.Close()
	// The older copy, with alice (deleted since) in it.
	os.WriteFile(path, old, 0o600)
	db = openAt(t, path, Options{})
	if err := db.CheckAnchor(anchor); !errors.Is(err, ErrRolledBack) {
		t.Errorf("older copy against the anchor: %v", err)
	}
	other, _ := openTest(t, Options{Key: []byte("another key of thirty-two bytes!")})
	if err := other.CheckAnchor(anchor); !errors.Is(err, ErrSealed) {
		t.Errorf("another database's anchor: %v", err)
	}
	b, _ := os.ReadFile(anchor)
	b[len(b)-1] ^= 1
	os.WriteFile(anchor, b, 0o600)
	if err := db.CheckAnchor(anchor); !errors.Is(err, ErrSealed) {
		t.Errorf("damaged anchor: %v", err)
	}
}
