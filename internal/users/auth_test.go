package users

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/testutil"
)

func TestAuthPassword(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{Disabled: true}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "correct horse")
	mustAdd(t, db, User{Name: "dis", Perms: PermAll, Disabled: true}, "pw")
	mustAdd(t, db, User{Name: "keyonly", Perms: PermAll}, "")

	u, err := db.AuthPassword(ctx, "ssh", "127.0.0.1:5555", "alice", []byte("correct horse"))
	if err != nil || u.Name != "alice" || u.Perms != PermAll {
		t.Fatalf("AuthPassword = %+v, %v", u, err)
	}
	fails := []struct{ name, user, pw string }{
		{"wrong password", "alice", "wrong"},
		{"empty password", "alice", ""},
		{"prefix", "alice", "correct hors"},
		{"unknown user", "nobody", "correct horse"},
		{"invalid name", "../alice", "correct horse"},
		{"uppercase", "Alice", "correct horse"},
		{"disabled", "dis", "pw"},
		{"key-only", "keyonly", ""},
		{"key-only with pw", "keyonly", "x"},
		{"overlong", "alice", "correct horse" + strings.Repeat("x", maxPasswordLen)},
	}
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			before := db.verifies.Load()
			_, err := db.AuthPassword(ctx, "dav", "127.0.0.1", tt.user, []byte(tt.pw))
			if err != ErrAuthFailed {
				t.Errorf("err = %v, want exactly ErrAuthFailed", err)
			}
			if db.verifies.Load() != before+1 {
				t.Errorf("failure ran %d Argon2id verifications, want 1 (same cost as a wrong password)", db.verifies.Load()-before)
			}
		})
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.AuthPassword(cctx, "ssh", "127.0.0.1", "alice", []byte("correct horse")); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx = %v", err)
	}
}

func TestErrorsNeverContainPassword(t *testing.T) {
	rec := testutil.NewLogs()
	db, _ := openTest(t, Options{
		Logger:   rec.Logger(),
		Defender: DefenderOptions{AddrThreshold: 2, Sleep: (&sleepRecorder{}).Sleep},
	})
	const pw = "Sup3rSecretPassw0rd"
	mustAdd(t, db, User{Name: "alice"}, pw)
	var errs []error
	// "Sup3rSecretPassw0rd!" as a name: a password typed into the user field.
	for _, user := range []string{"alice", "bob", "x/y", pw + "!"} {
		for range 3 {
			_, err := db.AuthPassword(t.Context(), "ssh", "10.1.1.1", user, []byte(pw+"!"))
			errs = append(errs, err)
		}
	}
	errs = append(errs,
		db.SetPassword(t.Context(), "nobody", []byte(pw)),
		db.SetPassword(t.Context(), "alice", []byte(pw+strings.Repeat("x", maxPasswordLen))),
		db.Add(t.Context(), User{Name: "Bad"}, []byte(pw)))
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), "Sup3r") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	if rec.AnyText("Sup3r") {
		t.Errorf("log leaks the password:\n%s", rec.Dump())
	}
	event := func(e string) func(testutil.Record) bool {
		return func(r testutil.Record) bool { return r.Attr("event") == e }
	}
	if rec.Count(event(EventLoginFailed)) == 0 || rec.Count(event(EventBanned)) == 0 {
		t.Errorf("failures and ban not logged:\n%s", rec.Dump())
	}
}

func TestLastLogin(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now})
	ctx := t.Context()
	_, line := newKey(t, "")
	mustAdd(t, db, User{Name: "alice", Keys: []Key{{Line: line}}}, "pw")
	if _, err := db.AuthPassword(ctx, "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	u, _ := db.Get(ctx, "alice")
	if !u.LastLogin.Equal(clk.Now()) {
		t.Fatalf("LastLogin = %v, want %v", u.LastLogin, clk.Now())
	}
	rev := db.Revision()
	for range 5 {
		clk.Advance(10 * time.Second)
		if _, err := db.AuthPassword(ctx, "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
			t.Fatal(err)
		}
	}
	if db.Revision() != rev {
		t.Errorf("logins within a minute wrote the database (revision %d -> %d)", rev, db.Revision())
	}
	clk.Advance(11 * time.Second)
	if _, err := db.AuthPassword(ctx, "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if u, _ = db.Get(ctx, "alice"); !u.LastLogin.Equal(clk.Now()) || db.Revision() != rev+1 {
		t.Errorf("after a minute: LastLogin %v (want %v), revision %d (want %d)", u.LastLogin, clk.Now(), db.Revision(), rev+1)
	}
}

