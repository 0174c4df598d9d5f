package sftpd

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"

	"github.com/securefsd/securefsd/internal/testutil"
)

// TestDefenderAccounting checks what the defender is told about
// connections that end unauthenticated: a connection that tried to log in
// counts, and so does one that holds its slot silent until the login grace
// ends (issue 14 item 6); one that closes or resets before any auth
// request does not. Each case's outcome is read from the server log ("login
// failed" or "connection closed before login"); the scoring itself is
// users.Failed's log line "method=connection".
func TestDefenderAccounting(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.LoginGrace = 500 * time.Millisecond })
	u := ts.addUser("alice", users.PermAll)
	stranger := ts.addUser("stranger", users.PermAll)

	dialRaw := func(t *testing.T) *net.TCPConn {
		t.Helper()
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc.(*net.TCPConn)
	}
	readBanner := func(t *testing.T, nc net.Conn) {
		t.Helper()
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		if _, err := nc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	sshDial := func(user string, auth ...ssh.AuthMethod) {
		c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
			User: user, Auth: auth,
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
		if err == nil {
			c.Close()
			t.Errorf("login as %q succeeded", user)
		}
	}
	tests := []struct {
		name   string
		run    func(t *testing.T)
		counts bool // scored by users.Failed
	}{
		{"close at once", func(t *testing.T) { dialRaw(t).Close() }, false},
		{"reset after banner", func(t *testing.T) {
			nc := dialRaw(t)
			readBanner(t, nc)
			nc.SetLinger(0)
			nc.Close()
		}, false},
		{"version then close", func(t *testing.T) {
			nc := dialRaw(t)
			io.WriteString(nc, "SSH-2.0-probe\r\n")
			readBanner(t, nc)
			nc.Close()
		}, false},
		{"silent until grace", func(t *testing.T) {
			nc := dialRaw(t)
			nc.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.Copy(io.Discard, nc); err != nil {
				t.Fatalf("not closed after the grace: %v", err)
			}
		}, true},
		{"no auth method", func(t *testing.T) { sshDial("alice") }, false},
		{"wrong key", func(t *testing.T) { sshDial("alice", ssh.PublicKeys(stranger.signer)) }, true},
	}
	outcomes := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scored := func(r testutil.Record) bool {
				return r.Attr("event") == users.EventLoginFailed && r.Attr("method") == "connection"
			}
			before := ts.rec.Count(scored)
			tc.run(t)
			outcomes++
			waitRecords(t, ts, func(r testutil.Record) bool {
				return r.Attr("event") == eventSSHLoginFailed || r.Attr("event") == eventClosedBeforeLogin
			}, outcomes)
			got := ts.rec.Count(scored) - before
			if want := map[bool]int{false: 0, true: 1}[tc.counts]; got != want {
				t.Errorf("defender scored %d failed connections, want %d", got, want)
			}
		})
	}
	if ts.db.Banned("127.0.0.1:1") {
		t.Fatal("address banned")
	}
	if c, err := ssh.Dial("tcp", ts.addr, clientConfig(u, ts, nil)); err != nil {
		t.Errorf("login after the probes: %v", err)
	} else {
		c.Close()
	}
}

// TestLogNoRawUserName: a name that is not a valid user name (a password
// typed into the name field) never reaches the log.
func TestLogNoRawUserName(t *testing.T) {
	ts := startServer(t)
	const secret = "Tr0ub4dor&3 secret"
	for _, auth := range []ssh.AuthMethod{ssh.Password("x"), ssh.PublicKeys(ts.addUser("alice", users.PermAll).signer)} {
		c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
			User: secret, Auth: []ssh.AuthMethod{auth},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
		if err == nil {
			c.Close()
			t.Fatal("login succeeded")
		}
	}
	waitRecords(t, ts, event(eventSSHLoginFailed), 2)
	if ts.rec.AnyText("Tr0ub4dor") {
		t.Errorf("the raw user name was logged:\n%s", ts.rec.Dump())
	}
	if ts.rec.Count(func(r testutil.Record) bool {
		return r.Attr("event") == eventSSHLoginFailed && r.Attr("user") == "(invalid name)"
	}) == 0 {
		t.Errorf("no login failure logged with the invalid-name placeholder:\n%s", ts.rec.Dump())
	}
}

// waitLogCount waits (up to a deadline) until the log holds at least n
// lines matching any of the |-separated substrings.
func waitLogCount(t *testing.T, ts *testServer, subs string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := 0
		for _, s := range strings.Split(subs, "|") {
			got += strings.Count(ts.logs.String(), s)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log has %d lines matching %q, want %d", got, subs, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionLogsCarryID (issue 22, logs): every log line of an SSH
// session carries its session id (the one `session list` shows and the
// audit trail records), from "session start" to "session end".
func TestSessionLogsCarryID(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	c, err := ssh.Dial("tcp", ts.addr, clientConfig(u, ts, nil))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitRecords(t, ts, event(eventSessionEnd), 1)
	var start, end testutil.Record
	for _, r := range ts.rec.Records() {
		switch r.Attr("event") {
		case eventSessionStart:
			start = r
		case eventSessionEnd:
			end = r
		}
	}
	if id := start.Attr("session"); !strings.HasPrefix(id, "ssh-") || end.Attr("session") != id {
		t.Errorf("session ids: start %q, end %q", id, end.Attr("session"))
	}
}
