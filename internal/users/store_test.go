package users

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/ssh"
)

func TestAddGetListDelete(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now})
	ctx := t.Context()
	_, line := newKey(t, "alice@laptop")
	mustAdd(t, db, User{Name: "alice", Perms: PermAll, QuotaBytes: 1 << 30, Keys: []Key{{Line: line}}}, "s3cret")
	mustAdd(t, db, User{Name: "bob", Perms: PermReadOnly, Home: "shared"}, "")
	mustAdd(t, db, User{Name: "0carol_x.y-z"}, "pw")

	u, err := db.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "alice" || u.Home != "alice" || u.Perms != PermAll || u.QuotaBytes != 1<<30 || u.Disabled {
		t.Errorf("Get = %+v", u)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash = %q", u.PasswordHash)
	}
	if !u.Created.Equal(clk.Now()) || !u.LastLogin.IsZero() {
		t.Errorf("Created %v LastLogin %v", u.Created, u.LastLogin)
	}
	if len(u.Keys) != 1 || u.Keys[0].Comment != "alice@laptop" || !strings.HasPrefix(u.Keys[0].Fingerprint, "SHA256:") || u.Keys[0].Line != line {
		t.Errorf("Keys = %+v", u.Keys)
	}
	b, _ := db.Get(ctx, "bob")
	if b.PasswordHash != "" || b.Home != "shared" || b.Perms != PermReadOnly {
		t.Errorf("bob = %+v", b)
	}

	list, err := db.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range list {
		names = append(names, u.Name)
	}
	if want := []string{"0carol_x.y-z", "alice", "bob"}; !slices.Equal(names, want) {
		t.Errorf("List = %v, want %v", names, want)
	}

	if err := db.Add(ctx, User{Name: "alice"}, []byte("x")); !errors.Is(err, ErrExists) {
		t.Errorf("Add existing = %v, want ErrExists", err)
	}
	if err := db.Add(ctx, User{Name: "alice"}, nil); !errors.Is(err, ErrExists) {
		t.Errorf("Add existing key-only = %v, want ErrExists", err)
	}
	if err := db.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get deleted = %v, want ErrNotFound", err)
	}
	if err := db.Delete(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete deleted = %v, want ErrNotFound", err)
	}
	if err := db.SetPassword(ctx, "alice", []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPassword deleted = %v, want ErrNotFound", err)
	}
	if _, err := db.AddKey(ctx, "alice", line); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddKey deleted = %v, want ErrNotFound", err)
	}
	if err := db.Update(ctx, "alice", func(*User) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update deleted = %v, want ErrNotFound", err)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"alice", true}, {"a.b_c-d9", true}, {"9lives", true}, {"_x", true},
		{strings.Repeat("a", 64), true}, {strings.Repeat("a", 65), false},
		{"", false}, {".hidden", false}, {"-flag", false}, {"Alice", false}, {"a b", false},
		{"a/b", false}, {"..", false}, {"a\x00b", false}, {"é", false}, {"a:b", false}, {"a@b", false},
	}
	db, _ := openTest(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.name); got != tt.ok {
				t.Errorf("ValidName(%q) = %v", tt.name, got)
			}
			err := db.Add(t.Context(), User{Name: tt.name, Perms: PermAll}, nil)
			if tt.ok && err != nil {
				t.Errorf("Add: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("Add = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestAddInvalid(t *testing.T) {
	db, _ := openTest(t, Options{})
	_, line := newKey(t, "k")
	tests := []struct {
		name string
		u    User
		pw   string
	}{
		{"bad home", User{Name: "a", Home: "../etc"}, ""},
		{"negative quota", User{Name: "a", QuotaBytes: -1}, ""},
		{"negative files", User{Name: "a", QuotaFiles: -1}, ""},
		{"unknown perm bits", User{Name: "a", Perms: 1 << 20}, ""},
		{"bad key", User{Name: "a", Keys: []Key{{Line: "ssh-ed25519 nope"}}}, ""},
		{"bad hash", User{Name: "a", PasswordHash: "$2a$10$bcrypt"}, ""},
		{"hash and password", User{Name: "a", PasswordHash: hashPassword([]byte("x"), tinyParams)}, "y"},
		{"long password", User{Name: "a"}, strings.Repeat("p", maxPasswordLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.Add(t.Context(), tt.u, []byte(tt.pw)); !errors.Is(err, ErrInvalid) {
				t.Errorf("Add = %v, want ErrInvalid", err)
			}
		})
	}
	if err := db.Add(t.Context(), User{Name: "dup", Keys: []Key{{Line: line}, {Line: line}}}, nil); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate keys = %v, want ErrExists", err)
	}
	// A pre-computed hash is imported as is.
	h := hashPassword([]byte("imported"), tinyParams)
	mustAdd(t, db, User{Name: "imp", PasswordHash: h, Perms: PermAll}, "")
	if _, err := db.AuthPassword(t.Context(), "ssh", "127.0.0.1", "imp", []byte("imported")); err != nil {
		t.Errorf("auth with imported hash: %v", err)
	}
}

func TestKeys(t *testing.T) {
	db, _ := openTest(t, Options{})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "")
	pk1, l1 := newKey(t, "laptop")
	_, l2 := newKey(t, "phone")
	_, l3 := newKey(t, "phone")
	_, l4 := newKey(t, "")

	k1, err := db.AddKey(ctx, "alice", "  "+l1+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if k1.Fingerprint != ssh.FingerprintSHA256(pk1) || k1.Comment != "laptop" || k1.Line != l1 || k1.Added.IsZero() {
		t.Errorf("AddKey = %+v", k1)
	}
	if _, err := db.AddKey(ctx, "alice", l1); !errors.Is(err, ErrExists) {
		t.Errorf("AddKey again = %v, want ErrExists", err)
	}
	for _, l := range []string{l2, l3, l4} {
		if _, err := db.AddKey(ctx, "alice", l); err != nil {
			t.Fatal(err)
		}
	}

	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPK, _ := ssh.NewPublicKey(&rsaSmall.PublicKey)
	bad := map[string]string{
		"garbage":     "not a key",
		"bad base64":  "ssh-ed25519 AAAA!!!! c",
		"empty":       "",
		"comment":     "# ssh-ed25519 AAAA",
		"options":     `from="10.0.0.1" ` + l1,
		"two lines":   l2 + "\n" + l3,
		"small rsa":   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rsaPK))),
		"certificate": certLine(t),
	}
	for name, line := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := db.AddKey(ctx, "alice", line); !errors.Is(err, ErrInvalid) {
				t.Errorf("AddKey = %v, want ErrInvalid", err)
			}
		})
	}

	// Delete by ambiguous comment, by comment, by fingerprint with and
	// without prefix.
	if err := db.DelKey(ctx, "alice", "phone"); !errors.Is(err, ErrInvalid) {
		t.Errorf("DelKey ambiguous = %v, want ErrInvalid", err)
	}
	if err := db.DelKey(ctx, "alice", "laptop"); err != nil {
		t.Errorf("DelKey by comment: %v", err)
	}
	if err := db.DelKey(ctx, "alice", "laptop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DelKey again = %v, want ErrNotFound", err)
	}
	u, _ := db.Get(ctx, "alice")
	if len(u.Keys) != 3 {
		t.Fatalf("keys = %d, want 3", len(u.Keys))
	}
	if err := db.DelKey(ctx, "alice", u.Keys[0].Fingerprint); err != nil {
		t.Errorf("DelKey by fingerprint: %v", err)
	}
	if err := db.DelKey(ctx, "alice", strings.TrimPrefix(u.Keys[1].Fingerprint, "SHA256:")); err != nil {
		t.Errorf("DelKey by bare fingerprint: %v", err)
	}
	if err := db.DelKey(ctx, "alice", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("DelKey empty = %v, want ErrInvalid", err)
	}
	if u, _ = db.Get(ctx, "alice"); len(u.Keys) != 1 || u.Keys[0].Line != l4 {
		t.Errorf("remaining keys = %+v", u.Keys)
	}
}