func TestAuthKey(t *testing.T) {
	db, _ := openTest(t, Options{})
	ctx := t.Context()
	pk1, l1 := newKey(t, "one")
	pk2, l2 := newKey(t, "two")
	other, _ := newKey(t, "")
	mustAdd(t, db, User{Name: "alice", Perms: PermAll, Keys: []Key{{Line: l1}, {Line: l2}}}, "")
	mustAdd(t, db, User{Name: "dis", Perms: PermAll, Keys: []Key{{Line: l1}}, Disabled: true}, "")
	if u, err := db.AuthKey(ctx, "ssh", "127.0.0.1:22", "alice", pk1); err != nil || u.Name != "alice" {
		t.Errorf("key 1: %v", err)
	}
	if _, err := db.AuthKey(ctx, "ssh", "127.0.0.1:22", "alice", pk2); err != nil {
		t.Errorf("key 2: %v", err)
	}
	tests := []struct {
		name, user string
	}{{"other key", "alice"}, {"unknown user", "bob"}, {"disabled", "dis"}, {"invalid name", "-x"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := other
			if tt.user != "alice" {
				k = pk1
			}
			if _, err := db.AuthKey(ctx, "ssh", "127.0.0.1:22", tt.user, k); err != ErrAuthFailed {
				t.Errorf("err = %v, want ErrAuthFailed", err)
			}
		})
	}
	if _, err := db.AuthKey(ctx, "ssh", "127.0.0.1", "alice", nil); err != ErrAuthFailed {
		t.Errorf("nil key = %v", err)
	}
	// After DelKey the key no longer works.
	if err := db.DelKey(ctx, "alice", "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AuthKey(ctx, "ssh", "127.0.0.1", "alice", pk1); err != ErrAuthFailed {
		t.Errorf("deleted key = %v", err)
	}
}

func TestRehashUpgrade(t *testing.T) {
	weak := Argon2Params{Time: 1, Memory: 64, Threads: 1}
	strong := Argon2Params{Time: 2, Memory: 128, Threads: 2}
	db, path := openTest(t, Options{Argon2: weak})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice"}, "pw")
	old, _ := db.Get(ctx, "alice")
	db.Close()

	db = openAt(t, path, Options{Argon2: strong})
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "alice", []byte("wrong")); err != ErrAuthFailed {
		t.Fatal(err)
	}
	if u, _ := db.Get(ctx, "alice"); u.PasswordHash != old.PasswordHash {
		t.Fatal("a failed login changed the hash")
	}
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "alice", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	u, _ := db.Get(ctx, "alice")
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=128,t=2,p=2$") {
		t.Fatalf("hash not upgraded: %q", u.PasswordHash)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "alice", []byte("pw")); err != nil {
		t.Errorf("login after upgrade: %v", err)
	}
	db.Close()

	// Weaker current parameters never downgrade a stored hash.
	db = openAt(t, path, Options{Argon2: weak})
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "alice", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Get(ctx, "alice"); v.PasswordHash != u.PasswordHash {
		t.Errorf("hash downgraded to %q", v.PasswordHash)
	}
}

