package davd

import (
	"errors"
	"io"
	"sync"

	"github.com/securefsd/securefsd/internal/vfs"
)

// A GET of a whole large file decrypts ahead: while the handler's goroutine
// writes one buffer to the connection (TLS encryption, socket writes),
// another goroutine reads and decrypts the next ones from vfs, so the two
// use both cores. Range requests and small files read in place (serial
// readErrs): read-ahead there would decrypt bytes nobody asked for.

const (
	aheadBufSize = 8 * chunkSize // what vfs decrypts in one parallel batch
	aheadDepth   = 2             // buffers filled ahead of the one being sent
	// aheadMin: smaller files are sent without read-ahead.
	aheadMin = 4 * aheadBufSize
)

var aheadBufs = sync.Pool{New: func() any { b := make([]byte, aheadBufSize); return &b }}

// fileReader is the io.ReadSeeker http.ServeContent sends from; it
// remembers the first read error (ServeContent swallows it) for the log.
type fileReader interface {
	io.ReadSeeker
	readErr() error
}

// readErrs reads f in place.
type readErrs struct {
	f   *vfs.File
	err error
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *readErrs) Seek(off int64, whence int) (int64, error) { return r.f.Seek(off, whence) }

func (r *readErrs) readErr() error { return r.err }

type aheadBlock struct {
	bp  *[]byte
	n   int
	err error // after the n bytes
}

// aheadReader reads f sequentially from the offset of its last Seek, with
// a goroutine decrypting up to aheadDepth buffers ahead. It is used by one
// goroutine (ServeContent's); Seek and close stop the read-ahead and wait
// for it, so f is only read by one goroutine at a time and never after
// close (the caller closes f after close).
type aheadReader struct {
	f   *vfs.File
	off int64 // offset of the next byte Read returns
	err error // first read error

	blocks chan aheadBlock // nil while no read-ahead runs
	stop   chan struct{}
	done   chan struct{}
	cur    aheadBlock
	pos    int // read position in cur
}

func newAheadReader(f *vfs.File) *aheadReader { return &aheadReader{f: f} }

func (a *aheadReader) readErr() error { return a.err }

func (a *aheadReader) start() {
	a.blocks = make(chan aheadBlock, aheadDepth-1)
	a.stop = make(chan struct{})
	a.done = make(chan struct{})
	go a.run(a.off)
}

func (a *aheadReader) run(off int64) {
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
func (a *aheadReader) halt() {
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

func (a *aheadReader) release() {
	if a.cur.bp != nil {
		aheadBufs.Put(a.cur.bp)
	}
	a.cur, a.pos = aheadBlock{}, 0
}

// next makes cur a block with unread bytes, or returns the error that
// ends the stream.
func (a *aheadReader) next() error {
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

func (a *aheadReader) Read(p []byte) (int, error) {
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

// writeTo writes up to limit bytes (all if limit < 0) to w straight from
// the read-ahead buffers: no copy through io.Copy's buffer. If c is not
// nil, the connection is corked while each block is written, so TLS
// records go to the socket 256 KiB at a time rather than one by one.
func (a *aheadReader) writeTo(w io.Writer, limit int64, c corker) (int64, error) {
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
			c.cork()
		}
		n, err := w.Write(p)
		if c != nil {
			if cerr := c.uncork(); err == nil {
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

func (a *aheadReader) Seek(off int64, whence int) (int64, error) {
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
		return a.off, errors.New("davd: seek: invalid whence")
	}
	if abs < 0 {
		return a.off, errors.New("davd: seek: negative position")
	}
	if abs != a.off || a.cur.err != nil {
		a.halt()
		a.cur = aheadBlock{}
		a.off = abs
	}
	return abs, nil
}

// close stops the read-ahead; the caller closes f afterwards.
func (a *aheadReader) close() {
	a.halt()
}
