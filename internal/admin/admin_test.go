package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// newLocal builds a Local over a fresh data dir.
func newLocal(t *testing.T) (*Local, string) {
	t.Helper()
	dir := t.TempDir()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	kf := KeyFile{Path: filepath.Join(dir, "keyring")}
	if err := kf.Save(kr); err != nil {
		t.Fatal(err)
	}
	check := filepath.Join(dir, "keycheck")
	if err := CheckKey(check, kr); err != nil {
		t.Fatal(err)
	}
	db := fixture.Users(t, filepath.Join(dir, "users.db"), users.Options{})
	store := fixture.Store(t, filepath.Join(dir, "store"), vfs.Options{Keyring: kr})
	return NewLocal(db, store, kf, check, kr), dir
}

// serveSocket serves l on the admin socket of dir and returns a client.
func serveSocket(t *testing.T, l *Local, dir string) *Client {
	t.Helper()
	if _, err := Dial(dir); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Dial with no server: %v, want ErrNoServer", err)
	}
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(l, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	fi, err := os.Stat(filepath.Join(dir, SocketName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	if _, err := Listen(dir); err == nil {
		t.Fatal("a second server could listen on the same data dir")
	}
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func authorizedKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " test@key"
}

// TestManagers runs the same script through Local and through the socket.
func TestManagers(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			l, dir := newLocal(t)
			var m Manager = l
			if via == "socket" {
				m = serveSocket(t, l, dir)
			}
			ctx := context.Background()
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw-1-long-secret"), Keys: []string{authorizedKey(t)}}); err != nil {
				t.Fatal(err)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("x-long-secret")}); !errors.Is(err, users.ErrExists) {
				t.Fatalf("second add: %v, want ErrExists", err)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "../bad", Password: []byte("x-long-secret")}); !errors.Is(err, users.ErrInvalid) {
				t.Fatalf("bad name: %v, want ErrInvalid", err)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "ro", Password: []byte("x-long-secret"), ReadOnly: true}); err != nil {
				t.Fatal(err)
			}
			us, err := m.ListUsers(ctx)
			if err != nil || len(us) != 2 {
				t.Fatalf("ListUsers = %v, %v", us, err)
			}
			for _, u := range us {
				if u.PasswordHash != "" {
					t.Fatal("password hash left the manager")
				}
				if u.Name == "ro" && u.Perms != users.PermReadOnly {
					t.Fatalf("read-only user has %v", u.Perms)
				}
			}
			if err := m.SetPassword(ctx, "alice", []byte("pw-2-long-secret")); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Users.AuthPassword(ctx, "test", "127.0.0.1", "alice", []byte("pw-2-long-secret")); err != nil {
				t.Fatalf("new password: %v", err)
			}
			k, err := m.AddKey(ctx, "alice", authorizedKey(t))
			if err != nil || !strings.HasPrefix(k.Fingerprint, "SHA256:") {
				t.Fatalf("AddKey = %+v, %v", k, err)
			}
			if err := m.DelKey(ctx, "alice", k.Fingerprint); err != nil {
				t.Fatal(err)
			}
			if err := m.DelKey(ctx, "nobody", k.Fingerprint); !errors.Is(err, users.ErrNotFound) {
				t.Fatalf("DelKey of unknown user: %v", err)
			}
			if err := m.SetDisabled(ctx, "alice", true); err != nil {
				t.Fatal(err)
			}

			// Files, then rotate: every file moves to the new key, the old one is retired.
			fsys, err := l.Store.Home("alice", vfs.HomeOptions{Perm: vfs.PermAll})
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"a", "b", "c"} {
				f, err := fsys.Create(name)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.Write([]byte("content of " + name)); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			before := l.Keyring().Active()
			var stages []string
			if err := m.RotateKey(ctx, func(p Progress) { stages = append(stages, p.Stage) }); err != nil {
				t.Fatal(err)
			}
			kr := l.Keyring()
			if ids := kr.IDs(); len(ids) != 1 || ids[0] == before {
				t.Fatalf("after rotation the keyring holds %v (old %v)", ids, before)
			}
			saved, err := l.Keys.Load()
			if err != nil || len(saved.IDs()) != 1 || saved.Active() != kr.Active() {
				t.Fatalf("saved keyring %v, %v", saved, err)
			}
			if err := CheckKey(l.KeyCheck, saved); err != nil {
				t.Fatalf("key check after rotation: %v", err)
			}
			if !strings.Contains(strings.Join(stages, " "), "done") {
				t.Fatalf("progress stages %v", stages)
			}
			res, err := m.Verify(ctx, "", nil)
			if err != nil || res.Checked < 3 || res.Damaged != 0 {
				t.Fatalf("Verify = %+v, %v", res, err)
			}

			// Damage one file on disk: Verify names it.
			p := filepath.Join(dir, "store", "alice", "b")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 1
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			var damaged []Damage
			res, err = m.Verify(ctx, "alice", func(d Damage) { damaged = append(damaged, d) })
			if err != nil || res.Damaged != 1 || len(damaged) != 1 || !strings.HasSuffix(damaged[0].Path, "b") {
				t.Fatalf("Verify after damage = %+v %+v, %v", res, damaged, err)
			}

			if err := m.DeleteUser(ctx, "alice", true, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "store", "alice")); !os.IsNotExist(err) {
				t.Fatalf("purged home: %v", err)
			}
			if err := m.DeleteUser(ctx, "alice", true, nil); !errors.Is(err, users.ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
		})
	}
}

