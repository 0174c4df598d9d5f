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

// writeConn is a net.Conn recording its writes (socket writes).
type writeConn struct {
	net.Conn
	got    bytes.Buffer
	writes int
	err    error
}

func (w *writeConn) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.writes++
	return w.got.Write(p)
}

// TestCork: uncorked writes go straight out; corked ones collect and go
// out in buffer-sized writes, the rest at uncork; a failed flush is
// reported at uncork and by every later write.
func TestCork(t *testing.T) {
	sock := &writeConn{}
	c := &readAheadConn{Conn: sock}
	c.Write([]byte("a"))
	if sock.writes != 1 {
		t.Fatalf("uncorked write: %d socket writes", sock.writes)
	}
	data := make([]byte, 3*readAheadSize+100)
	rand.Read(data)
	c.Cork()
	for off := 0; off < len(data); off += 16 << 10 {
		if n, err := c.Write(data[off:min(off+16<<10, len(data))]); err != nil || n != min(16<<10, len(data)-off) {
			t.Fatalf("corked write: %d, %v", n, err)
		}
	}
	if sock.writes != 1+3 {
		t.Fatalf("%d socket writes while corked, want 3 full buffers", sock.writes-1)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if sock.writes != 5 || !bytes.Equal(sock.got.Bytes(), append([]byte("a"), data...)) {
		t.Fatalf("after uncork: %d writes, content equal %v", sock.writes, bytes.Equal(sock.got.Bytes()[1:], data))
	}
	// A write larger than the buffer goes out at once, after what is buffered.
	c.Cork()
	c.Write([]byte("b"))
	c.Write(data)
	if got := sock.got.Bytes()[1+len(data):]; len(got) != 1+len(data) || got[0] != 'b' {
		t.Fatalf("large corked write: %d bytes out", len(got))
	}
	c.Uncork()

	boom := errors.New("reset")
	c.Cork()
	c.Write([]byte("lost"))
	sock.err = boom
	if err := c.Uncork(); !errors.Is(err, boom) {
		t.Fatalf("uncork: %v, want %v", err, boom)
	}
	c.Cork()
	if _, err := c.Write([]byte("x")); !errors.Is(err, boom) {
		t.Fatalf("write after a failed flush: %v", err)
	}
	if err := c.Uncork(); !errors.Is(err, boom) {
		t.Fatalf("second uncork: %v", err)
	}
}
