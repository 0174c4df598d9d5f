package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func (s *Server) scp(t testing.TB, user, key string, args ...string) (string, error) {
	t.Helper()
	NeedTool(t, "scp")
	full := append(s.SSHOpts(key), "-P", s.SFTPPort)
	for _, a := range args {
		if rest, ok := strings.CutPrefix(a, "R:"); ok {
			a = user + "@" + s.SFTPHost + ":" + rest
		}
		full = append(full, a)
	}
	out, err := exec.Command("scp", full...).CombinedOutput()
	return string(out), err
}

// TestSCP: upload and download with OpenSSH scp, SFTP mode (default) and
// the legacy protocol (-O), single files and recursive trees, with -p
// preserving modification times and modes.
func TestSCP(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "sam", "fnz-pw-1-e2e-pass")
	src := filepath.Join(t.TempDir(), "tree")
	mtime := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
	files := map[string]int64{"a.bin": 1<<20 + 1, "empty": 0, "sub/b.bin": 65536, "sub/deep/c.txt": 10}
	for name, n := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(RandomFile(t, n), p); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o640)
		os.Chtimes(p, mtime, mtime)
	}
	for _, mode := range []struct{ name, flag string }{{"sftp", ""}, {"legacy", "-O"}} {
		t.Run(mode.name, func(t *testing.T) {
			args := func(a ...string) []string {
				if mode.flag == "" {
					return a
				}
				return append([]string{mode.flag}, a...)
			}
			remote := "up-" + mode.name
			if out, err := srv.scp(t, "sam", key, args("-r", "-p", src, "R:"+remote)...); err != nil {
				t.Fatalf("recursive upload: %v\n%s", err, out)
			}
			down := filepath.Join(t.TempDir(), "down")
			if out, err := srv.scp(t, "sam", key, args("-r", "-p", "R:"+remote, down)...); err != nil {
				t.Fatalf("recursive download: %v\n%s", err, out)
			}
			for name := range files {
				SameFile(t, filepath.Join(src, name), filepath.Join(down, name))
				fi, err := os.Stat(filepath.Join(down, name))
				if err != nil {
					t.Fatal(err)
				}
				if !fi.ModTime().Equal(mtime) {
					t.Errorf("%s: mtime %v after a -p round trip, want %v", name, fi.ModTime(), mtime)
				}
				if fi.Mode().Perm() != 0o640 {
					t.Errorf("%s: mode %v after a -p round trip, want 0640", name, fi.Mode().Perm())
				}
			}
			// Single file, no -p, into an existing remote directory.
			one := filepath.Join(src, "a.bin")
			if out, err := srv.scp(t, "sam", key, args(one, "R:"+remote+"/")...); err != nil {
				t.Fatalf("upload into dir: %v\n%s", err, out)
			}
			got := filepath.Join(t.TempDir(), "one")
			if out, err := srv.scp(t, "sam", key, args("R:"+remote+"/a.bin", got)...); err != nil {
				t.Fatalf("download: %v\n%s", err, out)
			}
			SameFile(t, one, got)
			// Errors: missing source, directory without -r, escaping the home.
			for _, a := range [][]string{
				{"R:missing", got},
				{"R:" + remote, filepath.Join(t.TempDir(), "x")},
				{"R:../../../etc/passwd", filepath.Join(t.TempDir(), "p")},
			} {
				out, err := srv.scp(t, "sam", key, args(a...)...)
				if err == nil {
					t.Errorf("scp %v succeeded:\n%s", a, out)
				}
			}
			AssertNoPlaintext(t, srv.DataDir, one)
		})
	}
	// The legacy protocol's error text reaches the user.
	out, _ := srv.scp(t, "sam", key, "-O", "R:missing", filepath.Join(t.TempDir(), "m"))
	if !strings.Contains(out, "missing: No such file or directory") {
		t.Errorf("scp -O error output %q", out)
	}
	roKey := srv.AddUser(t, "ro", "eb-pw-1-e2e-pass", "--read-only")
	for _, flag := range []string{"-s", "-O"} {
		args := []string{filepath.Join(src, "a.bin"), "R:a.bin"}
		if flag == "-O" {
			args = append([]string{"-O"}, args...)
		}
		if out, err := srv.scp(t, "ro", roKey, args...); err == nil {
			t.Errorf("read-only scp %s upload succeeded:\n%s", flag, out)
		}
	}
}