func certLine(t *testing.T) string {
	t.Helper()
	pk, _ := newKey(t, "")
	_, caPriv, _ := ed25519GenerateKey()
	signer, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: pk, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
}

func TestPerm(t *testing.T) {
	tests := []struct {
		in   string
		want Perm
		str  string
	}{
		{"", 0, "none"},
		{"none", 0, "none"},
		{"all", PermAll, "list,download,upload,overwrite,delete,rename,mkdir,chmod"},
		{"rw", PermAll, "list,download,upload,overwrite,delete,rename,mkdir,chmod"},
		{"read-only", PermReadOnly, "list,download"},
		{"RO", PermReadOnly, "list,download"},
		{" list , upload ", PermList | PermUpload, "list,upload"},
		{"mkdir,list", PermList | PermMkdir, "list,mkdir"},
		{"chmod", PermChmod, "chmod"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePerm(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParsePerm = %v, %v; want %v", got, err, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String = %q, want %q", got.String(), tt.str)
			}
			back, err := ParsePerm(got.String())
			if err != nil || back != got {
				t.Errorf("round trip = %v, %v", back, err)
			}
		})
	}
	if _, err := ParsePerm("list,fly"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown = %v, want ErrInvalid", err)
	}
	if !PermAll.Has(PermReadOnly) || PermReadOnly.Has(PermUpload) || !PermReadOnly.Has(0) {
		t.Error("Has is wrong")
	}
	if s := (PermList | 1<<12).String(); s != "list,0x1000" {
		t.Errorf("unknown bits String = %q", s)
	}
}

