package sftpd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
)

// dialAs opens an SSH connection as u with auth, closed at cleanup.
func (ts *testServer) dialAs(u *testUser, auth ssh.AuthMethod) *ssh.Client {
	t := ts.t
	t.Helper()
	c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
		User: u.name, Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.FixedHostKey(ts.hostKey), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial as %s: %v", u.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connEnds waits (bounded) for the server to close the connection.
func connEnds(t *testing.T, c *ssh.Client, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: the connection is still open 60s after the change", what)
	}
}

func put(c *sftp.Client, name string, data []byte) error {
	f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestRevocationReachesOpenSessions (issue 14, item 2): changes to a user
// reach SSH connections opened before them. Disabled, deleted (and added
// again), the login password changed, the login key removed: the next
// request fails and the connection ends; an idle connection ends too.
// A change that does not concern how a connection logged in (the password
// of a key login, another key) leaves it alone. Changed permissions and
// quota apply from the next request, also to files already open.
func TestRevocationReachesOpenSessions(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()

	ends := []struct {
		name   string
		auth   func(u *testUser) ssh.AuthMethod
		change func(t *testing.T, u *testUser)
	}{
		{"disabled", keyLogin, func(t *testing.T, u *testUser) {
			must(t, ts.db.Update(ctx, u.name, func(x *users.User) error { x.Disabled = true; return nil }))
		}},
		{"deleted", pwLogin, func(t *testing.T, u *testUser) { must(t, ts.db.Delete(ctx, u.name)) }},
		{"deleted and added again", keyLogin, func(t *testing.T, u *testUser) {
			old, err := ts.db.Get(ctx, u.name)
			must(t, err)
			must(t, ts.db.Delete(ctx, u.name))
			must(t, ts.db.Add(ctx, users.User{Name: u.name, Perms: users.PermAll, Keys: old.Keys}, []byte(u.password)))
		}},
		{"password changed", pwLogin, func(t *testing.T, u *testUser) {
			must(t, ts.db.SetPassword(ctx, u.name, []byte("new-password-1")))
		}},
		{"login key removed", keyLogin, func(t *testing.T, u *testUser) { must(t, ts.db.DelKey(ctx, u.name, "test")) }},
	}
	for i, tt := range ends {
		t.Run(tt.name, func(t *testing.T) {
			u := ts.addUser("u"+string(rune('a'+i)), users.PermAll)
			busy := ts.dialAs(u, tt.auth(u))
			idle := ts.dialAs(u, tt.auth(u))
			c, err := sftp.NewClient(busy)
			must(t, err)
			must(t, put(c, "/before", []byte("ok")))
			tt.change(t, u)
			if err := put(c, "/after", []byte("too late")); err == nil {
				t.Fatal("an upload after the change succeeded")
			}
			if _, err := c.ReadDir("/"); err == nil {
				t.Fatal("a listing after the change succeeded")
			}
			connEnds(t, busy, "the busy connection")
			connEnds(t, idle, "the idle connection") // no request: the watcher ends it
			if _, err := ts.home(u.name).Stat("/after"); err == nil {
				t.Error("/after was created")
			}
		})
	}

	t.Run("unrelated changes keep the session", func(t *testing.T) {
		u := ts.addUser("keep", users.PermAll)
		byKey := ts.dialAs(u, keyLogin(u))
		byPW := ts.dialAs(u, pwLogin(u))
		ck, err := sftp.NewClient(byKey)
		must(t, err)
		cp, err := sftp.NewClient(byPW)
		must(t, err)
		// Another key added and removed: neither connection used it.
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		must(t, err)
		sshPub, err := ssh.NewPublicKey(pub)
		must(t, err)
		_, err = ts.db.AddKey(ctx, u.name, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))+" second")
		must(t, err)
		must(t, ts.db.DelKey(ctx, u.name, "second"))
		must(t, put(ck, "/k1", []byte("k")))
		must(t, put(cp, "/p1", []byte("p")))
		// The password changes: the key login stays, the password login ends.
		must(t, ts.db.SetPassword(ctx, u.name, []byte("new-password-2")))
		must(t, put(ck, "/k2", []byte("k")))
		if err := put(cp, "/p2", []byte("p")); err == nil {
			t.Error("the password login kept working after its password changed")
		}
		connEnds(t, byPW, "the password login after the password changed")
		must(t, put(ck, "/k3", []byte("k")))
	})

	t.Run("permissions and quota apply at once", func(t *testing.T) {
		u := ts.addUser("perm", users.PermAll)
		conn := ts.dialAs(u, keyLogin(u))
		c, err := sftp.NewClient(conn)
		must(t, err)
		must(t, put(c, "/old", []byte("previous content")))
		// An upload open when the right goes.
		f, err := c.OpenFile("/old", os.O_WRONLY|os.O_TRUNC)
		must(t, err)
		if _, err := f.Write([]byte("new ")); err != nil {
			t.Fatal(err)
		}
		must(t, ts.db.Update(ctx, u.name, func(x *users.User) error { x.Perms = users.PermReadOnly; return nil }))
		if _, err := f.Write([]byte("content")); !errors.Is(err, os.ErrPermission) {
			t.Errorf("write on an open upload after read-only: %v, want permission denied", err)
		}
		f.Close()
		if got := readVFS(t, ts.home(u.name), "/old"); !bytes.Equal(got, []byte("previous content")) {
			t.Errorf("the interrupted overwrite published %q", got)
		}
		if err := put(c, "/new", []byte("x")); !errors.Is(err, os.ErrPermission) {
			t.Errorf("upload when read-only: %v, want permission denied", err)
		}
		if err := c.Remove("/old"); !errors.Is(err, os.ErrPermission) {
			t.Errorf("remove when read-only: %v, want permission denied", err)
		}
		if err := c.Mkdir("/d"); !errors.Is(err, os.ErrPermission) {
			t.Errorf("mkdir when read-only: %v, want permission denied", err)
		}
		// Still a working, read-only session.
		r, err := c.Open("/old")
		must(t, err)
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(got) != "previous content" {
			t.Fatalf("download when read-only: %q %v", got, err)
		}
		// Download taken away too: an open file stops reading.
		r, err = c.Open("/old")
		must(t, err)
		must(t, ts.db.Update(ctx, u.name, func(x *users.User) error { x.Perms = users.PermList; return nil }))
		if _, err := r.Read(make([]byte, 4)); !errors.Is(err, os.ErrPermission) {
			t.Errorf("read on an open file after download was taken: %v", err)
		}
		r.Close()
		// Rights back, with a quota of 100 bytes (16 used).
		must(t, ts.db.Update(ctx, u.name, func(x *users.User) error {
			x.Perms, x.QuotaBytes = users.PermAll, 100
			return nil
		}))
		must(t, put(c, "/small", []byte("12345")))
		if err := put(c, "/big", bytes.Repeat([]byte("x"), 200)); err == nil {
			t.Error("an upload beyond the new quota succeeded")
		}
		if _, err := c.Getwd(); err != nil {
			t.Errorf("the session ended: %v", err)
		}
	})

	t.Run("exec and scp", func(t *testing.T) {
		u := ts.addUser("exec", users.PermAll)
		conn := ts.dialAs(u, keyLogin(u))
		// md5sum of stdin, held open while the user is disabled.
		sess, err := conn.NewSession()
		must(t, err)
		stdin, err := sess.StdinPipe()
		must(t, err)
		must(t, sess.Start("md5sum"))
		_, err = stdin.Write([]byte("some data"))
		must(t, err)
		// An scp upload whose data is still coming.
		scp, err := conn.NewSession()
		must(t, err)
		scpIn, err := scp.StdinPipe()
		must(t, err)
		scpOut, err := scp.StdoutPipe()
		must(t, err)
		must(t, scp.Start("scp -t /"))
		ack := make([]byte, 1)
		_, err = io.ReadFull(scpOut, ack)
		must(t, err)
		_, err = io.WriteString(scpIn, "C0644 1000000 up\n")
		must(t, err)
		_, err = io.ReadFull(scpOut, ack)
		must(t, err)
		if ack[0] != 0 {
			t.Fatalf("scp refused the file: %d", ack[0])
		}
		_, err = scpIn.Write(make([]byte, 1000))
		must(t, err)
		must(t, ts.db.Update(ctx, u.name, func(x *users.User) error { x.Disabled = true; return nil }))
		connEnds(t, conn, "a connection running md5sum and scp")
		waitLogCount(t, ts, "op=scp-upload", 1) // the upload was aborted
		if _, err := ts.home(u.name).Stat("/up"); err == nil {
			t.Error("the interrupted scp upload was published")
		}
	})
}

func keyLogin(u *testUser) ssh.AuthMethod { return ssh.PublicKeys(u.signer) }
func pwLogin(u *testUser) ssh.AuthMethod  { return ssh.Password(u.password) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