func TestPasswordCache(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{Disabled: true}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "pw1")
	mustAdd(t, db, User{Name: "bob", Perms: PermAll}, "pw1")
	auth := func(name, pw string) error {
		_, err := db.AuthPassword(ctx, "dav", "127.0.0.1", name, []byte(pw))
		return err
	}
	verifies := func() uint64 { return db.verifies.Load() }

	if err := auth("alice", "pw1"); err != nil {
		t.Fatal(err)
	}
	v := verifies()
	for range 10 {
		if err := auth("alice", "pw1"); err != nil {
			t.Fatal(err)
		}
	}
	if verifies() != v {
		t.Errorf("cached logins ran %d verifications, want 0", verifies()-v)
	}
	// A wrong password is never served from the cache, nor another user.
	if err := auth("alice", "pw2"); err != ErrAuthFailed {
		t.Errorf("wrong password = %v", err)
	}
	if err := auth("bob", "pw1"); err != nil || verifies() != v+2 {
		t.Errorf("bob: %v, verifies +%d (want +2)", err, verifies()-v)
	}

	// SetPassword kills the entry.
	if err := db.SetPassword(ctx, "alice", []byte("pw2")); err != nil {
		t.Fatal(err)
	}
	if err := auth("alice", "pw1"); err != ErrAuthFailed {
		t.Errorf("old password after SetPassword = %v", err)
	}
	if err := auth("alice", "pw2"); err != nil {
		t.Errorf("new password: %v", err)
	}

	// Disabling kills it too.
	v = verifies()
	if err := auth("alice", "pw2"); err != nil || verifies() != v {
		t.Fatalf("expected a cache hit: %v", err)
	}
	db.Update(ctx, "alice", func(u *User) error { u.Disabled = true; return nil })
	if err := auth("alice", "pw2"); err != ErrAuthFailed {
		t.Errorf("disabled user with cached password = %v", err)
	}
	db.Update(ctx, "alice", func(u *User) error { u.Disabled = false; return nil })

	// Deleting and re-creating with the same password does not hit (new salt).
	if err := auth("bob", "pw1"); err != nil {
		t.Fatal(err)
	}
	db.Delete(ctx, "bob")
	if err := auth("bob", "pw1"); err != ErrAuthFailed {
		t.Errorf("deleted user = %v", err)
	}

	// Expiry.
	v = verifies()
	if err := auth("alice", "pw2"); err != nil || verifies() != v {
		t.Fatalf("expected a cache hit: %v", err)
	}
	clk.Advance(5*time.Minute + time.Second)
	if err := auth("alice", "pw2"); err != nil || verifies() != v+1 {
		t.Errorf("after TTL: %v, verifies +%d (want +1)", err, verifies()-v)
	}
}

func TestPasswordCacheBounded(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now, CacheSize: 4, Defender: DefenderOptions{Disabled: true}})
	for i := range 10 {
		name := fmt.Sprintf("u%d", i)
		mustAdd(t, db, User{Name: name}, "pw")
		if _, err := db.AuthPassword(t.Context(), "dav", "127.0.0.1", name, []byte("pw")); err != nil {
			t.Fatal(err)
		}
		if n := db.cache.len(); n > 4 {
			t.Fatalf("cache holds %d entries, bound 4", n)
		}
	}
	db2, _ := openTest(t, Options{CacheTTL: -1})
	mustAdd(t, db2, User{Name: "a"}, "pw")
	for range 2 {
		db2.AuthPassword(t.Context(), "dav", "127.0.0.1", "a", []byte("pw"))
	}
	if db2.verifies.Load() != 2 {
		t.Errorf("disabled cache: %d verifications, want 2", db2.verifies.Load())
	}
}

func TestConcurrentAuth(t *testing.T) {
	db, _ := openTest(t, Options{Defender: DefenderOptions{Disabled: true}, MaxConcurrentHashes: 2})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "pw")
	pk, line := newKey(t, "")
	db.AddKey(ctx, "alice", line)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				switch (i + j) % 4 {
				case 0:
					db.AuthPassword(ctx, "dav", "127.0.0.1", "alice", []byte("pw"))
				case 1:
					db.AuthKey(ctx, "ssh", "127.0.0.1", "alice", pk)
				case 2:
					db.SetPassword(ctx, "alice", []byte("pw"))
				case 3:
					db.List(ctx)
				}
			}
		})
	}
	wg.Wait()
	if _, err := db.AuthPassword(ctx, "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
		t.Error(err)
	}
}
