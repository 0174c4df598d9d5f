package davd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestExpect100Unauthenticated: an unauthenticated PUT with Expect:
// 100-continue gets its final 401 at once (litmus http expect100 waits for
// a response without sending the body).
func TestExpect100Unauthenticated(t *testing.T) {
	env := newTestEnv(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(env.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("PUT /expect100 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no response line: %v", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 100 ") && !strings.HasPrefix(line, "HTTP/1.1 401 ") {
		t.Fatalf("status line %q, want 100 or 401", line)
	}
}
