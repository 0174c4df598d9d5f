package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// rcloneDAV runs rclone with an on-the-fly :webdav: remote (owncloud vendor)
// for user; it returns combined output.
func rcloneDAV(t *testing.T, srv *Server, user, pass string, args ...string) (string, error) {
	t.Helper()
	obscured, err := exec.Command("rclone", "obscure", pass).Output()
	if err != nil {
		t.Fatalf("rclone obscure: %v", err)
	}
	conf := filepath.Join(t.TempDir(), "rclone.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"--config", conf,
		"--webdav-url", srv.DAVURL + "/",
		"--webdav-vendor", "owncloud",
		"--webdav-user", user,
		"--webdav-pass", strings.TrimSpace(string(obscured)),
		"--no-check-certificate",
		"--contimeout", "10s", "--timeout", "60s", "--retries", "1",
	}
	out, err := exec.Command("rclone", append(base, args...)...).CombinedOutput()
	return string(out), err
}

// TestDAVRclone: rclone (owncloud vendor) syncs local -> WebDAV -> local
// with mtimes and SHA1/MD5 checksums; a second sync transfers nothing.
func TestDAVRclone(t *testing.T) {
	NeedTool(t, "rclone")
	srv := StartServer(t)
	srv.AddUser(t, "rc", "ep-pw-e2e-pass")

	src := t.TempDir()
	files := map[string]int64{"a.txt": 0, "b.bin": 1, "c.bin": 65537, "sub/d.bin": 3 << 20, "sub/deeper/e.bin": 100_000, "space name é.txt": 42}
	base := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	i := 0
	for name, n := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(RandomFile(t, n), p); err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		i++
	}

	rc := func(args ...string) string {
		t.Helper()
		out, err := rcloneDAV(t, srv, "rc", "ep-pw-e2e-pass", args...)
		if err != nil {
			t.Fatalf("rclone %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := rc("sync", src, ":webdav:backup", "-v")
	if n := strings.Count(out, ": Copied (new)"); n != len(files) {
		t.Fatalf("first sync copied %d files, want %d:\n%s", n, len(files), out)
	}

	// check compares sizes and hashes (SHA1/MD5 from oc:checksums).
	out = rc("check", src, ":webdav:backup")
	if !strings.Contains(out, "0 differences found") || strings.Contains(out, "hashes could not be checked") {
		t.Fatalf("rclone check:\n%s", out)
	}
	for _, sum := range []string{"md5sum", "sha1sum"} {
		local := rc(sum, src)
		remote := rc(sum, ":webdav:backup")
		if sortLines(local) != sortLines(remote) {
			t.Fatalf("%s differ:\nlocal:\n%s\nremote:\n%s", sum, local, remote)
		}
	}

	// Mtimes were kept (X-OC-Mtime), so a second sync transfers nothing.
	out = rc("sync", src, ":webdav:backup", "-v")
	if strings.Contains(out, "Copied") || strings.Contains(out, "Updated modification time") {
		t.Fatalf("second sync transferred something:\n%s", out)
	}
	lsLocal, lsRemote := rc("lsl", src), rc("lsl", ":webdav:backup")
	if trimNanos(lsLocal) != trimNanos(lsRemote) {
		t.Fatalf("sizes/mtimes differ:\nlocal:\n%s\nremote:\n%s", lsLocal, lsRemote)
	}

	// One changed file: only it moves.
	changed := filepath.Join(src, "sub", "d.bin")
	if err := os.WriteFile(changed, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = rc("sync", src, ":webdav:backup", "-v")
	if strings.Count(out, "Copied") != 1 || !strings.Contains(out, "sub/d.bin") {
		t.Fatalf("sync after one change:\n%s", out)
	}

	// And back down.
	dst := t.TempDir()
	rc("sync", ":webdav:backup", dst)
	for name := range files {
		a, b := filepath.Join(src, filepath.FromSlash(name)), filepath.Join(dst, filepath.FromSlash(name))
		SameFile(t, a, b)
		fa, _ := os.Stat(a)
		fb, _ := os.Stat(b)
		if fa.ModTime().Unix() != fb.ModTime().Unix() {
			t.Errorf("%s: mtime %v after the round trip, want %v", name, fb.ModTime(), fa.ModTime())
		}
	}
	if out := rc("check", src, dst); !strings.Contains(out, "0 differences found") {
		t.Fatalf("round trip differs:\n%s", out)
	}
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// trimNanos drops the fractional seconds of `rclone lsl` lines
// ("size date time.nnnnnnnnn name") and sorts them.
func trimNanos(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		if i := strings.IndexByte(f[2], '.'); i >= 0 {
			f[2] = f[2][:i]
		}
		out = append(out, fmt.Sprint(f))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
