package e2e

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSSHConnectionFlood (issue 14, item 6): 260 idle TCP connections from
// one address (127.0.0.2) used to fill --max-sessions (256) for the whole
// login grace, so nobody could log in. Now connections still logging in
// have their own budget with a per-source cap (--max-startups-per-source,
// 64 by default): the server holds at most that many of the flood and
// closes the rest at once, a user logs in from another address while the
// flood holds its slots, and the flood's connections that run out the
// login grace are scored by the login defender until the address is
// banned (then dropped before the handshake).
//
// Counts, not timings: how many flood connections got the server's banner
// and were held, and whether the login succeeded.
func TestSSHConnectionFlood(t *testing.T) {
	NeedTool(t, "sftp")
	srv := StartServer(t, WithServeArgs("--login-grace", "5s"))
	key := srv.AddUser(t, "flo", "syb-pw-1-e2e-pass")

	const flood, perSource = 260, 64
	conns := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 30 * time.Second}
	for range flood {
		c, err := d.Dial("tcp", srv.SFTPAddr)
		if err != nil {
			t.Fatalf("flood dial: %v", err)
		}
		conns = append(conns, c)
	}
	// Each connection either gets the SSH banner (held: logging in) or is
	// closed without one (refused).
	var mu sync.Mutex
	held := map[net.Conn]bool{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && strings.HasPrefix(line, "SSH-2.0-") {
				mu.Lock()
				held[c] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d of %d idle connections from 127.0.0.2 were held, the rest refused", len(held), flood)

	// While the flood holds its slots (none of them ran out the grace:
	// they are still open), a user logs in from another address.
	stillOpen := 0
	for c := range held {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				stillOpen++
			}
		}
	}
	if err := sshLogin(srv, "127.0.0.3", "flo", keyAuth(t, key)); err != nil {
		t.Fatalf("login from another address during the flood: %v", err)
	}
	if out, err := srv.SFTPBatch(t, "flo", key, "pwd\n"); err != nil {
		t.Fatalf("OpenSSH sftp during the flood: %v\n%s", err, out)
	}
	t.Logf("%d flood connections were still open when the user logged in", stillOpen)
	if stillOpen == 0 {
		t.Fatalf("the flood's connections were gone before the login: the test did not attack")
	}
	if len(held) == 0 || len(held) > perSource {
		t.Fatalf("%d flood connections held, want 1..%d", len(held), perSource)
	}

	// The grace runs out for the held connections (the server closes
	// them): each scores a failure for 127.0.0.2, which is banned, so its
	// next connection gets no banner.
	for c := range held {
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("a flood connection was not closed after the login grace: %v", err)
		}
	}
	waitFor(t, 60*time.Second, "127.0.0.2 to be banned", func() bool {
		c, err := d.Dial("tcp", srv.SFTPAddr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err != nil && line == ""
	})
	if err := sshLogin(srv, "127.0.0.3", "flo", keyAuth(t, key)); err != nil {
		t.Fatalf("login from another address after the flood: %v", err)
	}
}
