package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRcloneSFTP: rclone sync local -> securefsd -> local with --checksum
// (rclone detects the unix shell, uses md5sum/sha1sum over SSH to verify
// each upload), then a second sync that transfers nothing.
func TestRcloneSFTP(t *testing.T) {
	NeedTool(t, "rclone")
	srv := StartServer(t)
	key := srv.AddUser(t, "rc", "ep-pw-1-e2e-pass")
	src := filepath.Join(t.TempDir(), "src")
	for name, n := range map[string]int64{"a.bin": 3<<20 + 1, "b": 1, "empty": 0, "d/e/f.bin": 70000, "d/g": 65536} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Rename(RandomFile(t, n), p); err != nil {
			t.Fatal(err)
		}
	}
	conf := t.TempDir()
	env := append(os.Environ(),
		"RCLONE_CONFIG="+filepath.Join(conf, "rclone.conf"),
		"RCLONE_CONFIG_X_TYPE=sftp",
		"RCLONE_CONFIG_X_HOST="+srv.SFTPHost,
		"RCLONE_CONFIG_X_PORT="+srv.SFTPPort,
		"RCLONE_CONFIG_X_USER=rc",
		"RCLONE_CONFIG_X_KEY_FILE="+key,
	)
	rclone := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("rclone", append(args, "-vv", "--sftp-set-modtime")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rclone %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := rclone("sync", src, "X:backup", "--checksum")
	if !strings.Contains(out, `Shell type "unix" detected`) || !strings.Contains(out, "md5 = ") {
		t.Errorf("rclone did not detect the shell or verify hashes:\n%s", out)
	}
	if n := strings.Count(out, "Copied (new)"); n != 5 {
		t.Errorf("first sync copied %d files, want 5:\n%s", n, out)
	}
	out = rclone("sync", src, "X:backup", "--checksum")
	if strings.Contains(out, "Copied") {
		t.Errorf("second sync transferred files:\n%s", out)
	}
	back := filepath.Join(t.TempDir(), "back")
	rclone("sync", "X:backup", back, "--checksum")
	for _, name := range []string{"a.bin", "b", "empty", "d/e/f.bin", "d/g"} {
		SameFile(t, filepath.Join(src, name), filepath.Join(back, name))
	}
	out = rclone("check", src, "X:backup", "--checksum")
	if !strings.Contains(out, "0 differences found") {
		t.Errorf("rclone check:\n%s", out)
	}
	rclone("about", "X:")
	AssertNoPlaintext(t, srv.DataDir, filepath.Join(src, "a.bin"))
}
