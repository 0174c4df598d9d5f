package sftpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"

	"github.com/securefsd/securefsd/internal/testutil"
)

func TestLoadOrCreateHostKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ssh")
	keys, err := LoadOrCreateHostKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].PublicKey().Type() != ssh.KeyAlgoED25519 || keys[1].PublicKey().Type() != ssh.KeyAlgoRSA {
		t.Fatalf("keys: %v", Fingerprints(keys))
	}
	for _, name := range []string{"ssh_host_ed25519_key", "ssh_host_rsa_key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
		data, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.HasPrefix(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
			t.Errorf("%s is not in OpenSSH format", name)
		}
	}
	// The RSA key never signs with SHA-1.
	ms, ok := keys[1].(ssh.MultiAlgorithmSigner)
	if !ok {
		t.Fatal("RSA signer does not restrict its algorithms")
	}
	for _, a := range ms.Algorithms() {
		if a == ssh.KeyAlgoRSA {
			t.Errorf("RSA host key offers ssh-rsa (SHA-1)")
		}
	}
	again, err := LoadOrCreateHostKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if !bytes.Equal(keys[i].PublicKey().Marshal(), again[i].PublicKey().Marshal()) {
			t.Errorf("key %d changed on reload", i)
		}
	}
	os.WriteFile(filepath.Join(dir, "ssh_host_ed25519_key"), []byte("garbage"), 0o600)
	if _, err := LoadOrCreateHostKeys(dir); err == nil {
		t.Error("a corrupt host key was accepted (or silently replaced)")
	}
}

func clientConfig(u *testUser, ts *testServer, mod func(*ssh.ClientConfig)) *ssh.ClientConfig {
	cfg := &ssh.ClientConfig{
		User:              u.name,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(u.signer)},
		HostKeyCallback:   ssh.InsecureIgnoreHostKey(),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	}
	if mod != nil {
		mod(cfg)
	}
	return cfg
}

func TestAlgorithms(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	tests := []struct {
		name string
		mod  func(*ssh.ClientConfig)
		ok   bool
	}{
		{"mlkem hybrid kex", func(c *ssh.ClientConfig) { c.KeyExchanges = []string{ssh.KeyExchangeMLKEM768X25519} }, true},
		{"curve25519 kex", func(c *ssh.ClientConfig) { c.KeyExchanges = []string{ssh.KeyExchangeCurve25519} }, true},
		{"sha1 dh kex refused", func(c *ssh.ClientConfig) { c.KeyExchanges = []string{"diffie-hellman-group14-sha1"} }, false},
		{"nistp256 kex refused", func(c *ssh.ClientConfig) { c.KeyExchanges = []string{ssh.KeyExchangeECDHP256} }, false},
		{"aes128-gcm", func(c *ssh.ClientConfig) { c.Ciphers = []string{ssh.CipherAES128GCM} }, true},
		{"aes256-ctr etm", func(c *ssh.ClientConfig) {
			c.Ciphers = []string{ssh.CipherAES256CTR}
			c.MACs = []string{ssh.HMACSHA256ETM}
		}, true},
		{"non-etm mac refused", func(c *ssh.ClientConfig) {
			c.Ciphers = []string{ssh.CipherAES128CTR}
			c.MACs = []string{ssh.HMACSHA256}
		}, false},
		{"cbc refused", func(c *ssh.ClientConfig) { c.Ciphers = []string{"aes128-cbc"} }, false},
		{"chacha20 not offered by default", func(c *ssh.ClientConfig) { c.Ciphers = []string{ssh.CipherChaCha20Poly1305} }, false},
		{"rsa-sha2-512 host key", func(c *ssh.ClientConfig) { c.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512} }, true},
		{"ssh-rsa (sha1) host key refused", func(c *ssh.ClientConfig) { c.HostKeyAlgorithms = []string{ssh.KeyAlgoRSA} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ssh.Dial("tcp", ts.addr, clientConfig(u, ts, tt.mod))
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("dial: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	t.Run("chacha20 when configured", func(t *testing.T) {
		ts2 := startServer(t, func(o *Options) { o.Ciphers = AllowedCiphers() })
		u2 := ts2.addUser("bob", users.PermAll)
		c, err := ssh.Dial("tcp", ts2.addr, clientConfig(u2, ts2, func(c *ssh.ClientConfig) { c.Ciphers = []string{ssh.CipherChaCha20Poly1305} }))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	if _, err := New(Options{Store: ts.store, Users: ts.db, HostKeys: []ssh.Signer{u.signer}, Ciphers: []string{"arcfour"}}); err == nil {
		t.Error("New accepted only insecure ciphers")
	}
}

func TestAuth(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	other := ts.addUser("mallory", users.PermAll)
	tests := []struct {
		name string
		user string
		auth ssh.AuthMethod
		ok   bool
	}{
		{"password", "alice", ssh.Password(u.password), true},
		{"key", "alice", ssh.PublicKeys(u.signer), true},
		{"wrong password", "alice", ssh.Password("nope"), false},
		{"someone else's key", "alice", ssh.PublicKeys(other.signer), false},
		{"unknown user", "nobody", ssh.Password("x"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
				User: tt.user, Auth: []ssh.AuthMethod{tt.auth},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
			})
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("dial: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	t.Run("disabled user", func(t *testing.T) {
		if err := ts.db.Update(context.Background(), "mallory", func(u *users.User) error { u.Disabled = true; return nil }); err != nil {
			t.Fatal(err)
		}
		c, err := ssh.Dial("tcp", ts.addr, clientConfig(other, ts, nil))
		if err == nil {
			c.Close()
			t.Error("disabled user logged in")
		}
	})
	if ts.rec.Count(event(eventSSHLoginFailed)) == 0 {
		t.Errorf("no login failure logged")
	}
}

func TestBan(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	// Rejected-key connections are fed to the defender (users.Failed) until
	// the address is banned; then even a valid key is refused.
	stranger := ts.addUser("stranger", users.PermAll)
	banned := false
	for i := 0; i < 50 && !banned; i++ {
		c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
			User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(stranger.signer)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
		if err == nil {
			c.Close()
			t.Fatal("wrong key accepted")
		}
		banned = ts.db.Banned("127.0.0.1:1")
	}
	if !banned {
		t.Fatal("repeated failed connections never banned the address")
	}
	if c, err := ssh.Dial("tcp", ts.addr, clientConfig(u, ts, nil)); err == nil {
		c.Close()
		t.Error("banned address logged in")
	}
}

func TestSessionLimits(t *testing.T) {
	t.Run("per user", func(t *testing.T) {
		ts := startServer(t, func(o *Options) { o.MaxSessionsPerUser = 2 })
		a := ts.addUser("alice", users.PermAll)
		b := ts.addUser("bob", users.PermAll)
		ts.sftpClient(a)
		ts.sftpClient(a)
		// The third connection of alice is closed right after login.
		if c, err := ssh.Dial("tcp", ts.addr, clientConfig(a, ts, nil)); err == nil {
			if _, serr := c.NewSession(); serr == nil {
				t.Error("third session for alice was allowed")
			}
			c.Close()
		}
		ts.sftpClient(b) // other users are not affected
	})
	t.Run("total", func(t *testing.T) {
		ts := startServer(t, func(o *Options) { o.MaxSessions = 2 })
		a := ts.addUser("alice", users.PermAll)
		ts.sftpClient(a)
		ts.sftpClient(a)
		if c, err := ssh.Dial("tcp", ts.addr, clientConfig(a, ts, nil)); err == nil {
			c.Close()
			t.Error("connection beyond MaxSessions accepted")
		}
	})
}

func TestLoginGraceAndIdleTimeout(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.LoginGrace = 300 * time.Millisecond
		o.IdleTimeout = 300 * time.Millisecond
	})
	u := ts.addUser("alice", users.PermAll)
	// A client that never finishes logging in is dropped after the grace.
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.Copy(io.Discard, nc) // server banner, then EOF when dropped
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	// An authenticated but silent connection is closed after the idle time.
	c := ts.dial(u)
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("idle connection not closed")
	}
}

