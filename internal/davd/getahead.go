package davd

import (
	"io"

	"github.com/securefsd/securefsd/internal/httpx"
	"github.com/securefsd/securefsd/internal/vfs"
)

// A GET of a whole large file (httpx.AheadMin or more, no Range) decrypts
// ahead (httpx.AheadReader); Range requests and small files read in place
// (serial readErrs): read-ahead there would decrypt bytes nobody asked for.

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

// aheadReader is httpx's read-ahead as a fileReader.
type aheadReader struct{ *httpx.AheadReader }

func (a aheadReader) readErr() error { return a.Err() }
