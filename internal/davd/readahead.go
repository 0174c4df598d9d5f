package davd

import (
	"net"
	"sync"
)

// TLS reads the network one record (at most 16 KiB) per read(2), so a
// 1 GiB upload costs some 65,000 system calls. readAheadConn lets one read(2)
// take up to readAheadSize of what the socket holds whenever TLS asks for a
// record's worth, and serves the following reads from memory. The buffer is
// pooled and held only while it has unread bytes, so idle connections (Finder
// keeps several open) cost nothing extra.

const (
	readAheadSize = 256 << 10
	// readAheadMin: smaller reads (handshake, record headers) go straight
	// to the socket.
	readAheadMin = 4 << 10
)

var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

type readAheadListener struct{ net.Listener }

func (l readAheadListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readAheadConn{Conn: c}, nil
}

// readAheadConn is a net.Conn whose reads may be served from a buffer
// filled by an earlier, larger read. Like any net.Conn reader it is used by
// one goroutine at a time (tls.Conn serializes its reads); deadlines apply
// to the socket reads only, buffered bytes are returned at once.
type readAheadConn struct {
	net.Conn
	buf  *[]byte // nil while empty
	r, w int
}

func (c *readAheadConn) Read(p []byte) (int, error) {
	if c.buf != nil {
		n := copy(p, (*c.buf)[c.r:c.w])
		c.r += n
		if c.r == c.w {
			readAheadBufs.Put(c.buf)
			c.buf = nil
		}
		return n, nil
	}
	if len(p) < readAheadMin || len(p) >= readAheadSize {
		return c.Conn.Read(p)
	}
	bp := readAheadBufs.Get().(*[]byte)
	m, err := c.Conn.Read(*bp)
	n := copy(p, (*bp)[:m])
	if n < m {
		// The rest is returned first; a socket error (sticky: EOF, a
		// deadline, a reset) comes again with the next socket read.
		c.buf, c.r, c.w = bp, n, m
		return n, nil
	}
	readAheadBufs.Put(bp)
	return n, err
}
