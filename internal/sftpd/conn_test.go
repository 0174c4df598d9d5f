package sftpd

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestSSHConnOrderAndCloseFlush(t *testing.T) {
	a, b := net.Pipe()
	c := newSSHConn(a, time.Minute)
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(b)
		got <- data
	}()
	var mu sync.Mutex // x/crypto serializes writes; so does this test
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := make([]byte, (i*97+w*13)%40000+1)
				rand.Read(p)
				mu.Lock()
				want.Write(p)
				_, err := c.Write(p)
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil { // must flush before closing
		t.Fatal(err)
	}
	if data := <-got; !bytes.Equal(data, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want %d (order or content differs)", len(data), want.Len())
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSSHConnStalledPeer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newSSHConn(a, time.Minute)
	c.setIdle(200 * time.Millisecond)
	// Nobody reads: writes queue up to the limit, then block until the
	// deadline fails the socket write; the error then reaches Write.
	p := make([]byte, 64<<10)
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := c.Write(p); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		t.Logf("stalled write failed as expected: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Write to a stalled peer never failed")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on a stalled peer")
	}
}

func TestSSHConnPeerGone(t *testing.T) {
	a, b := net.Pipe()
	c := newSSHConn(a, time.Minute)
	b.Close()
	var err error
	for range 1000 {
		if _, err = c.Write([]byte("hello")); err != nil {
			break
		}
	}
	if err == nil {
		// The writer may not have hit the error yet: Close still returns.
		c.Close()
		return
	}
	if _, err2 := c.Write([]byte("again")); err2 == nil {
		t.Error("write error not sticky")
	}
	c.Close()
}

func TestSSHConnRead(t *testing.T) {
	a, b := net.Pipe()
	c := newSSHConn(a, time.Minute)
	want := make([]byte, 300000)
	rand.Read(want)
	go func() {
		for off := 0; off < len(want); off += 7000 {
			b.Write(want[off:min(off+7000, len(want))])
		}
		b.Close()
	}()
	var got bytes.Buffer
	buf := make([]byte, 3000)
	for {
		n, err := c.Read(buf[:1+got.Len()%len(buf)])
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes, differ", got.Len())
	}
	c.Close()
}

func TestBumpDue(t *testing.T) {
	ms := int64(time.Millisecond)
	tests := []struct {
		since, idle int64
		want        bool
	}{
		{0, 15 * 60 * 1000 * ms, false},
		{999 * ms, 15 * 60 * 1000 * ms, false},
		{1000 * ms, 15 * 60 * 1000 * ms, true},
		{40 * ms, 400 * ms, false},
		{50 * ms, 400 * ms, true}, // short timeouts move every idle/8
		{375 * ms, 3000 * ms, true},
	}
	for _, tt := range tests {
		if got := bumpDue(1e12+tt.since, 1e12, tt.idle); got != tt.want {
			t.Errorf("bumpDue(since %v, idle %v) = %v", time.Duration(tt.since), time.Duration(tt.idle), got)
		}
	}
}
