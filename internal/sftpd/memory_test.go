package sftpd

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/users"
)

// TestSessionMemoryReleased: buffers of finished requests are not kept for
// the session's life. pkg/sftp's WithRSAllocator kept one 256 KiB page per
// request ever in flight (16 MiB for a client keeping 64 in flight), so
// idle sessions after a transfer held it all; the heap after a GC with 8
// such sessions open must stay far below that.
func TestSessionMemoryReleased(t *testing.T) {
	const (
		sessions = 8
		size     = 4 << 20
	)
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	data := randomBytes(t, size)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range sessions {
		c := ts.sftpClient(u, sftp.MaxConcurrentRequestsPerFile(64), sftp.UseConcurrentWrites(true))
		name := fmt.Sprintf("/f%d", i)
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := c.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("download %s: %d bytes, %v", name, len(got), err)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB with %d idle sessions after transfers", grown>>10, sessions)
	if limit := int64(sessions) * 4 << 20; grown > limit {
		t.Errorf("heap grew by %d MiB with %d idle sessions (limit %d MiB): per-request buffers are kept", grown>>20, sessions, limit>>20)
	}
}
