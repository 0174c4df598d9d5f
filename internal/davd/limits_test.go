package davd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to the server's address from a given
// loopback source address.
func dialFrom(t *testing.T, serverURL, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(serverURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c without a word.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := c.Read(b[:])
	return err == io.EOF
}

// optionsFrom sends an unauthenticated OPTIONS over c and reads the status.
func optionsFrom(c net.Conn) (int, error) {
	if _, err := io.WriteString(c, "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestConnCapPerSource: idle connections from one address stop at the
// per-source cap (the next is closed at once), while another address is
// still served (issue 14 item 9: 20,000 idle connections from 4 addresses
// exhausted the descriptors).
func TestConnCapPerSource(t *testing.T) {
	env := newTestEnv(t)
	url := env.serveWith(t, Options{MaxConns: 100, MaxConnsPerSource: 5})
	for i := 0; i < 5; i++ {
		dialFrom(t, url, "127.0.0.1")
	}
	refused := 0
	for i := 0; i < 10; i++ {
		if closedByServer(dialFrom(t, url, "127.0.0.1")) {
			refused++
		}
	}
	if refused != 10 {
		t.Errorf("%d of 10 connections over the per-source cap were closed, want 10", refused)
	}
	if code, err := optionsFrom(dialFrom(t, url, "127.0.0.2")); err != nil || code != 200 {
		t.Errorf("another source while one is at its cap: %d, %v", code, err)
	}
}

// TestConnCapTotal: the total cap holds across sources, and a closed
// connection frees its place.
func TestConnCapTotal(t *testing.T) {
	env := newTestEnv(t)
	url := env.serveWith(t, Options{MaxConns: 6, MaxConnsPerSource: 100})
	var held []net.Conn
	for i := 0; i < 6; i++ {
		held = append(held, dialFrom(t, url, fmt.Sprintf("127.0.0.%d", 10+i)))
	}
	// Let the server accept them all before the next one.
	for _, c := range held[:1] {
		if code, err := optionsFrom(c); err != nil || code != 200 {
			t.Fatalf("OPTIONS: %d %v", code, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if !closedByServer(dialFrom(t, url, "127.0.0.99")) {
		t.Error("a connection over the total cap was served")
	}
	held[1].Close()
	var code int
	var err error
	for i := 0; i < 50; i++ { // the server notices the close asynchronously
		if code, err = optionsFrom(dialFrom(t, url, "127.0.0.98")); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || code != 200 {
		t.Errorf("after a connection closed: %d, %v", code, err)
	}
}

// TestRequestsPerUser: one user's stalled uploads stop at the per-user cap
// (503), while another user is served (issue 14 item 9: 400 stalled uploads
// of one user took RSS from 205 to 568 MB).
func TestRequestsPerUser(t *testing.T) {
	env := newTestEnv(t)
	url := env.serveWith(t, Options{MaxRequestsPerUser: 3, BodyStallTimeout: time.Minute})
	req := fmt.Sprintf("PUT /stall%%d HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Length: 1000000\r\n\r\npartial", basicAuth(testUser, testPass))
	for i := 0; i < 3; i++ {
		c := dialFrom(t, url, "127.0.0.1")
		if _, err := fmt.Fprintf(c, req, i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the three reach the handler
	code := 0
	for i := 0; i < 50; i++ {
		resp, _ := env.doAtURL(t, url, testUser, testPass, "GET", "/")
		if code = resp.StatusCode; code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("a fourth request of a user with 3 stalled uploads: %d, want 503", code)
	}
	if resp, _ := env.doAtURL(t, url, otherUser, otherPass, "PROPFIND", "/"); resp.StatusCode != http.StatusMultiStatus {
		t.Errorf("another user while alice is at her cap: %d", resp.StatusCode)
	}
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// doAtURL is doAs against another server of the same env.
func (e *testEnv) doAtURL(t testing.TB, url, user, pass, method, path string) (*http.Response, string) {
	t.Helper()
	saved := e.URL
	e.URL = url
	defer func() { e.URL = saved }()
	return e.doAs(t, user, pass, method, path, nil, "Depth", "0")
}