func TestShutdownClosesSessions(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	c := ts.sftpClient(u)
	f, err := c.Create("/open")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("data"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline (a session was open)", err)
	}
	if _, err := c.Stat("/"); err == nil {
		t.Error("session still works after Shutdown")
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// TestInterruptedUpload: when the connection drops mid-upload, a new
// file keeps what arrived (so reput can resume it) and an overwritten file
// keeps its previous content.
func TestInterruptedUpload(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	home := ts.home("alice")
	old := randomBytes(t, 100000)
	f, err := home.Create("existing")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(old)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	conn := ts.dial(u)
	c, err := newSFTPClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	partial := randomBytes(t, 3<<20)
	nf, err := c.Create("/new")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nf.Write(partial); err != nil {
		t.Fatal(err)
	}
	of, err := c.Create("/existing") // O_TRUNC
	if err != nil {
		t.Fatal(err)
	}
	if _, err := of.Write([]byte("half-written replacement")); err != nil {
		t.Fatal(err)
	}
	conn.Close() // drop without CLOSE
	// Shutdown waits for the session (and its open handles) to finish.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readVFS(t, home, "new"); !bytes.Equal(got, partial) {
		t.Errorf("new file after drop: %d bytes, want the %d that arrived", len(got), len(partial))
	}
	if got := readVFS(t, home, "existing"); !bytes.Equal(got, old) {
		t.Errorf("overwritten file after drop: %q..., want the previous content", got[:min(len(got), 30)])
	}
	if ts.rec.Count(func(r testutil.Record) bool { return r.Has("interrupted") }) == 0 {
		t.Errorf("interrupted transfer not logged")
	}
}

// TestShutdownGraceful: an idle session is closed at once; a session with
// an open upload finishes it (the CLOSE reply arrives) and is then closed.
func TestShutdownGraceful(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	idle := ts.sftpClient(u)
	busy := ts.sftpClient(u)
	if _, err := idle.Getwd(); err != nil {
		t.Fatal(err)
	}
	f, err := busy.Create("/upload")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("first half "))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	// The idle session goes away while the upload is still open.
	idleGone := make(chan struct{})
	go func() {
		for {
			if _, err := idle.Getwd(); err != nil {
				close(idleGone)
				return
			}
		}
	}()
	select {
	case <-idleGone:
	case err := <-done:
		t.Fatalf("Shutdown returned %v before the upload ended", err)
	}
	if _, err := f.Write([]byte("second half")); err != nil {
		t.Fatalf("busy session cut during Shutdown: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the upload during Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if got := readVFS(t, ts.home("alice"), "upload"); string(got) != "first half second half" {
		t.Errorf("upload = %q", got)
	}
}
