//go:build linux

package rawsock

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a TCP connection on 127.0.0.1.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	sv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sv.Close(); cl.Close() })
	return sv, cl
}

func TestSocket(t *testing.T) {
	if a, _ := net.Pipe(); New(a) != nil {
		t.Fatal("a net.Pipe has no raw socket")
	}
	sv, cl := tcpPair(t)
	raw := New(sv)
	if raw == nil {
		t.Fatal("no raw socket for a TCP connection")
	}

	// Reads wait for data, then return what came.
	go func() {
		time.Sleep(20 * time.Millisecond)
		cl.Write([]byte("hello"))
	}()
	buf := make([]byte, 64)
	if n, err := raw.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}

	// A write larger than the socket buffers waits for room and is whole.
	big := make([]byte, 8<<20)
	rand.Read(big)
	got := make(chan []byte)
	go func() {
		b := make([]byte, len(big))
		io.ReadFull(cl, b)
		got <- b
	}()
	if n, err := raw.Write(big); err != nil || n != len(big) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("the peer read other bytes than were written")
	}

	// Deadlines hold: the poller's wait reports them as net.Conn would.
	sv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := raw.Read(buf); !isTimeout(err) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	sv.SetReadDeadline(time.Time{})

	// The peer's end of stream is io.EOF.
	cl.CloseWrite()
	if _, err := raw.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer's FIN: %v, want io.EOF", err)
	}

	// A reset peer makes writes fail with the system's error.
	cl.SetLinger(0)
	cl.Close()
	var err error
	for range 1000 {
		if _, err = raw.Write(make([]byte, 64<<10)); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("write to a reset peer: %v, want a write OpError", err)
	}

	// A closed connection: the poller refuses at once.
	sv.Close()
	if _, err := raw.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v, want net.ErrClosed", err)
	}
}

// TestReset: a read of a connection the peer reset reports the
// system's error.
func TestReset(t *testing.T) {
	sv, cl := tcpPair(t)
	raw := New(sv)
	cl.Write([]byte("x"))
	cl.SetLinger(0)
	cl.Close()
	buf := make([]byte, 16)
	var err error
	for range 100 {
		if _, err = raw.Read(buf); err != nil {
			break
		}
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("read after a reset: %v, want a read OpError", err)
	}
}

// isTimeout is what servers test a read error with (sftpd, net/http).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
