package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Every 127/8 address reaches the server on 127.0.0.1 (Linux routes the
// whole block to lo), so these tests log in "from" different addresses by
// binding the client's source address.

// loginStatus is one PROPFIND Depth 0 of / as user:pw from src.
func loginStatus(t *testing.T, srv *Server, user, pw, src string) int {
	t.Helper()
	d := newDAV(t, srv, user, pw, src)
	defer d.hc.CloseIdleConnections()
	code, b, err := d.do("PROPFIND", "/", nil, "Depth: 0")
	if err != nil {
		t.Fatalf("PROPFIND as %s from %s: %v %s", user, src, err, b)
	}
	return code
}

// flood sends n concurrent wrong-password WebDAV logins for user, spread
// over the source addresses srcs, and returns the statuses seen.
func flood(t *testing.T, srv *Server, user string, n int, srcs ...string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newDAV(t, srv, user, fmt.Sprintf("wrong-%d", i), srcs[i%len(srcs)])
			defer d.hc.CloseIdleConnections()
			code, _, err := d.do("PROPFIND", "/", nil, "Depth: 0")
			if err != nil {
				code = -1
			}
			mu.Lock()
			seen[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return seen
}

func sshLogin(srv *Server, src, user string, auth ssh.AuthMethod) error {
	c, err := dialSSH(srv, src, sshConfig(user, auth))
	if err != nil {
		return err
	}
	return c.Close()
}

// TestLoginFlood floods logins and checks the defender (internal/users):
//   - from one address, over WebDAV and over SSH: the address is banned
//     (HTTP 429, SSH connections dropped) even with a right password, while
//     other users, and the flooded user, log in from other addresses;
//   - one user name from several addresses: the name is banned everywhere,
//     while other users log in from anywhere.
//
// Bans last 15 minutes (users.DefenderOptions.BanTime); the test does not
// wait for one to end: the defender's unit tests cover expiry with a clock.
func TestLoginFlood(t *testing.T) {
	t.Parallel()
	srv := StartServer(t)
	aliceKey := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	bobKey := srv.AddUser(t, "bob", "obo-pw-1-e2e-pass")
	carolKey := srv.AddUser(t, "carol", "pneby-pw-1-e2e-pass")
	daveKey := srv.AddUser(t, "dave", "qnir-pw-1-e2e-pass")

	// alice logs in once before the attack (a real user's cached login).
	if code := loginStatus(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "127.0.0.3"); code != http.StatusMultiStatus {
		t.Fatalf("alice before the flood: %d", code)
	}

	// The three floods use distinct addresses and users: they run at once.
	t.Run("one-address-webdav", func(t *testing.T) {
		t.Parallel()
		seen := flood(t, srv, "alice", 12, "127.0.0.2")
		t.Logf("12 wrong passwords from 127.0.0.2: statuses %v", seen)
		if seen[http.StatusOK]+seen[http.StatusMultiStatus] > 0 {
			t.Fatalf("a wrong password was accepted: %v", seen)
		}
		waitRecord(t, srv, 10*time.Second, "ban of 127.0.0.2", banned("address", "127.0.0.2"))
		for _, u := range []struct{ name, pw string }{{"alice", "nyvpr-pw-1-e2e-pass"}, {"bob", "obo-pw-1-e2e-pass"}} {
			if code := loginStatus(t, srv, u.name, u.pw, "127.0.0.2"); code != http.StatusTooManyRequests {
				t.Errorf("%s with the right password from the banned address: %d, want 429", u.name, code)
			}
		}
		if err := sshLogin(srv, "127.0.0.2", "bob", keyAuth(t, bobKey)); err == nil {
			t.Errorf("SSH login from the banned address succeeded")
		}
		// Other addresses are unaffected, for every user.
		if code := loginStatus(t, srv, "bob", "obo-pw-1-e2e-pass", "127.0.0.3"); code != http.StatusMultiStatus {
			t.Errorf("bob from another address: %d", code)
		}
		if code := loginStatus(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "127.0.0.3"); code != http.StatusMultiStatus {
			t.Errorf("alice from another address: %d", code)
		}
		if err := sshLogin(srv, "127.0.0.3", "bob", keyAuth(t, bobKey)); err != nil {
			t.Errorf("bob's SSH login from another address: %v", err)
		}
	})

	t.Run("one-address-ssh", func(t *testing.T) {
		t.Parallel()
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sshLogin(srv, "127.0.0.4", "dave", ssh.Password(fmt.Sprintf("wrong-%d", i))); err == nil {
					t.Errorf("wrong SSH password accepted")
				}
			}()
		}
		wg.Wait()
		waitFor(t, 10*time.Second, "a ban of 127.0.0.4", func() bool {
			return sshLogin(srv, "127.0.0.4", "dave", keyAuth(t, daveKey)) != nil &&
				loginStatus(t, srv, "dave", "qnir-pw-1-e2e-pass", "127.0.0.4") == http.StatusTooManyRequests
		})
		if err := sshLogin(srv, "127.0.0.5", "dave", keyAuth(t, daveKey)); err != nil {
			t.Errorf("dave's key login from another address: %v", err)
		}
		if err := sshLogin(srv, "127.0.0.5", "bob", keyAuth(t, bobKey)); err != nil {
			t.Errorf("bob's key login from another address: %v", err)
		}
	})

	t.Run("one-user-many-addresses", func(t *testing.T) {
		t.Parallel()
		srcs := []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"}
		seen := flood(t, srv, "carol", 32, srcs...)
		t.Logf("32 wrong passwords for carol from 4 addresses: statuses %v", seen)
		waitRecord(t, srv, 10*time.Second, "ban of carol", banned("user", "carol"))
		if code := loginStatus(t, srv, "carol", "pneby-pw-1-e2e-pass", "127.0.0.20"); code != http.StatusTooManyRequests {
			t.Errorf("carol with the right password from a fresh address: %d, want 429", code)
		}
		// A name ban does not lock out keys (issue 14 item 3).
		if err := sshLogin(srv, "127.0.0.20", "carol", keyAuth(t, carolKey)); err != nil {
			t.Errorf("carol's SSH key login while her name is banned: %v", err)
		}
		// Another user from the same addresses is unaffected: no address was banned.
		for _, src := range append(srcs, "127.0.0.20") {
			if code := loginStatus(t, srv, "bob", "obo-pw-1-e2e-pass", src); code != http.StatusMultiStatus {
				t.Errorf("bob from %s while carol is banned: %d", src, code)
			}
		}
		if err := sshLogin(srv, "127.0.0.20", "alice", keyAuth(t, aliceKey)); err != nil {
			t.Errorf("alice's SSH login while carol is banned: %v", err)
		}
	})
}