func TestUpdate(t *testing.T) {
	db, _ := openTest(t, Options{})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "pw")
	err := db.Update(ctx, "alice", func(u *User) error {
		u.Perms = PermReadOnly | PermUpload
		u.QuotaBytes, u.QuotaFiles = 100, 10
		u.Home = "team"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := db.Get(ctx, "alice")
	if u.Perms != PermReadOnly|PermUpload || u.QuotaBytes != 100 || u.QuotaFiles != 10 || u.Home != "team" {
		t.Errorf("after Update: %+v", u)
	}
	boom := errors.New("boom")
	tests := []struct {
		name string
		fn   func(*User) error
		want error
	}{
		{"fn error", func(u *User) error { u.Perms = 0; return boom }, boom},
		{"rename", func(u *User) error { u.Name = "bob"; return nil }, ErrInvalid},
		{"negative quota", func(u *User) error { u.QuotaBytes = -5; return nil }, ErrInvalid},
		{"bad home", func(u *User) error { u.Home = "a/b"; return nil }, ErrInvalid},
		{"bad hash", func(u *User) error { u.PasswordHash = "plain"; return nil }, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.Update(ctx, "alice", tt.fn); !errors.Is(err, tt.want) {
				t.Errorf("Update = %v, want %v", err, tt.want)
			}
			if v, _ := db.Get(ctx, "alice"); v.Perms != u.Perms || v.QuotaBytes != 100 || v.Home != "team" || v.PasswordHash != u.PasswordHash {
				t.Errorf("failed Update changed the record: %+v", v)
			}
		})
	}
}

func TestRevision(t *testing.T) {
	db, path := openTest(t, Options{})
	ctx := t.Context()
	r0 := db.Revision()
	mustAdd(t, db, User{Name: "a", Perms: PermAll}, "pw")
	r1 := db.Revision()
	if r1 <= r0 {
		t.Fatalf("Revision after Add = %d, was %d", r1, r0)
	}
	if err := db.Update(ctx, "a", func(u *User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	r2 := db.Revision()
	if r2 <= r1 {
		t.Fatalf("Revision after Update = %d, was %d", r2, r1)
	}
	// A failed change does not count.
	db.Update(ctx, "a", func(u *User) error { return errors.New("no") })
	db.Add(ctx, User{Name: "a"}, nil)
	if db.Revision() != r2 {
		t.Errorf("Revision after failed changes = %d, want %d", db.Revision(), r2)
	}
	db.Close()
	db2 := openAt(t, path, Options{})
	if db2.Revision() != r2 {
		t.Errorf("Revision after reopen = %d, want %d", db2.Revision(), r2)
	}
	if err := db2.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if db2.Revision() <= r2 {
		t.Errorf("Revision after Delete did not grow")
	}
}

func TestFileModeAndLock(t *testing.T) {
	skipOnEtcd(t)
	db, path := openTest(t, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("mode = %v, want 0600", m)
	}
	_, err = Open(path, Options{Argon2: tinyParams, LockTimeout: 20 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	db.Close()
	// Released: opens again, and a too-open file is tightened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openAt(t, path, Options{})
	if fi, _ = os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopen = %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "users.db"), Options{Argon2: Argon2Params{Time: 1000}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("huge params = %v, want ErrInvalid", err)
	}
	if _, err := Open(filepath.Join(dir, "missing", "users.db"), Options{}); err == nil {
		t.Error("Open in a missing dir succeeded")
	}
	// A database from a newer securefsd is refused and left alone.
	path := filepath.Join(dir, "new.db")
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bbolt.Tx) error {
		m, _ := tx.CreateBucket(bucketMeta)
		tx.CreateBucket(bucketUsers)
		return putU64(m, keySchema, sealedSchema+1)
	})
	b.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrSchema) {
		t.Errorf("newer schema = %v, want ErrSchema", err)
	}
}

