package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSessionListKill is issue 22's live sessions against the real binary:
// an OpenSSH sftp session and a browser session (curl with a cookie) show
// in `session list --json` with user, protocol, address and the last file;
// `session kill ID` ends the SSH session (the client's next command
// fails) and `session kill --user` signs the browser out; both are in the
// audit trail.
func TestSessionListKill(t *testing.T) {
	NeedTool(t, "curl")
	s := StartServer(t)
	const pw = "sess-pw-e2e-Lantern"
	key := s.AddUser(t, "sasha", pw)
	sess := startSFTP(t, s, "sasha", s.SSHOpts(key))
	if out, ok := sess.run("put " + RandomFile(t, 50<<10) + " /live-file.bin"); !ok {
		t.Fatalf("put: %s", out)
	}
	jar := s.CurlBrowserLogin(t, "sasha", pw)
	webCode := func() string {
		out, _ := s.Curl(t, "", "", "-b", jar, "-o", "/dev/null", "-w", "%{http_code}", s.DAVURL+"/ui/files/")
		return out
	}
	if c := webCode(); c != "200" {
		t.Fatalf("browser session: %s", c)
	}

	out, err := s.CLI(t, "session", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ss []struct {
		ID, User, Proto, Remote, Current string
		Bytes                            int64
	}
	if err := json.Unmarshal([]byte(out), &ss); err != nil || len(ss) != 2 {
		t.Fatalf("session list: %v %s", err, out)
	}
	var sshID string
	for _, x := range ss {
		if x.User != "sasha" || !strings.HasPrefix(x.Remote, "127.0.0.1:") {
			t.Errorf("session %+v", x)
		}
		if x.Proto == "ssh" {
			sshID = x.ID
			if x.Current != "/live-file.bin" || x.Bytes != 50<<10 {
				t.Errorf("ssh session's file or bytes: %+v", x)
			}
		}
	}
	if sshID == "" {
		t.Fatalf("no ssh session in %s", out)
	}
	if _, err := s.CLI(t, "session", "kill", sshID); err != nil {
		t.Fatal(err)
	}
	if out, ok := sess.run("ls"); ok {
		t.Fatalf("the killed sftp session still answers: %s", out)
	}
	if _, err := s.CLI(t, "session", "kill", "ssh-nosuch"); err == nil {
		t.Fatal("killing an unknown session succeeded")
	}
	if out, err := s.CLI(t, "session", "kill", "--user", "sasha"); err != nil || !strings.Contains(out, "ended 1 session") {
		t.Fatalf("kill --user: %v %s", err, out)
	}
	if c := webCode(); c == "200" {
		t.Fatal("the browser session survived kill --user")
	}
	s.Stop(t)
	kills := 0
	for _, r := range auditQuery(t, s, "--op", "session.kill") {
		if r.Result == "ok" && r.Admin != "" {
			kills++
		}
	}
	if kills != 2 {
		t.Errorf("session.kill records: %d", kills)
	}
}
