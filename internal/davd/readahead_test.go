package davd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
)

// sockConn is a net.Conn over a reader that counts reads (socket reads).
type sockConn struct {
	net.Conn
	r     io.Reader
	reads int
}

func (s *sockConn) Read(p []byte) (int, error) {
	s.reads++
	return s.r.Read(p)
}

// TestReadAheadConn: every byte arrives once and in order whatever sizes
// the reader asks for; record-sized reads share one socket read; small and
// huge reads go straight to the socket; the buffer is given back once
// drained; a socket error comes after the buffered bytes.
func TestReadAheadConn(t *testing.T) {
	data := make([]byte, 3*readAheadSize+123)
	rand.Read(data)
	for _, size := range []int{1, 5, readAheadMin - 1, readAheadMin, 16<<10 + 29, readAheadSize - 1, readAheadSize, 2 * readAheadSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			sock := &sockConn{r: bytes.NewReader(data)}
			c := &readAheadConn{Conn: sock}
			var got bytes.Buffer
			p := make([]byte, size)
			calls := 0
			for {
				n, err := c.Read(p)
				calls++
				got.Write(p[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("got %d bytes, different from the %d sent", got.Len(), len(data))
			}
			if c.buf != nil {
				t.Error("buffer held after the data was drained")
			}
			buffered := size >= readAheadMin && size < readAheadSize
			if buffered && sock.reads > len(data)/readAheadSize+2 {
				t.Errorf("%d socket reads for %d reads of %d bytes", sock.reads, calls, size)
			}
			if !buffered && sock.reads != calls {
				t.Errorf("%d socket reads for %d direct reads", sock.reads, calls)
			}
		})
	}
	t.Run("error after data", func(t *testing.T) {
		reset := errors.New("connection reset")
		c := &readAheadConn{Conn: &sockConn{r: io.MultiReader(bytes.NewReader(data[:50<<10]), errReader{reset})}}
		p := make([]byte, 16<<10)
		var n int
		for {
			m, err := c.Read(p)
			n += m
			if err != nil {
				if !errors.Is(err, reset) || n != 50<<10 {
					t.Fatalf("after %d bytes: %v", n, err)
				}
				return
			}
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