func TestMigrationV0(t *testing.T) {
	skipOnEtcd(t)
	path := filepath.Join(t.TempDir(), "users.db")
	created := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	pk, keyLine := newKey(t, "old@host")
	v0 := []recordV0{
		{Name: "alice", Hash: hashPassword([]byte("alicepw"), tinyParams), Keys: []string{keyLine, "garbage key"}, Created: created},
		{Name: "bob", Hash: hashPassword([]byte("bobpw"), tinyParams), ReadOnly: true, Disabled: true, Created: created},
	}
	// The fixture: a v0 file (users bucket only, no meta).
	b, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bbolt.Tx) error {
		ub, err := tx.CreateBucket(bucketUsers)
		if err != nil {
			return err
		}
		for _, r := range v0 {
			v, _ := json.Marshal(r)
			if err := ub.Put([]byte(r.Name), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	db := openAt(t, path, Options{})
	ctx := t.Context()
	a, err := db.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.Perms != PermAll || a.Home != "alice" || !a.Created.Equal(created) || a.Disabled || a.PasswordHash != v0[0].Hash {
		t.Errorf("alice = %+v", a)
	}
	if len(a.Keys) != 1 || a.Keys[0].Fingerprint != ssh.FingerprintSHA256(pk) || a.Keys[0].Comment != "old@host" {
		t.Errorf("alice keys = %+v", a.Keys)
	}
	bo, _ := db.Get(ctx, "bob")
	if bo.Perms != PermReadOnly || !bo.Disabled {
		t.Errorf("bob = %+v", bo)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", "alice", []byte("alicepw")); err != nil {
		t.Errorf("auth after migration: %v", err)
	}
	if _, err := db.AuthKey(ctx, "ssh", "127.0.0.1", "alice", pk); err != nil {
		t.Errorf("key auth after migration: %v", err)
	}
	db.Close()

	b, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.View(func(tx *bbolt.Tx) error {
		v, ok := getU64(tx.Bucket(bucketMeta), keySchema)
		if !ok || v != sealedSchema {
			t.Errorf("schema = %d, %v; want %d (schema %d, sealed)", v, ok, sealedSchema, SchemaVersion)
		}
		return nil
	})
}

func TestMigrationFailureLeavesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	b, _ := bbolt.Open(path, 0o600, nil)
	b.Update(func(tx *bbolt.Tx) error {
		ub, _ := tx.CreateBucket(bucketUsers)
		return ub.Put([]byte("x"), []byte("{not json"))
	})
	b.Close()
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("Open of a corrupt v0 file succeeded")
	}
	b, _ = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	defer b.Close()
	b.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			t.Error("failed migration left a meta bucket")
		}
		return nil
	})
}

func TestJSONOmitsHash(t *testing.T) {
	_, line := newKey(t, "c")
	u := User{Name: "alice", PasswordHash: hashPassword([]byte("pw"), tinyParams), Perms: PermReadOnly,
		Keys: []Key{{Line: line, Fingerprint: "SHA256:x", Comment: "c"}}, Home: "alice", QuotaBytes: 5,
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, v := range []any{u, &u, []User{u}, map[string]User{"a": u}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "argon2") || strings.Contains(strings.ToLower(string(b)), "passwordhash") {
			t.Errorf("JSON leaks the hash: %s", b)
		}
		if !strings.Contains(string(b), `"has_password":true`) || !strings.Contains(string(b), `"perms":"list,download"`) {
			t.Errorf("JSON = %s", b)
		}
	}
	b, _ := json.Marshal(u)
	var back User
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := u
	want.PasswordHash = ""
	if back.Name != want.Name || back.Perms != want.Perms || back.QuotaBytes != 5 || len(back.Keys) != 1 || !back.Created.Equal(want.Created) || back.PasswordHash != "" {
		t.Errorf("round trip = %+v", back)
	}
}
