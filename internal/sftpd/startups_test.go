package sftpd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
)

// TestStartupBudget (issue 14, item 6): connections still logging in have
// their own budget, in total and per source address, apart from
// MaxSessions: idle connections do not take logged-in users' slots, one
// address cannot take the whole budget, and a connection refused for the
// budget is closed before the SSH banner.
func TestStartupBudget(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.MaxSessions = 2
		o.MaxStartups = 4
		o.MaxStartupsPerSource = 2
	})
	u := ts.addUser("alice", users.PermAll)

	// idle opens a TCP connection from src and reports whether the server
	// held it (sent its banner) or refused it (closed it without one).
	idle := func(src string) (net.Conn, bool) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return c, err == nil && strings.HasPrefix(line, "SSH-2.0-")
	}
	login := func(src string) error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		nc, err := d.Dial("tcp", ts.addr)
		if err != nil {
			return err
		}
		sc, chans, reqs, err := ssh.NewClientConn(nc, ts.addr, clientConfig(u, ts, nil))
		if err != nil {
			nc.Close()
			return err
		}
		c := ssh.NewClient(sc, chans, reqs)
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return err
		}
		return s.Close()
	}

	held := 0
	for range 3 {
		if _, ok := idle("127.0.0.2"); ok {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("%d idle connections from one address held, want the per-source cap 2", held)
	}
	// MaxSessions is 2, and two connections are logging in: the logged-in
	// slots are still free (they used to count against MaxSessions).
	if err := login("127.0.0.3"); err != nil {
		t.Fatalf("login while one address holds its startups: %v", err)
	}
	c4, ok1 := idle("127.0.0.4")
	_, ok2 := idle("127.0.0.4")
	if !ok1 || !ok2 {
		t.Fatal("another address's connections were refused")
	}
	// The total (4) is reached: every address waits now.
	if _, ok := idle("127.0.0.5"); ok {
		t.Fatal("a connection beyond MaxStartups was held")
	}
	if err := login("127.0.0.3"); err == nil {
		t.Fatal("a login beyond MaxStartups succeeded")
	}
	// One logging-in connection goes: there is room again.
	c4.Close()
	waitFor := time.Now().Add(20 * time.Second)
	for {
		err := login("127.0.0.3")
		if err == nil {
			break
		}
		if time.Now().After(waitFor) {
			t.Fatalf("login after a startup slot was freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
