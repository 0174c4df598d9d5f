package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSFTPKilledClientSessionEnds (issue 14, item 14): OpenSSH sftp with a
// large request size and many requests in flight (`-R 64 -B 261120`) is
// killed with SIGKILL in the middle of a download, 20 times. Its ssh
// process lives on: it sends EOF on the channel but no longer takes the
// server's replies. The server's session must end anyway (before, the
// fast path's reply sender waited for SSH window forever and the packet
// reader behind it never read the EOF, so every killed client left a
// session behind until the per-user limit refused the user).
//
// With --max-sessions-per-user 4 the user would be refused after the
// fourth orphan; the test counts "session end" lines (one per killed
// client, each awaited with a generous bound) and logs in at the end.
func TestSFTPKilledClientSessionEnds(t *testing.T) {
	NeedTool(t, "sftp")
	srv := StartServer(t, WithServeArgs("--max-sessions-per-user", "4"))
	key := srv.AddUser(t, "kilo", "xvyb-pw-1-e2e-pass")
	big := RandomFile(t, 96<<20)
	if out, err := srv.SFTPBatch(t, "kilo", key, "put "+big+" big\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	ended := func() int { return len(records(srv, attrs("event", "session_end", "user", "kilo"))) }
	base := ended()

	const rounds = 20
	dir := t.TempDir()
	killedMid := 0
	for i := range rounds {
		local := filepath.Join(dir, fmt.Sprintf("got-%d", i))
		batch := filepath.Join(dir, "batch")
		if err := os.WriteFile(batch, []byte("get big "+local+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append(srv.SSHOpts(key), "-P", srv.SFTPPort, "-R", "64", "-B", "261120", "-b", batch, "kilo@"+srv.SFTPHost)
		cmd := exec.Command("sftp", args...)
		// Its own process group, so that cleanup can end the orphaned ssh
		// the test leaves behind on purpose.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pgid := cmd.Process.Pid
		t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		// Kill sftp (only sftp, not its ssh) once the download is under way.
		var size int64
		waitFor(t, 60*time.Second, "the download to start", func() bool {
			select {
			case err := <-exited:
				t.Fatalf("round %d: sftp ended before it was killed: %v", i, err)
			default:
			}
			if fi, err := os.Stat(local); err == nil {
				size = fi.Size()
			}
			return size >= 4<<20
		})
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		if size < 96<<20 {
			killedMid++
		}
		waitFor(t, 60*time.Second, fmt.Sprintf("round %d: the killed client's session to end", i), func() bool {
			return ended() >= base+i+1
		})
	}
	t.Logf("%d of %d clients were killed mid-download; every session ended", killedMid, rounds)
	if killedMid < rounds/2 {
		t.Errorf("only %d of %d downloads were still running when killed: the test did not attack", killedMid, rounds)
	}
	// The user is not locked out by leftover sessions.
	if out, err := srv.SFTPBatch(t, "kilo", key, "ls -l\n"); err != nil || !strings.Contains(out, "big") {
		t.Fatalf("login after the kills: %v\n%s", err, out)
	}
}
