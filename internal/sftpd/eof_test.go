package sftpd

import (
	"testing"

	"github.com/securefsd/securefsd/internal/users"
)

// TestEOFWhileRepliesWait (issue 14, item 14): a client keeps 64 READ
// requests of 64 KiB in flight, never reads a reply (so the server's
// replies soon wait for SSH window), then sends EOF, as the ssh process of
// a killed sftp does. The session must end: the server closes the channel
// although replies are pending. Before, the packet reader sat behind the
// blocked reply sender and never saw the EOF.
func TestEOFWhileRepliesWait(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	f, err := ts.home("alice").Create("/big")
	must(t, err)
	_, err = f.Write(randomBytes(t, 8<<20))
	must(t, err)
	must(t, f.Close())

	for round := range 5 {
		sess, err := ts.dial(u).NewSession()
		must(t, err)
		stdin, err := sess.StdinPipe()
		must(t, err)
		stdout, err := sess.StdoutPipe()
		must(t, err)
		must(t, sess.RequestSubsystem("sftp"))
		r := &rawSFTP{t: t, stdin: stdin, stdout: stdout}
		r.send(1, u32(3))
		if typ, _ := r.recv(); typ != 2 {
			t.Fatal("no VERSION")
		}
		h := r.open(1, "/big", pfRead)
		for i := range 64 {
			r.send(fxpRead, u32(uint32(10+i)), str(h), u64(uint64(i)*64<<10), u32(64<<10))
		}
		// Replies: 4 MiB, beyond the client's 2 MiB window. Never read.
		must(t, stdin.Close()) // EOF
		// The server ends the SFTP session (logged "sftp ended").
		waitLogCount(t, ts, `msg="sftp ended"`, round+1)
		sess.Close()
	}
}