func TestCheckKeyWrongKey(t *testing.T) {
	dir := t.TempDir()
	kr, _ := envelope.NewKeyring()
	other, _ := envelope.NewKeyring()
	p := filepath.Join(dir, "keycheck")
	if err := CheckKey(p, kr); err != nil {
		t.Fatal(err)
	}
	if err := CheckKey(p, kr); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := CheckKey(p, other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: %v, want ErrWrongKey", err)
	}
}

// TestReuseHome: a user deleted without purge leaves their home; adding the
// name again must not hand those files to the new account unless asked.
func TestReuseHome(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			l, dir := newLocal(t)
			var m Manager = l
			if via == "socket" {
				m = serveSocket(t, l, dir)
			}
			ctx := context.Background()
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw-long-secret")}); err != nil {
				t.Fatal(err)
			}
			home, err := l.Store.Home("alice", vfs.HomeOptions{Perm: vfs.PermAll})
			if err != nil {
				t.Fatal(err)
			}
			if err := home.Mkdir("old-files", 0o700); err != nil {
				t.Fatal(err)
			}
			if err := m.DeleteUser(ctx, "alice", false, nil); err != nil {
				t.Fatal(err)
			}
			err = m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw2-long-secret")})
			if !errors.Is(err, ErrHomeExists) || !strings.Contains(err.Error(), "--reuse-home") {
				t.Fatalf("re-add without --reuse-home: %v, want ErrHomeExists naming --reuse-home", err)
			}
			if us, _ := m.ListUsers(ctx); len(us) != 0 {
				t.Fatalf("refused add left users %v", us)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw2-long-secret"), ReuseHome: true}); err != nil {
				t.Fatalf("re-add with ReuseHome: %v", err)
			}
			if _, err := home.Stat("old-files"); err != nil {
				t.Fatalf("reused home lost its files: %v", err)
			}
			// Purged, the name is free again without ReuseHome.
			if err := m.DeleteUser(ctx, "alice", true, nil); err != nil {
				t.Fatal(err)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw3-long-secret")}); err != nil {
				t.Fatalf("add after purge: %v", err)
			}
			kf, err := m.KeyFile(ctx)
			if err != nil || kf != filepath.Join(dir, "keyring") {
				t.Fatalf("KeyFile = %q, %v", kf, err)
			}
		})
	}
}

