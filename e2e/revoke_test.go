package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sftpProc is an OpenSSH sftp session held open: commands are fed one at
// a time on stdin (batch mode: sftp exits at the first failed command).
type sftpProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	exited chan error
}

func startSFTP(t *testing.T, srv *Server, user string, opts []string, env ...string) *sftpProc {
	t.Helper()
	NeedTool(t, "sftp")
	args := append(append([]string{}, opts...), "-P", srv.SFTPPort, "-b", "-", user+"@"+srv.SFTPHost)
	cmd := exec.Command("sftp", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	p := &sftpProc{t: t, cmd: cmd, in: in, out: bufio.NewReader(pr), exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait(); pr.Close() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return p
}

// run sends one command and reports whether it succeeded: sftp prints the
// working directory after it (the marker), or exits on failure.
func (p *sftpProc) run(command string) (string, bool) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.in, "%s\npwd\n", command); err != nil {
		return "stdin: " + err.Error(), false
	}
	var out strings.Builder
	for {
		line, err := p.out.ReadString('\n')
		out.WriteString(line)
		if strings.HasPrefix(line, "Remote working directory:") {
			return out.String(), true
		}
		if err != nil {
			select {
			case <-p.exited:
			case <-time.After(60 * time.Second):
				p.t.Fatalf("sftp neither answered nor exited: %s", out.String())
			}
			return out.String(), false
		}
	}
}

// TestRevocationReachesOpenSSHSessions (issue 14, item 2): an OpenSSH sftp
// session (or scp, or an exec command) opened before the administrator
// disables the user, deletes them, changes their password or removes their
// key through the running server (`securefsd user ...` over the admin
// socket) ends: the server closes the connection although it sends
// nothing (counted in the log), and the client's next upload fails and
// leaves no file. A change unrelated to how a connection logged in (a
// password change for a key login) leaves it working.
func TestRevocationReachesOpenSSHSessions(t *testing.T) {
	srv := StartServer(t)
	revoked := func(user string) int {
		return len(records(srv, attrs("event", "access_revoked", "user", user)))
	}
	src := RandomFile(t, 100<<10)
	askpass := filepath.Join(t.TempDir(), "askpass")

	cases := []struct {
		name     string
		password bool // log in by password (else by key)
		change   []string
		stdin    string
	}{
		{"disable", false, []string{"user", "disable", "%s"}, ""},
		{"delete", false, []string{"user", "del", "%s"}, ""},
		{"key del", false, []string{"user", "key", "del", "%s", "e2e"}, ""},
		{"passwd", true, []string{"user", "passwd", "%s", "--password-stdin"}, "another-password-1\n"},
	}
	for i, tc := range cases {
		user := fmt.Sprintf("rv%d", i)
		pw := fmt.Sprintf("pw-%d-e2e-secret", i)
		key := srv.AddUser(t, user, pw)
		opts := srv.SSHOpts(key)
		var env []string
		if tc.password {
			if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho \"$RV_PASSWORD\"\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			opts = []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
				"-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"}
			env = []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "RV_PASSWORD=" + pw, "DISPLAY=:0"}
		}
		p := startSFTP(t, srv, user, opts, env...)
		if out, ok := p.run("put " + src + " before"); !ok {
			t.Fatalf("%s: upload before the change: %s", tc.name, out)
		}
		// A key login of the same user next to the password login.
		var other *sftpProc
		if tc.password {
			other = startSFTP(t, srv, user, srv.SSHOpts(key))
			if out, ok := other.run("put " + src + " other-before"); !ok {
				t.Fatalf("%s: key login: %s", tc.name, out)
			}
		}
		args := make([]string, len(tc.change))
		for j, a := range tc.change {
			args[j] = strings.ReplaceAll(a, "%s", user)
		}
		if _, err := srv.CLIInput(t, tc.stdin, args...); err != nil {
			t.Fatal(err)
		}
		// The server ends the idle session by itself.
		waitFor(t, 60*time.Second, tc.name+": the server to close the session", func() bool { return revoked(user) >= 1 })
		if out, ok := p.run("put " + src + " after"); ok {
			t.Errorf("%s: an upload after the change succeeded: %s", tc.name, out)
		}
		if _, err := os.Stat(storePath(srv, user, "after")); err == nil {
			t.Errorf("%s: the upload after the change left a file", tc.name)
		}
		if other != nil {
			if out, ok := other.run("put " + src + " other-after"); !ok {
				t.Errorf("%s: the key login ended with the password change: %s", tc.name, out)
			}
			if n := revoked(user); n != 1 {
				t.Errorf("%s: %d connections revoked, want 1 (the password login)", tc.name, n)
			}
		}
	}
}

// TestRevocationReachesSCPAndExec: a legacy-protocol scp upload in
// progress and an exec command (md5sum reading stdin) of a user the
// administrator disables both end; the upload is not published.
func TestRevocationReachesSCPAndExec(t *testing.T) {
	NeedTool(t, "scp")
	NeedTool(t, "ssh")
	srv := StartServer(t)
	key := srv.AddUser(t, "rvscp", "eifpc-pw-1-e2e-pass")
	big := RandomFile(t, 64<<20)

	// scp -O at 4 Mbit/s: 64 MiB would take over two minutes.
	scpArgs := append(srv.SSHOpts(key), "-O", "-l", "4000", "-P", srv.SFTPPort, big, "rvscp@"+srv.SFTPHost+":up")
	scp := exec.Command("scp", scpArgs...)
	scp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	scpOut := &lockedBuffer{}
	scp.Stdout, scp.Stderr = scpOut, scpOut
	// md5sum of a stdin that stays open.
	sshArgs := append(srv.SSHOpts(key), "-p", srv.SFTPPort, "rvscp@"+srv.SFTPHost, "md5sum")
	md5 := exec.Command("ssh", sshArgs...)
	md5.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := md5.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*exec.Cmd{scp, md5} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		pid := c.Process.Pid
		t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	}
	defer stdin.Close()
	if _, err := io.WriteString(stdin, "some bytes"); err != nil {
		t.Fatal(err)
	}
	exited := func(c *exec.Cmd) chan error {
		ch := make(chan error, 1)
		go func() { ch <- c.Wait() }()
		return ch
	}
	scpDone, md5Done := exited(scp), exited(md5)
	// Both sessions are up and the upload's data is arriving.
	waitFor(t, 60*time.Second, "the scp upload to be under way", func() bool {
		ents, _ := os.ReadDir(storePath(srv, "rvscp", ".securefsd-tmp"))
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Size() > 1<<20 {
				return true
			}
		}
		return false
	})
	waitFor(t, 60*time.Second, "two sessions", func() bool {
		return len(records(srv, attrs("event", "session_start", "user", "rvscp"))) >= 2
	})
	if _, err := srv.CLI(t, "user", "disable", "rvscp"); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan error{"scp": scpDone, "ssh md5sum": md5Done} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s exited 0 after the user was disabled", name)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s still runs 60s after the user was disabled", name)
		}
	}
	if _, err := os.Stat(storePath(srv, "rvscp", "up")); err == nil {
		t.Errorf("the interrupted scp upload was published")
	}
	t.Logf("scp said: %s", strings.TrimSpace(scpOut.String()))
}

// lockedBuffer collects a process's output written from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