// serveFlagSupported reports whether `securefsd serve` has flag.
func serveFlagSupported(t *testing.T, flag string) bool {
	t.Helper()
	out, _ := exec.Command(binPath, "serve", "--help").CombinedOutput()
	return strings.Contains(string(out), "--"+flag+" ")
}

// dialFrom connects to addr from the local address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// closedWithin reads from c until the server closes it; it reports false
// if the connection is still open after d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestSlowloris opens connections that stall at every stage and checks
// that the server's timeouts close them, while it keeps serving others:
// SSH before the version line, during the handshake and after login (idle
// timeout); HTTPS before the TLS handshake, in the request head, and in a
// request body. It also holds 200 idle connections open at once.
//
// SSH's login grace (30s) and the HTTP header timeout (30s) have no flags
// yet; if `serve` gains --login-grace / --read-header-timeout the test uses
// them with 3s. The stalls run in parallel, so the test takes about the
// longest timeout.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	args := []string{"--idle-timeout", "3s"}
	grace := 30 * time.Second
	if serveFlagSupported(t, "login-grace") {
		args = append(args, "--login-grace", "3s")
		grace = 3 * time.Second
	}
	header := 30 * time.Second
	if serveFlagSupported(t, "read-header-timeout") {
		args = append(args, "--read-header-timeout", "3s")
		header = 3 * time.Second
	}
	srv := StartServer(t, WithServeArgs(args...))
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	margin := 30 * time.Second

	stalls := []struct {
		name  string
		limit time.Duration
		open  func() (net.Conn, error)
	}{
		{"ssh-silent", grace, func() (net.Conn, error) { return dialFrom("127.0.0.50", srv.SFTPAddr) }},
		{"ssh-version-only", grace, func() (net.Conn, error) {
			c, err := dialFrom("127.0.0.50", srv.SFTPAddr)
			if err == nil {
				_, err = io.WriteString(c, "SSH-2.0-slow\r\n")
			}
			return c, err
		}},
		{"https-no-tls-handshake", header, func() (net.Conn, error) { return dialFrom("127.0.0.50", srv.DAVAddr) }},
		{"https-partial-head", header, func() (net.Conn, error) {
			c, err := dialDAV(srv)
			if err == nil {
				_, err = io.WriteString(c, "PROPFIND / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
			}
			return c, err
		}},
		{"https-stalled-body", header, func() (net.Conn, error) {
			c, err := dialDAV(srv)
			if err == nil {
				_, err = io.WriteString(c, "PUT /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "+basic("alice", "nyvpr-pw-1-e2e-pass")+
					"\r\nContent-Length: 1000000\r\n\r\nfirst bytes, then nothing")
			}
			return c, err
		}},
	}
	var wg sync.WaitGroup
	for _, s := range stalls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.open()
			if err != nil {
				t.Errorf("%s: %v", s.name, err)
				return
			}
			defer c.Close()
			if !closedWithin(c, s.limit+margin) {
				t.Errorf("%s: the server kept a stalled connection open for %v (timeout %v)", s.name, s.limit+margin, s.limit)
			}
		}()
	}
	// An authenticated SSH connection that goes idle is closed by --idle-timeout.
	auth := keyAuth(t, key)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := dialSSH(srv, "", sshConfig("alice", auth))
		if err != nil {
			t.Errorf("ssh login: %v", err)
			return
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(3*time.Second + margin):
			c.Close()
			t.Errorf("an idle SSH connection outlived --idle-timeout 3s by %v", margin)
		}
	}()
	// Many idle connections at once do not stop the server serving others.
	// They come from another address: the defender may count them as
	// failed logins (sftpd scores a connection reset before login).
	var idle []net.Conn
	for range 100 {
		if c, err := dialFrom("127.0.0.51", srv.SFTPAddr); err == nil {
			idle = append(idle, c)
		}
		if c, err := dialFrom("127.0.0.51", srv.DAVAddr); err == nil {
			idle = append(idle, c)
		}
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
	for _, c := range idle {
		c.Close()
	}
	wg.Wait()
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
}
