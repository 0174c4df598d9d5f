package httpx

import (
	"errors"
	"io"
	"io/fs"
	"sync"
)

// A GET of a whole large file decrypts ahead: while the handler's goroutine
// writes one buffer to the connection (TLS encryption, socket writes),
// another goroutine reads and decrypts the next ones, so the two use both
// cores. WebDAV GETs (davd) and share-link downloads (webui) use it; Range
// requests and small files read in place: read-ahead there would decrypt
// bytes nobody asked for.

const (
	// AheadBufSize is one read-ahead buffer: what the store decrypts in
	// one parallel batch (8 chunks of 64 KiB, docs/FORMAT.md).
	AheadBufSize = 512 << 10
	aheadDepth   = 2 // buffers filled ahead of the one being sent
	// AheadMin is the smallest file worth a read-ahead.
	AheadMin = 4 * AheadBufSize
)

var aheadBufs = sync.Pool{New: func() any { b := make([]byte, AheadBufSize); return &b }}

// File is what an AheadReader reads: a file read at offsets, whose size
// Stat reports (*vfs.File; httpx imports nothing of ours).
type File interface {
	io.ReaderAt
	Stat() (fs.FileInfo, error)
}

// Corker batches a connection's writes: Cork starts buffering, Uncork
// sends what the buffer holds and returns the error of any buffered write
// that failed.
type Corker interface {
	Cork()
	Uncork() error
}

// Sender is a source that writes itself to a response (up to limit bytes,
// all if limit < 0), corking the connection c if not nil. A ResponseWriter's
// ReadFrom uses it to send a body with no copy through io.Copy's buffer.
type Sender interface {
	Send(w io.Writer, limit int64, c Corker) (int64, error)
}

type aheadBlock struct {
	bp  *[]byte
	n   int
	err error // after the n bytes
}

// AheadReader reads f sequentially from the offset of its last Seek, with
// a goroutine reading up to aheadDepth buffers ahead. It is used by one
// goroutine (ServeContent's); Seek and Stop stop the read-ahead and wait
// for it, so f is only read by one goroutine at a time and never after
// Stop (the caller closes f after Stop).
type AheadReader struct {
	f   File
	off int64 // offset of the next byte Read returns
	err error // first read error

	blocks chan aheadBlock // nil while no read-ahead runs
	stop   chan struct{}
	done   chan struct{}
	cur    aheadBlock
	pos    int // read position in cur
}

// NewAheadReader returns a reader of f from offset 0; the read-ahead
// starts with the first Read or Send.
func NewAheadReader(f File) *AheadReader { return &AheadReader{f: f} }

// Err returns the first read error other than io.EOF (ServeContent
// swallows it; the caller logs it).
func (a *AheadReader) Err() error { return a.err }

func (a *AheadReader) start() {
	a.blocks = make(chan aheadBlock, aheadDepth-1)
	a.stop = make(chan struct{})
	a.done = make(chan struct{})
	go a.run(a.off)
}

func (a *AheadReader) run(off int64) {
	defer close(a.done)
	defer close(a.blocks)
	for {
		bp := aheadBufs.Get().(*[]byte)
		n, err := a.f.ReadAt(*bp, off)
		if err == nil && n < len(*bp) {
			err = io.EOF
		}
		off += int64(n)
		select {
		case a.blocks <- aheadBlock{bp: bp, n: n, err: err}:
		case <-a.stop:
			aheadBufs.Put(bp)
			return
		}
		if err != nil {
			return
		}
	}
}

// halt stops the read-ahead (if any) and releases its buffers.
func (a *AheadReader) halt() {
	if a.blocks == nil {
		return
	}
	close(a.stop)
	<-a.done
	for b := range a.blocks {
		aheadBufs.Put(b.bp)
	}
	a.release()
	a.blocks = nil
}

func (a *AheadReader) release() {
	if a.cur.bp != nil {
		aheadBufs.Put(a.cur.bp)
	}
	a.cur, a.pos = aheadBlock{}, 0
}

// next makes cur a block with unread bytes, or returns the error that
// ends the stream.
func (a *AheadReader) next() error {
	for a.cur.bp == nil || a.pos == a.cur.n {
		if a.cur.bp != nil {
			err := a.cur.err
			a.release()
			if err != nil {
				// Sticky: later reads get it again without reading on.
				a.cur = aheadBlock{err: err}
				return err
			}
		} else if a.cur.err != nil {
			return a.cur.err
		}
		if a.blocks == nil {
			a.start()
		}
		b, ok := <-a.blocks
		if !ok {
			return io.ErrUnexpectedEOF // not reached: run sends its last block with an error
		}
		a.cur, a.pos = b, 0
	}
	return nil
}

func (a *AheadReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := a.next(); err != nil {
		if err != io.EOF && a.err == nil {
			a.err = err
		}
		return 0, err
	}
	n := copy(p, (*a.cur.bp)[a.pos:a.cur.n])
	a.pos += n
	a.off += int64(n)
	return n, nil
}

// Send writes up to limit bytes (all if limit < 0) to w straight from the
// read-ahead buffers: no copy through io.Copy's buffer. If c is not nil,
// the connection is corked while each block is written, so TLS records go
// to the socket 256 KiB at a time rather than one by one.
func (a *AheadReader) Send(w io.Writer, limit int64, c Corker) (int64, error) {
	var written int64
	for limit < 0 || written < limit {
		if err := a.next(); err != nil {
			if err == io.EOF {
				return written, nil
			}
			if a.err == nil {
				a.err = err
			}
			return written, err
		}
		p := (*a.cur.bp)[a.pos:a.cur.n]
		if limit >= 0 && int64(len(p)) > limit-written {
			p = p[:limit-written]
		}
		if c != nil {
			c.Cork()
		}
		n, err := w.Write(p)
		if c != nil {
			if cerr := c.Uncork(); err == nil {
				err = cerr
			}
		}
		a.pos += n
		a.off += int64(n)
		written += int64(n)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// Seek sets the offset of the next Read; a new offset stops the
// read-ahead, which starts again from there with the next Read.
func (a *AheadReader) Seek(off int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = off
	case io.SeekCurrent:
		abs = a.off + off
	case io.SeekEnd:
		fi, err := a.f.Stat()
		if err != nil {
			return a.off, err
		}
		abs = fi.Size() + off
	default:
		return a.off, errors.New("httpx: seek: invalid whence")
	}
	if abs < 0 {
		return a.off, errors.New("httpx: seek: negative position")
	}
	if abs != a.off || a.cur.err != nil {
		a.halt()
		a.cur = aheadBlock{}
		a.off = abs
	}
	return abs, nil
}

// Stop stops the read-ahead and waits for it; the caller closes the file
// afterwards.
func (a *AheadReader) Stop() {
	a.halt()
}