// TestPasswordPolicy: both managers refuse a weak password on add and on
// passwd with an error callers can test, and apply a configured policy.
func TestPasswordPolicy(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			l, dir := newLocal(t)
			var m Manager = l
			if via == "socket" {
				m = serveSocket(t, l, dir)
			}
			ctx := context.Background()
			for _, pw := range []string{"short", "1qaz2wsx3edc", "my-alice-password"} {
				err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte(pw)})
				if !errors.Is(err, pwpolicy.ErrWeak) {
					t.Fatalf("add with %q: %v, want ErrWeak", pw, err)
				}
			}
			if _, err := l.Users.Get(ctx, "alice"); !errors.Is(err, users.ErrNotFound) {
				t.Fatalf("refused user exists: %v", err)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw-1-long-secret")}); err != nil {
				t.Fatal(err)
			}
			if err := m.SetPassword(ctx, "alice", []byte("short")); !errors.Is(err, pwpolicy.ErrWeak) {
				t.Fatalf("passwd short: %v", err)
			}
			if _, err := l.Users.AuthPassword(ctx, "test", "127.0.0.1", "alice", []byte("pw-1-long-secret")); err != nil {
				t.Fatalf("old password no longer works after a refused change: %v", err)
			}
			l.Policy = &pwpolicy.Policy{MinLength: 4}
			if err := m.SetPassword(ctx, "alice", []byte("short")); err != nil {
				t.Fatalf("relaxed policy: %v", err)
			}
		})
	}
}

// TestSetUser: user set changes rights and quotas in place, keeps what it
// is not given, and refuses bad input, through both managers.
func TestSetUser(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			l, dir := newLocal(t)
			var m Manager = l
			if via == "socket" {
				m = serveSocket(t, l, dir)
			}
			set := m.(UserSetter)
			ctx := context.Background()
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw-1-long-secret"), QuotaFiles: 7}); err != nil {
				t.Fatal(err)
			}
			rev := l.Users.Revision()
			q := int64(1 << 20)
			if err := set.SetUser(ctx, "alice", SetUserRequest{ReadOnly: true, QuotaBytes: &q}); err != nil {
				t.Fatal(err)
			}
			u, err := l.Users.Get(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if u.Perms != users.PermReadOnly || u.QuotaBytes != q || u.QuotaFiles != 7 {
				t.Fatalf("after set: perms %v quota %d files %d", u.Perms, u.QuotaBytes, u.QuotaFiles)
			}
			if l.Users.Revision() == rev {
				t.Fatal("revision unchanged: open sessions would not see the change")
			}
			p := "list,download,upload"
			if err := set.SetUser(ctx, "alice", SetUserRequest{Perms: &p}); err != nil {
				t.Fatal(err)
			}
			if u, _ = l.Users.Get(ctx, "alice"); u.Perms.String() != p || u.QuotaBytes != q {
				t.Fatalf("after perms: %v %d", u.Perms, u.QuotaBytes)
			}
			yes, no := true, false
			if err := set.SetUser(ctx, "alice", SetUserRequest{Admin: &yes}); err != nil {
				t.Fatal(err)
			}
			us, err := m.ListUsers(ctx)
			if err != nil || len(us) != 1 || !us[0].Admin {
				t.Fatalf("admin role not listed: %+v %v", us, err)
			}
			if err := set.SetUser(ctx, "alice", SetUserRequest{Admin: &no}); err != nil {
				t.Fatal(err)
			}
			if u, _ = l.Users.Get(ctx, "alice"); u.Admin || u.Perms.String() != p {
				t.Fatalf("after --no-admin: %+v", u)
			}
			if err := m.AddUser(ctx, AddUserRequest{Name: "boss", Password: []byte("pw-1-long-secret"), Admin: true}); err != nil {
				t.Fatal(err)
			}
			if u, _ = l.Users.Get(ctx, "boss"); !u.Admin {
				t.Fatal("user add --admin: no admin role")
			}
			bad := "list,fly"
			if err := set.SetUser(ctx, "alice", SetUserRequest{Perms: &bad}); !errors.Is(err, users.ErrInvalid) {
				t.Fatalf("bad perms: %v", err)
			}
			if err := set.SetUser(ctx, "nobody", SetUserRequest{Perms: &p}); !errors.Is(err, users.ErrNotFound) {
				t.Fatalf("unknown user: %v", err)
			}
		})
	}
}
