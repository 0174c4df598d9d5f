//go:build linux

// Package rawsock reads and writes a TCP connection's non-blocking socket
// with raw system calls, waiting for readiness through Go's network poller
// (syscall.RawConn) as net.Conn does.
//
// Why: a system call made the usual way tells the scheduler it may block
// (entersyscall), and when the process was idle, which a server waiting for
// each request of a small-file transfer is thousands of times a second,
// that wakes the runtime's sysmon thread from its deep sleep: a futex wake
// and a thread that then polls every 20 µs on the CPU the client needs
// (docs/PERFORMANCE.md, "Small downloads: the cost is in the Go
// scheduler"). A read or write of a non-blocking socket never blocks: it
// copies what the kernel has or has room for and returns EAGAIN otherwise,
// so it needs no such notice. Deadlines are kept: the poller's waits honour
// them, as for net.Conn.
package rawsock

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Socket is the raw socket of one connection. Reads are for one goroutine
// at a time, writes too, as for a net.Conn's callers.
type Socket struct {
	rc syscall.RawConn
}

// New returns the raw socket of nc, or nil when nc is not a socket (a
// net.Pipe in tests, a wrapped connection) or cannot give one.
func New(nc net.Conn) *Socket {
	sc, ok := nc.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &Socket{rc: rc}
}

// Read reads into p what the socket has, waiting until it has
// something; io.EOF at the end of the stream.
func (s *Socket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // as net.Conn: nothing to read into is no error
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller, then again
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, waiting for room as needed.
func (s *Socket) Write(p []byte) (int, error) {
	done := 0
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done))
			switch e {
			case 0:
				done += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return done, err
	case errno != 0:
		return done, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
	}
	return done, nil
}
