package davd

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"

	"github.com/securefsd/securefsd/internal/httpx"
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

	wmu  sync.Mutex
	wbuf *[]byte // non-nil while corked
	wn   int
	werr error
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

// Writes: TLS sends each record (at most 16 KiB of data) with its own
// write(2), so a 1 GiB download costs some 65,000 system calls. While a
// connection is corked, its writes collect in a pooled readAheadSize
// buffer that goes out with one write(2) when full and at uncork. Only a
// handler goroutine that writes a large response body on an HTTP/1.x
// connection corks (aheadReader.writeTo, through logWriter): it uncorks
// after each block it writes, so nothing is ever held back once the
// handler's own write returned. Writes are serialized by wmu (tls.Conn
// serializes its writes too).

// Write sends p, or buffers it while the connection is corked.
func (c *readAheadConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wbuf == nil {
		return c.Conn.Write(p)
	}
	if c.werr != nil {
		return 0, c.werr
	}
	if c.wn+len(p) > len(*c.wbuf) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= len(*c.wbuf) {
			return c.Conn.Write(p)
		}
	}
	c.wn += copy((*c.wbuf)[c.wn:], p)
	return len(p), nil
}

func (c *readAheadConn) flushLocked() error {
	if c.wn == 0 {
		return nil
	}
	_, err := c.Conn.Write((*c.wbuf)[:c.wn])
	c.wn = 0
	if err != nil {
		// Sticky, like a socket error: the bytes of records TLS thinks it
		// sent are lost, so the connection must not carry on.
		c.werr = err
	}
	return err
}

// Cork starts buffering writes (httpx.Corker).
func (c *readAheadConn) Cork() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wbuf == nil {
		c.wbuf = readAheadBufs.Get().(*[]byte)
		c.wn = 0
	}
}

// Uncork sends what the buffer holds and stops buffering; it returns the
// error of any buffered write that failed.
func (c *readAheadConn) Uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wbuf == nil {
		return c.werr
	}
	err := c.flushLocked()
	readAheadBufs.Put(c.wbuf)
	c.wbuf = nil
	if err == nil {
		err = c.werr
	}
	return err
}

// corker is what a handler corks: the connection under the request's TLS
// (set by Serve's ConnContext; absent for plain HTTP, which writes whole
// blocks already).
type corker = httpx.Corker

type corkerKey struct{}

// connContext remembers the readAheadConn under a TLS connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		if rc, ok := tc.NetConn().(*readAheadConn); ok {
			return context.WithValue(ctx, corkerKey{}, corker(rc))
		}
	}
	return ctx
}

// corkerFor returns the connection of an HTTP/1.x request to cork, or nil.
// HTTP/2 writes frames from the server's own goroutines: never corked.
func corkerFor(r *http.Request) corker {
	if r.ProtoMajor != 1 {
		return nil
	}
	c, _ := r.Context().Value(corkerKey{}).(corker)
	return c
}
