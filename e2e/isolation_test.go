package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const lockInfo = `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>bob-owner-tag</D:owner></D:lockinfo>`

// TestIsolation: user A cannot list, read, write, rename into or out of,
// delete, change or lock anything of user B's, over SFTP (pkg/sftp and
// OpenSSH's scp), and WebDAV; B's locks do not reach into A's namespace and
// A cannot release them. B's files stay byte-for-byte as they were.
func TestIsolation(t *testing.T) {
	srv := StartServer(t)
	aliceKey := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	bobKey := srv.AddUser(t, "bob", "obo-pw-1-e2e-pass")
	secret := []byte("BOB-ONLY-" + RandomName())
	bob := newSFTP(t, srv, "bob", bobKey)
	if err := bob.Mkdir("docs"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"secret.txt", "docs/plan.txt", "locked.txt"} {
		if err := sftpPut(bob, n, secret); err != nil {
			t.Fatal(err)
		}
	}
	bobDAV := newDAV(t, srv, "bob", "obo-pw-1-e2e-pass", "")
	resp, _, err := bobDAV.doResp("LOCK", "/locked.txt", strings.NewReader(lockInfo), "Depth: 0", "Timeout: Second-600")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's LOCK: %v %v", resp, err)
	}
	bobToken := resp.Header.Get("Lock-Token")
	if bobToken == "" {
		t.Fatal("no Lock-Token")
	}
	bobDir := filepath.Join(srv.DataDir, "store", "bob")
	bobBefore := treeState(t, bobDir)

	alice := newSFTP(t, srv, "alice", aliceKey)
	if err := sftpPut(alice, "mine", []byte("alice's")); err != nil {
		t.Fatal(err)
	}
	bobPaths := []string{"../bob", "/../bob", "../../store/bob", "/../bob/docs", "../bob/secret.txt", "/../bob/docs/plan.txt", "../bob/locked.txt"}

	t.Run("sftp", func(t *testing.T) {
		for _, p := range bobPaths {
			if fis, err := alice.ReadDir(p); err == nil {
				for _, fi := range fis {
					if fi.Name() == "secret.txt" || fi.Name() == "docs" || fi.Name() == "plan.txt" {
						t.Errorf("list %q shows bob's %s", p, fi.Name())
					}
				}
			}
			if got, err := sftpGet(alice, p); err == nil || bytes.Contains(got, secret) {
				t.Errorf("read %q: err=%v leaked=%v", p, err, bytes.Contains(got, secret))
			}
			if err := sftpPut(alice, p+"-planted", []byte("x")); err == nil {
				if _, err := os.Stat(filepath.Join(bobDir, filepath.Base(p)+"-planted")); err == nil {
					t.Errorf("write %q-planted landed in bob's home", p)
				}
			}
			_ = alice.Mkdir(p + "-dir")
			_ = alice.Remove(p)
			_ = alice.RemoveDirectory(p)
			_ = alice.Chmod(p, 0o777)
			_ = alice.Truncate(p, 0)
			_ = alice.Rename("mine", p+"-stolen")
			_ = alice.PosixRename(p, "taken")
			_ = alice.Link(p, "hardlink")
			_ = alice.Symlink(p, "symlink")
		}
		if got, err := sftpGet(alice, "taken"); err == nil && bytes.Contains(got, secret) {
			t.Errorf("rename moved bob's file into alice's home")
		}
		if got, err := sftpGet(alice, "hardlink"); err == nil && bytes.Contains(got, secret) {
			t.Errorf("hard link reached bob's file")
		}
	})

	t.Run("scp", func(t *testing.T) {
		NeedTool(t, "scp")
		for _, legacy := range []bool{false, true} {
			args := srv.SSHOpts(aliceKey)
			args = append(args, "-P", srv.SFTPPort)
			if legacy {
				args = append(args, "-O")
			}
			local := filepath.Join(t.TempDir(), "got")
			out, err := exec.Command("scp", append(args, "alice@"+srv.SFTPHost+":../bob/secret.txt", local)...).CombinedOutput()
			if b, _ := os.ReadFile(local); err == nil || bytes.Contains(b, secret) {
				t.Errorf("scp (legacy=%v) of ../bob/secret.txt: %v\n%s", legacy, err, out)
			}
			src := RandomFile(t, 100)
			_, _ = exec.Command("scp", append(args, src, "alice@"+srv.SFTPHost+":../bob/scp-planted")...).CombinedOutput()
			_, _ = exec.Command("scp", append(args, src, "alice@"+srv.SFTPHost+":/../../bob/docs/")...).CombinedOutput()
		}
	})

	dav := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	t.Run("webdav", func(t *testing.T) {
		davPaths := []string{"/../bob/secret.txt", "/%2e%2e/bob/secret.txt", "/../bob/", "/%2e%2e/bob/docs/plan.txt", "/../bob/locked.txt"}
		for _, p := range davPaths {
			for _, m := range []string{"GET", "PROPFIND", "DELETE", "MKCOL", "UNLOCK"} {
				code, body, _ := dav.do(m, p, nil, "Depth: 1", "Lock-Token: "+bobToken)
				if bytes.Contains(body, secret) || bytes.Contains(body, []byte("plan.txt")) || bytes.Contains(body, []byte("bob-owner-tag")) {
					t.Errorf("%s %s leaked bob's data: %d %.200s", m, p, code, body)
				}
			}
			dav.do("PUT", p, strings.NewReader("planted"))
			dav.do("PROPPATCH", p, strings.NewReader(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x:y xmlns:x="urn:x">z</x:y></D:prop></D:set></D:propertyupdate>`))
			dav.do("LOCK", p, strings.NewReader(lockInfo), "Depth: 0")
			for _, m := range []string{"MOVE", "COPY"} {
				dav.do(m, "/mine", nil, "Destination: "+srv.DAVURL+p+"-stolen", "Overwrite: T")
				code, _, _ := dav.do(m, p, nil, "Destination: "+srv.DAVURL+"/taken-dav", "Overwrite: T")
				if code/100 == 2 {
					if got, _ := dav.get("/taken-dav"); bytes.Contains(got, secret) {
						t.Errorf("%s %s brought bob's file into alice's home", m, p)
					}
				}
			}
		}

		// Locks are per home: bob's lock on /locked.txt does not lock
		// alice's /locked.txt, and alice cannot release or see it.
		if err := dav.put("/locked.txt", []byte("alice's own")); err != nil {
			t.Errorf("alice's PUT of her own /locked.txt while bob holds a lock on his: %v", err)
		}
		code, body, _ := dav.do("PROPFIND", "/locked.txt", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>`), "Depth: 0")
		if bytes.Contains(body, []byte("bob-owner-tag")) || bytes.Contains(body, []byte(strings.Trim(bobToken, "<>"))) {
			t.Errorf("alice sees bob's lock: %d %s", code, body)
		}
		dav.do("UNLOCK", "/locked.txt", nil, "Lock-Token: "+bobToken)
		if code, _, _ := bobDAV.do("PUT", "/locked.txt", strings.NewReader("no token")); code != http.StatusLocked {
			t.Errorf("bob's lock was released or bypassed by alice: bob's PUT without token = %d, want 423", code)
		}
	})

	// Nothing of bob's changed on disk (his lock lives in memory), and
	// nothing of his reached alice.
	if d := treeDiff(bobBefore, treeState(t, bobDir)); d != "" {
		t.Errorf("bob's home changed on disk:\n%s", d)
	}
	if code, _, _ := bobDAV.do("PUT", "/locked.txt", bytes.NewReader(secret), "If: ("+bobToken+")"); code/100 != 2 {
		t.Errorf("bob's PUT with his token: %d", code)
	}
	for _, n := range []string{"secret.txt", "docs/plan.txt", "locked.txt"} {
		if got, err := sftpGet(bob, n); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("bob's %s: %v", n, err)
		}
	}
	fis, err := alice.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range fis {
		if fi.Mode().IsRegular() {
			if got, err := sftpGet(alice, fi.Name()); err == nil && bytes.Contains(got, secret) {
				t.Errorf("alice's %s holds bob's secret", fi.Name())
			}
		}
	}
}
