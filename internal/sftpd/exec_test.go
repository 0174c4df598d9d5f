package sftpd

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/users"
)

func TestExecCommands(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	c := ts.sftpClient(u)
	data := []byte("some content for hashing")
	f, err := c.Create("/dir with space/f(1).txt")
	if err == nil {
		t.Fatal("created a file in a missing directory")
	}
	c.Mkdir("/dir with space")
	f, err = c.Create("/dir with space/f(1).txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	md := md5.Sum(data)
	sh := sha256.Sum256(data)

	tests := []struct {
		name    string
		command string
		stdin   string
		out     string
		errPart string
		code    int
	}{
		{"rclone shell probe", "echo ${ShellId}%ComSpec%", "", "%ComSpec%\n", "", 0},
		{"md5 probe", "md5sum", "", "d41d8cd98f00b204e9800998ecf8427e  -\n", "", 0},
		{"sha1 probe", "sha1sum", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n", "", 0},
		{"md5 stdin", "md5sum", "abc", "900150983cd24fb0d6963f7d28e17f72  -\n", "", 0},
		{"md5 escaped path", `md5sum dir\ with\ space/f\(1\).txt`, "", hex.EncodeToString(md[:]) + "  dir with space/f(1).txt\n", "", 0},
		{"sha256 quoted path", `sha256sum "/dir with space/f(1).txt"`, "", hex.EncodeToString(sh[:]) + "  /dir with space/f(1).txt\n", "", 0},
		{"md5 missing", "md5sum nope", "", "", "md5sum: nope: No such file or directory", 1},
		{"md5 escape attempt", "md5sum ../../../../etc/passwd", "", "", "No such file or directory", 1},
		{"other command", "id", "", "", "command not supported", 127},
		{"injection", "md5sum x; id", "", "", "command not supported", 127},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := ts.dial(u).NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			var so, se strings.Builder
			sess.Stdout, sess.Stderr = &so, &se
			sess.Stdin = strings.NewReader(tt.stdin)
			err = sess.Run(tt.command)
			code := 0
			if err != nil {
				var ee interface{ ExitStatus() int }
				if e, ok := err.(interface{ ExitStatus() int }); ok {
					ee = e
					code = ee.ExitStatus()
				} else {
					t.Fatalf("run: %v", err)
				}
			}
			if code != tt.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tt.code, se.String())
			}
			if so.String() != tt.out {
				t.Errorf("stdout %q, want %q", so.String(), tt.out)
			}
			if !strings.Contains(se.String(), tt.errPart) {
				t.Errorf("stderr %q lacks %q", se.String(), tt.errPart)
			}
		})
	}

	t.Run("openssh shell refused", func(t *testing.T) {
		_, se, code := ts.sshRun(u, strings.NewReader(""))
		if code == 0 || !strings.Contains(se, "no shell") {
			t.Errorf("shell: code %d stderr %q", code, se)
		}
	})
	t.Run("openssh exec refused", func(t *testing.T) {
		_, se, code := ts.sshRun(u, nil, "cat", "/etc/passwd")
		if code == 0 || !strings.Contains(se, "not supported") {
			t.Errorf("exec: code %d stderr %q", code, se)
		}
	})
	_ = fmt.Sprint
}
