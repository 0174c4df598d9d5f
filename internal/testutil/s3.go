package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// VersityGW is the S3-compatible server the tests run: Versity's gateway,
// a tool in go.mod's tool block, so `go mod download` fetches it and the
// go command builds it (once, into the build cache).
const VersityGW = "github.com/versity/versitygw/cmd/versitygw"

// S3Server is a real S3-compatible server on a loopback port: Versity's
// gateway serving Dir through its posix backend (bucket B is the directory
// Dir/B, object B/K the file Dir/B/K), with a root key pair made for this
// test. Stop and Start take it down and bring it back on the same port and
// directory, for the tests of an unreachable store.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string
	Dir       string

	t    testing.TB
	bin  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	out  *SyncBuffer
}

// StartS3 builds the gateway (a failed build fails the test: it never
// skips), starts it on a free 127.0.0.1 port over a temporary directory
// with the given buckets, and stops it when the test ends.
func StartS3(t testing.TB, buckets ...string) *S3Server {
	t.Helper()
	// `go tool -n` builds the tool into the build cache and prints its
	// path without running it.
	out, err := exec.Command("go", "tool", "-n", VersityGW).CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", VersityGW, err, out)
	}
	bin := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(bin, '\n'); i >= 0 {
		bin = bin[i+1:]
	}
	s := &S3Server{
		AccessKey: "testroot" + randHex(t, 6),
		SecretKey: randHex(t, 20),
		Region:    "us-east-1",
		Dir:       filepath.Join(t.TempDir(), "s3"),
		t:         t,
		bin:       bin,
		out:       &SyncBuffer{},
	}
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(s.Dir, b), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ln.Close()
	s.Endpoint = "http://" + s.addr
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Start starts the server (again) and waits until it accepts connections.
func (s *S3Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("testutil: S3 server already running")
	}
	// The key pair goes by environment, not argv (other users see argv).
	cmd := exec.Command(s.bin, "--port", s.addr, "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey, "VGW_REGION="+s.Region)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testutil: start S3 server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	// Readiness is the port accepting; the bound only ends a server that
	// never comes up, it asserts nothing about speed.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("testutil: S3 server exited at start:\n%s", s.out)
		default:
		}
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("testutil: S3 server not listening on %s:\n%s", s.addr, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit; a
// stopped server's port refuses connections.
func (s *S3Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Log is what the server printed.
func (s *S3Server) Log() string { return s.out.String() }

// ObjectPath is the file that holds object key of bucket in the posix
// backend's directory.
func (s *S3Server) ObjectPath(bucket, key string) string {
	return filepath.Join(s.Dir, bucket, filepath.FromSlash(key))
}

// String names the server in failure messages.
func (s *S3Server) String() string { return fmt.Sprintf("S3 server %s over %s", s.Endpoint, s.Dir) }
