package davd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

// writeLog records the size of every write.
type writeLog struct {
	bytes.Buffer
	sizes []int
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.Buffer.Write(p)
}

// TestCopyChunks: whatever sizes the body's reads return, uploads reach
// vfs in whole chunks (only the last write may be short), all the bytes
// arrive, and a body error (a cut body's io.ErrUnexpectedEOF too) is
// returned rather than taken for the end.
func TestCopyChunks(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data+EOF", iotest.DataErrReader},
		{"tls records", func(r io.Reader) io.Reader { return &limitedReads{r: r, max: 16 << 10} }},
	}
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, copyBufSize - 1, copyBufSize, copyBufSize + chunkSize + 7, 3 * copyBufSize} {
		data := make([]byte, size)
		rand.Read(data)
		for _, rd := range readers {
			if rd.name == "one byte" && size > 2*chunkSize {
				continue
			}
			// The announced size picks the buffer and the pipelined copy
			// (unknown or over one buffer); a wrong one (a body longer
			// than announced) must not change the result.
			for _, announced := range []int64{int64(size % (chunkSize + 1)), -1} {
				t.Run(fmt.Sprintf("%s/%d/announced=%d", rd.name, size, announced), func(t *testing.T) {
					var w writeLog
					n, err := copyChunks(&w, rd.wrap(bytes.NewReader(data)), announced)
					if err != nil || n != int64(size) || !bytes.Equal(w.Bytes(), data) {
						t.Fatalf("copied %d, %v; content equal: %v", n, err, bytes.Equal(w.Bytes(), data))
					}
					for i, s := range w.sizes {
						if s != chunkSize && i != len(w.sizes)-1 || s > chunkSize || s == 0 {
							t.Fatalf("write %d of %d is %d bytes: %v", i, len(w.sizes), s, w.sizes)
						}
					}
				})
			}
		}
	}
	for _, cut := range []error{io.ErrUnexpectedEOF, errors.New("connection reset")} {
		for _, before := range []int{chunkSize + 5, 2*copyBufSize + 5} {
			t.Run(fmt.Sprintf("error/%s/after %d", cut, before), func(t *testing.T) {
				var w writeLog
				src := io.MultiReader(bytes.NewReader(make([]byte, before)), iotest.ErrReader(cut))
				n, err := copyChunks(&w, src, -1)
				if !errors.Is(err, cut) || n != int64(before) || w.Len() != before {
					t.Fatalf("copied %d (%d written), %v, want %d and %v", n, w.Len(), err, before, cut)
				}
			})
		}
	}
	for _, size := range []int64{3 * chunkSize, -1} {
		t.Run(fmt.Sprintf("write error/announced=%d", size), func(t *testing.T) {
			boom := errors.New("disk full")
			// An endless body: the copy must stop reading once a write failed.
			n, err := copyChunks(failWriter{boom}, io.LimitReader(neverEnding{}, 1<<40), size)
			if !errors.Is(err, boom) || n != 0 {
				t.Fatalf("copied %d, %v", n, err)
			}
		})
	}
}

// neverEnding is an endless source of zeros.
type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// limitedReads returns at most max bytes per Read, like TLS records.
type limitedReads struct {
	r   io.Reader
	max int
}

func (l *limitedReads) Read(p []byte) (int, error) {
	if len(p) > l.max {
		p = p[:l.max]
	}
	return l.r.Read(p)
}

type failWriter struct{ err error }

func (f failWriter) Write(p []byte) (int, error) { return 0, f.err }
