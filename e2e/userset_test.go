package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestUserSetReachesOpenSFTPSession (issue 18): `securefsd user set`
// through the running server changes what an OpenSSH sftp session opened
// before it may do, at its next request, without ending it: read-only
// refuses the next upload, new permissions allow it again, a quota
// refuses an upload over it.
func TestUserSetReachesOpenSFTPSession(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "setu", "frgh-pw-1-e2e-pass")
	src := RandomFile(t, 100<<10)
	p := startSFTP(t, srv, "setu", srv.SSHOpts(key))
	if out, ok := p.run("put " + src + " before"); !ok {
		t.Fatalf("upload before: %s", out)
	}
	set := func(args ...string) {
		t.Helper()
		if _, err := srv.CLI(t, append([]string{"user", "set", "setu"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	// "-put": a failed upload does not end sftp's batch.
	refused := func(name string) bool {
		t.Helper()
		out, ok := p.run("-put " + src + " " + name)
		if !ok {
			t.Fatalf("the session ended: %s", out)
		}
		_, err := os.Stat(storePath(srv, "setu", name))
		lower := strings.ToLower(out)
		failed := strings.Contains(lower, "denied") || strings.Contains(lower, "failure") || strings.Contains(lower, "quota")
		return err != nil && failed
	}

	set("--read-only")
	if !refused("ro") {
		t.Fatal("an upload after user set --read-only succeeded")
	}
	if _, err := os.Stat(storePath(srv, "setu", "ro")); err == nil {
		t.Fatal("the refused upload left a file")
	}
	if out, ok := p.run("ls -l before"); !ok || !strings.Contains(out, "before") {
		t.Fatalf("listing after read-only: %s", out)
	}

	set("--perms", "list,download,upload,overwrite")
	if out, ok := p.run("put " + src + " again"); !ok {
		t.Fatalf("upload after the rights came back: %s", out)
	}

	// The quota is checked as bytes arrive (the file may be created
	// first), so the server's verdict is what counts.
	set("--quota", "150K")
	if out, ok := p.run("-put " + src + " over-quota"); !ok {
		t.Fatalf("the session ended: %s", out)
	}
	// The server logs the refused upload at its CLOSE, which sftp may not
	// wait for once a WRITE failed: wait for the line, then count.
	waitLog(t, srv, 10*time.Second, `err="quota exceeded"`, "path=/over-quota")
	if n := len(logLines(srv, `err="quota exceeded"`, "path=/over-quota")); n != 1 {
		t.Fatalf("%d uploads refused over the new quota, want 1", n)
	}
	if n := len(logLines(srv, `msg="connection closed: access revoked"`, "user=setu ")); n != 0 {
		t.Fatalf("user set ended %d connections, want 0", n)
	}
	if n := len(logLines(srv, "rights changed; the session takes them now", "")); n < 3 {
		t.Fatalf("%d rights changes logged, want >= 3", n)
	}

	// The admin role is given and taken away, and listed.
	set("--admin")
	if out, err := srv.CLI(t, "user", "list", "--json"); err != nil || !strings.Contains(out, `"admin": true`) {
		t.Fatalf("user set --admin not listed: %v\n%s", err, out)
	}
	set("--no-admin")
	if out, err := srv.CLI(t, "user", "list", "--json"); err != nil || strings.Contains(out, `"admin": true`) {
		t.Fatalf("user set --no-admin still listed: %v\n%s", err, out)
	}
}
