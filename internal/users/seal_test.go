package users

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

// fillMarked writes one of everything the database holds, each named or
// valued with marker.
func fillMarked(t *testing.T, db *DB, marker string) {
	t.Helper()
	ctx := t.Context()
	_, keyLine := newKey(t, marker+"-comment@laptop")
	u := User{Name: marker + "-user", Perms: PermReadOnly, QuotaBytes: 123456789}
	if err := db.Add(ctx, u, []byte("a long enough password")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddKey(ctx, u.Name, keyLine); err != nil {
		t.Fatal(err)
	}
	if err := db.AddFolder(ctx, Folder{Name: marker + "-folder"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddGroup(ctx, marker+"-group"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMembers(ctx, marker+"-group", []string{u.Name}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.PutLink(ctx, marker+"-link", []byte(marker+" link record")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutInvite(ctx, marker+"-invite", []byte(marker+" invite record")); err != nil {
		t.Fatal(err)
	}
}

// TestSealedFileHidesEverything: a copy of a sealed users.db holds no user,
// folder, group, link or invitation name, no SSH key comment (issue 20).
func TestSealedFileHidesEverything(t *testing.T) {
	skipOnEtcd(t)
	const marker = "mrkr7q"
	db, path := openTest(t, Options{})
	fillMarked(t, db, marker)
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(b, []byte(marker)); i >= 0 {
		t.Errorf("users.db holds %q in the clear at byte %d", marker, i)
	}
	// Still all there through the key.
	db = openAt(t, path, Options{})
	us, err := db.List(t.Context())
	if err != nil || len(us) != 1 || us[0].Name != marker+"-user" || len(us[0].Keys) != 1 {
		t.Fatalf("list after reopen: %+v %v", us, err)
	}
}

// TestSealedKeys: a sealed database does not open without its key or with
// another; an older securefsd (schema 1 only) refuses it.
func TestSealedKeys(t *testing.T) {
	skipOnEtcd(t)
	db, path := openTest(t, Options{})
	fillMarked(t, db, "k")
	db.Close()
	if _, err := Open(path, Options{Argon2: tinyParams}); !errors.Is(err, ErrKeyRequired) {
		t.Errorf("open without the key: %v", err)
	}
	if _, err := Open(path, Options{Argon2: tinyParams, Key: bytes.Repeat([]byte{8}, KeySize)}); !errors.Is(err, ErrSealed) {
		t.Errorf("open with another key: %v", err)
	}
	if _, err := Open(path, Options{Argon2: tinyParams, Key: []byte("short")}); err == nil {
		t.Error("open with a short key succeeded")
	}
}

// TestSealPlainDatabase: a plain database (every data directory before
// sealing) is sealed, in one transaction, when first opened with a key,
// and everything in it reads back.
func TestSealPlainDatabase(t *testing.T) {
	skipOnEtcd(t)
	path := filepath.Join(t.TempDir(), "users.db")
	plain, err := Open(path, Options{Argon2: tinyParams})
	if err != nil {
		t.Fatal(err)
	}
	fillMarked(t, plain, "plainmark")
	plain.Close()
	if b, _ := os.ReadFile(path); !bytes.Contains(b, []byte("plainmark")) {
		t.Fatal("fixture: the plain database should hold the names")
	}
	db := openAt(t, path, Options{})
	ctx := t.Context()
	u, err := db.Get(ctx, "plainmark-user")
	if err != nil || u.QuotaBytes != 123456789 || len(u.Keys) != 1 {
		t.Fatalf("user after sealing: %+v %v", u, err)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "plainmark-user", []byte("a long enough password")); err != nil {
		t.Errorf("login after sealing: %v", err)
	}
	if v, err := db.Link(ctx, "plainmark-link"); err != nil || string(v) != "plainmark link record" {
		t.Errorf("link after sealing: %q %v", v, err)
	}
	if gs, err := db.Groups(ctx); err != nil || len(gs) != 1 || gs[0].Members[0] != "plainmark-user" {
		t.Errorf("groups after sealing: %+v %v", gs, err)
	}
	db.Close()
	// Sealing rewrote the file: no plaintext page of the old records is
	// left in it.
	if b, _ := os.ReadFile(path); bytes.Contains(b, []byte("plainmark")) {
		t.Error("the sealed database file still holds a name")
	}
}

// TestSealedTamper: a record moved to another name or damaged reads as
// missing (an unknown user: the login fails closed), and a listing stops
// with ErrSealed instead of skipping it.
func TestSealedTamper(t *testing.T) {
	skipOnEtcd(t)
	db, path := openTest(t, Options{})
	ctx := t.Context()
	for _, n := range []string{"alice", "mallory"} {
		if err := db.Add(ctx, User{Name: n, Perms: PermAll}, []byte("a long enough password "+n)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := newSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	// mallory's record (her password hash) put under alice's key.
	b.Update(func(tx *bbolt.Tx) error {
		ub := tx.Bucket(bucketUsers)
		return ub.Put(s.storedKey(bucketUsers, []byte("alice")), bytes.Clone(ub.Get(s.storedKey(bucketUsers, []byte("mallory")))))
	})
	b.Close()
	db = openAt(t, path, Options{})
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "alice", []byte("a long enough password mallory")); err == nil {
		t.Error("a record moved to alice's name logged in")
	}
	if _, err := db.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("moved record: %v", err)
	}
	if _, err := db.List(ctx); !errors.Is(err, ErrSealed) {
		t.Errorf("list over a moved record: %v", err)
	}
	var bad []string
	if n, err := db.Verify(func(bucket string, err error) { bad = append(bad, bucket) }); err != nil || n < 3 || len(bad) != 1 || bad[0] != "users" {
		t.Errorf("verify: %d records, damaged %v, %v", n, bad, err)
	}
}
