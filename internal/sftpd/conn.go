package sftpd

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securefsd/securefsd/internal/rawsock"
)

// sshConn wraps a client's TCP connection for x/crypto/ssh:
//
//   - Deadlines: first the login grace (fixed), then the idle timeout,
//     moved forward on traffic at most every idle/8, capped at once a
//     second (so the hot path costs a clock read and an atomic load).
//   - Coalesced writes: x/crypto writes every SSH packet through a 4 KiB
//     bufio.Writer, so one 32 KiB SFTP read reply costs about four write
//     syscalls (header packet, buffer fill, rest, MAC). Write here only
//     appends to a buffer; one goroutine writes whatever has accumulated in
//     a single syscall, so replies produced while the previous write is in
//     the kernel go out together. Order is kept; a write error is sticky
//     and returned by later Writes; Write blocks while maxPendingWrite bytes
//     are waiting (backpressure), so a client that stops reading is still
//     caught by the deadline.
//
// Close flushes what is pending (for at most closeFlushTimeout) before
// closing the socket, so the last messages (exit-status, channel close,
// disconnect) are not lost.
type sshConn struct {
	net.Conn
	sock   io.ReadWriter // the socket's reads and writes: rawsock's where it has one (it says why), else Conn
	idle   atomic.Int64  // nanoseconds; 0 while logging in (fixed deadline)
	last   atomic.Int64  // unix nanoseconds of the last deadline move
	closed atomic.Bool

	// Read side, used by x/crypto's single reader goroutine only.
	rbuf       []byte
	rpos, rend int
	rerr       error

	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte // pending bytes, appended by Write
	spare   []byte // the other buffer, reused
	writing bool   // the writer goroutine is in a syscall
	err     error  // first write error, sticky
	done    bool   // Close was called
	exited  chan struct{}
}

const (
	readBufSize       = 64 << 10
	maxPendingWrite   = 256 << 10
	closeFlushTimeout = 5 * time.Second
)

func newSSHConn(nc net.Conn, grace time.Duration) *sshConn {
	c := &sshConn{Conn: nc, sock: nc, exited: make(chan struct{})}
	if raw := rawsock.New(nc); raw != nil {
		c.sock = raw
	}
	c.cond.L = &c.mu
	nc.SetDeadline(time.Now().Add(grace))
	go c.writeLoop()
	return c
}

// setIdle switches from the login grace to the idle timeout.
func (c *sshConn) setIdle(d time.Duration) {
	now := time.Now()
	c.idle.Store(int64(d))
	c.last.Store(now.UnixNano())
	c.Conn.SetDeadline(now.Add(d))
}

func (c *sshConn) bump() {
	idle := c.idle.Load()
	if idle == 0 || c.closed.Load() {
		return
	}
	now := time.Now().UnixNano()
	last := c.last.Load()
	if !bumpDue(now, last, idle) || !c.last.CompareAndSwap(last, now) {
		return
	}
	c.Conn.SetDeadline(time.Unix(0, now+idle))
}

// Read serves from a 64 KiB buffer: x/crypto reads through a 4 KiB
// bufio.Reader, which would cost two or three syscalls per 32 KiB packet.
// bumpDue reports whether the deadline should move (times in
// nanoseconds): at most every idle/8, capped at once a second, so the idle
// time granted after the last traffic stays at least 7/8 of idle.
func bumpDue(now, last, idle int64) bool {
	return now-last >= min(idle/8, int64(time.Second))
}

func (c *sshConn) Read(p []byte) (int, error) {
	if c.rpos == c.rend {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.rbuf == nil {
			c.rbuf = make([]byte, readBufSize)
		}
		n, err := c.sock.Read(c.rbuf)
		c.rpos, c.rend, c.rerr = 0, n, err
		if n == 0 {
			if err == nil {
				return 0, nil
			}
			return 0, err
		}
		c.bump()
	}
	n := copy(p, c.rbuf[c.rpos:c.rend])
	c.rpos += n
	return n, nil
}

// Write queues p; it never retains p.
func (c *sshConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.done && len(c.buf) > 0 && len(c.buf)+len(p) > maxPendingWrite {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.done:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.cond.Broadcast()
	c.mu.Unlock()
	c.bump()
	return len(p), nil
}

func (c *sshConn) writeLoop() {
	defer close(c.exited)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.buf) == 0 && !c.done && c.err == nil {
			c.cond.Wait()
		}
		if c.err != nil || len(c.buf) == 0 {
			return // failed, or closed and drained
		}
		out := c.buf
		c.buf = c.spare[:0]
		c.writing = true
		c.mu.Unlock()
		_, err := c.sock.Write(out)
		c.mu.Lock()
		c.writing = false
		if cap(out) <= 2*maxPendingWrite {
			c.spare = out[:0]
		} else {
			c.spare = nil // do not keep an unusually large buffer
		}
		if err != nil && c.err == nil {
			c.err = err
		}
		c.cond.Broadcast() // room for Write, progress for Close
	}
}

// Close flushes pending bytes (bounded by closeFlushTimeout) and closes the
// socket. Safe to call more than once and concurrently with Write.
func (c *sshConn) Close() error {
	if c.closed.Swap(true) {
		<-c.exited
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	c.mu.Lock()
	c.done = true
	c.cond.Broadcast()
	c.mu.Unlock()
	<-c.exited // drained, or the write failed (deadline, closed socket)
	return c.Conn.Close()
}
