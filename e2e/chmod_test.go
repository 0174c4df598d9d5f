package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientChmodKeepsServerAccess: the server runs as a non-root user
// (uid 65534, as under the systemd unit); a client's chmod 000 on a
// directory and on files used to make `key rotate` and `verify` fail for
// the whole store (and verify report a healthy file as damaged). Client
// modes are metadata now: both succeed, the client still sees its modes,
// and the disk keeps the owner's access (issue 14, item 7).
func TestClientChmodKeepsServerAccess(t *testing.T) {
	NeedTool(t, "setpriv")
	const uid = "65534"
	base, err := os.MkdirTemp("", "securefsd-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", uid+":"+uid, base).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	// The unprivileged server must be able to run the test binary.
	if err := os.Chmod(filepath.Dir(binPath), 0o711); err != nil {
		t.Fatal(err)
	}
	srv := StartServer(t, WithDataDir(filepath.Join(base, "data")),
		WithWrapper("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups"))
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	for _, d := range []string{"/closed", "/closed/sub"} {
		if err := c.Mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"/closed/f", "/closed/sub/g", "/ro", "/none"} {
		if err := sftpPut(c, f, randBytes(5000)); err != nil {
			t.Fatal(err)
		}
	}
	for p, mode := range map[string]os.FileMode{"/closed/sub": 0, "/closed": 0, "/ro": 0o444, "/none": 0} {
		if err := c.Chmod(p, mode); err != nil {
			t.Fatalf("chmod %o %s: %v", mode, p, err)
		}
	}

	// An in-place write by the unprivileged server clears the setuid bit
	// that records a missing owner read: the client's mode survives it.
	wf, err := c.OpenFile("/none", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.WriteAt([]byte("in place"), 10); err != nil {
		t.Fatal(err)
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := srv.CLI(t, "key", "rotate")
	if err != nil {
		t.Fatalf("key rotate after a client chmod 000: %v\n%s", err, out)
	}
	out, err = srv.CLI(t, "verify")
	if err != nil || !strings.Contains(out, " 0 damaged") {
		t.Fatalf("verify after a client chmod 000: %v\n%s", err, out)
	}

	for p, want := range map[string]os.FileMode{"/closed": 0, "/closed/sub": 0, "/ro": 0o444, "/none": 0} {
		fi, err := c.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("client mode of %s: %v %v, want %v", p, fi.Mode(), err, want)
		}
		dfi, err := os.Stat(storePath(srv, "alice", p))
		if err != nil {
			t.Fatal(err)
		}
		need := os.FileMode(0o600)
		if dfi.IsDir() {
			need = 0o700
		}
		if dfi.Mode().Perm()&need != need {
			t.Errorf("on-disk mode of %s: %v, the server lost its access", p, dfi.Mode())
		}
	}
	// The client's files stay usable through the server.
	if _, err := sftpGet(c, "/closed/sub/g"); err != nil {
		t.Fatalf("download from a chmod 000 directory: %v", err)
	}
}

// TestSweepsGoPastAFailingFile: a file the sweeps cannot handle (not an
// envelope file, planted in a home) no longer stops them: `key rotate`
// re-wraps everything else, names the file and exits non-zero (keeping the
// old key), `verify` lists it and exits 1; once it is gone, rotation
// completes (issue 14, item 7).
func TestSweepsGoPastAFailingFile(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	data := randBytes(3000)
	for _, f := range []string{"/a", "/b", "/c"} {
		if err := sftpPut(c, f, data); err != nil {
			t.Fatal(err)
		}
	}
	bad := storePath(srv, "alice", "planted")
	if err := os.WriteFile(bad, []byte("not an envelope file"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := srv.CLI(t, "key", "rotate")
	if err == nil || !strings.Contains(err.Error()+out, "alice/planted") {
		t.Fatalf("key rotate with a failing file: %v\n%s", err, out)
	}
	out, err = srv.CLI(t, "verify")
	if err == nil || !strings.Contains(out, "alice/planted") || !strings.Contains(out, "1 damaged") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, f := range []string{"/a", "/b", "/c"} {
		if got, err := sftpGet(c, f); err != nil || string(got) != string(data) {
			t.Fatalf("%s after the partial rotation: %v", f, err)
		}
	}
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI(t, "key", "rotate"); err != nil {
		t.Fatalf("key rotate after the file is gone: %v\n%s", err, out)
	}
	if out, err := srv.CLI(t, "verify"); err != nil || !strings.Contains(out, " 0 damaged") {
		t.Fatalf("verify after the rotation: %v\n%s", err, out)
	}
}
