// Package e2e drives a real securefsd process with real clients (OpenSSH
// sftp/scp, rclone, curl, litmus, Chromium) on 127.0.0.1.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// binPath is the securefsd binary every test runs, built once by TestMain
// (or taken from $SECUREFSD_BIN).
var binPath string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	if p := os.Getenv("SECUREFSD_BIN"); p != "" {
		binPath = p
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "securefsd-e2e-bin")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "securefsd")
	cmd := exec.Command("go", "build", "-o", binPath, "../cmd/securefsd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("build securefsd: %w", err)
	}
	return m.Run(), nil
}

// NeedTool fails the test (it does not skip) when a client it drives is missing:
// scripts/test.sh installs them all.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (scripts/test.sh installs it): %v", name, err)
	}
	return p
}

// Server is one running `securefsd serve` process with its own data dir.
type Server struct {
	DataDir  string
	SFTPAddr string // 127.0.0.1:port
	SFTPHost string
	SFTPPort string
	DAVURL   string // https://127.0.0.1:port (or http:// with Insecure)
	// MetricsURL is http://127.0.0.1:port of --metrics-addr ("" without).
	MetricsURL string
	DAVAddr    string

	cmd    *exec.Cmd
	args   []string
	logMu  sync.Mutex
	log    bytes.Buffer
	done   chan struct{}
	exited error

	wrapper []string // command line the binary runs under (setpriv ...)
}

// ServerOption adjusts how StartServer runs the server.
type ServerOption func(*serverConfig)

type serverConfig struct {
	dataDir     string
	insecure    bool
	globalArgs  []string
	serveArgs   []string
	env         []string
	noFirstUser bool
	wrapper     []string
	v2          bool
}

// WithStorageV2 serves a new data directory with storage version 2
// (SECUREFSD_TEST_STORAGE=v2 does it for every server of a run).
func WithStorageV2() ServerOption { return func(c *serverConfig) { c.v2 = true } }

// WithDataDir reuses a data dir (restart after a crash).
func WithDataDir(dir string) ServerOption { return func(c *serverConfig) { c.dataDir = dir } }

// WithInsecureHTTP serves WebDAV over plain HTTP.
func WithInsecureHTTP() ServerOption { return func(c *serverConfig) { c.insecure = true } }

// WithGlobalArgs adds flags before the `serve` command (e.g. --key-file).
func WithGlobalArgs(args ...string) ServerOption {
	return func(c *serverConfig) { c.globalArgs = append(c.globalArgs, args...) }
}

// WithServeArgs adds flags after the `serve` command.
func WithServeArgs(args ...string) ServerOption {
	return func(c *serverConfig) { c.serveArgs = append(c.serveArgs, args...) }
}

// WithWrapper runs the server under a command (e.g. setpriv to drop to
// another user): argv, then the binary and its arguments.
func WithWrapper(argv ...string) ServerOption {
	return func(c *serverConfig) { c.wrapper = argv }
}

// WithEnv adds environment variables (KEY=VALUE) to the server process.
func WithEnv(kv ...string) ServerOption {
	return func(c *serverConfig) { c.env = append(c.env, kv...) }
}

// StartServer starts securefsd on 127.0.0.1:0 for SFTP and WebDAV and waits
// for its "ready" line. The process is stopped when the test ends.
func StartServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.dataDir == "" {
		cfg.dataDir = filepath.Join(t.TempDir(), "data")
	}
	s := &Server{DataDir: cfg.dataDir, wrapper: cfg.wrapper}
	s.args = append([]string{"--data-dir", cfg.dataDir}, cfg.globalArgs...)
	s.args = append(s.args, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0", "--log-level", "debug")
	if cfg.insecure {
		s.args = append(s.args, "--insecure-http")
	}
	s.args = append(s.args, cfg.serveArgs...)
	v2 := true
	switch {
	case cfg.v2:
		s.args = append(s.args, "--storage", "v2")
	case os.Getenv("SECUREFSD_TEST_STORAGE") == "v2":
		// A v1 suite run on v2: its checks read file names in the log,
		// which v2 hides by default.
		s.args = append(s.args, "--storage", "v2", "--log-names", "clear")
	default:
		v2 = false
	}
	if d := os.Getenv("SECUREFSD_TEST_DURABILITY"); d != "" && v2 {
		// The v2 suites again with answers before the disk has them
		// (scripts/test.sh): the crash suite's promises must hold.
		s.args = append(s.args, "--durability", d)
	}
	if err := s.start(t, cfg.env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("server log:\n%s", s.Log())
		}
	})
	return s
}

func (s *Server) start(t testing.TB, env []string) error {
	t.Helper()
	argv := append(append(append([]string(nil), s.wrapper...), binPath), s.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = &lockedWriter{mu: &s.logMu, w: &s.log}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start securefsd: %w", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.log.WriteString("stdout: " + line + "\n")
			s.logMu.Unlock()
			if signalled {
				continue
			}
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "listening" && f[1] == "sftp":
				s.SFTPAddr = f[2]
				s.SFTPHost, s.SFTPPort, _ = net.SplitHostPort(f[2])
			case len(f) == 3 && f[0] == "listening" && f[1] == "webdav":
				s.DAVURL = f[2]
				s.DAVAddr = strings.TrimPrefix(strings.TrimPrefix(f[2], "https://"), "http://")
			case len(f) == 3 && f[0] == "listening" && f[1] == "metrics":
				s.MetricsURL = f[2]
			case line == "ready":
				signalled = true
				ready <- nil
			}
		}
		if !signalled {
			ready <- fmt.Errorf("securefsd exited before its ready line")
		}
	}()
	go func() {
		s.exited = cmd.Wait()
		close(s.done)
	}()
	select {
	case err := <-ready:
		if err != nil {
			<-s.done
			return fmt.Errorf("%w: %v\n%s", err, s.exited, s.Log())
		}
		return nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("securefsd not ready after 60s:\n%s", s.Log())
	}
}

// Log returns what the server printed so far (stderr log and stdout).
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// Stop sends SIGTERM and waits for a graceful exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(45 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("securefsd did not stop within 45s of SIGINT")
	}
}

// Kill ends the server with SIGKILL (crash tests).
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same data dir (new ports).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	if err := s.start(t, nil); err != nil {
		t.Fatal(err)
	}
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// CLI runs `securefsd --data-dir D args...` and returns its stdout.
func (s *Server) CLI(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return s.CLIInput(t, "", args...)
}

// CLIInput is CLI with stdin.
func (s *Server) CLIInput(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"--data-dir", s.DataDir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		if cmd.Process != nil && ctx.Err() == context.DeadlineExceeded {
			_ = cmd.Process.Kill()
		}
	}()
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("securefsd %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// AddUser adds a read-write user with a password and a fresh ed25519 key, and
// returns the private key's path.
func (s *Server) AddUser(t testing.TB, name, password string, extra ...string) string {
	t.Helper()
	key := GenerateKey(t)
	args := append([]string{"user", "add", name, "--password-stdin", "--key", key + ".pub"}, extra...)
	if _, err := s.CLIInput(t, password+"\n", args...); err != nil {
		t.Fatal(err)
	}
	return key
}

// GenerateKey makes an ed25519 key pair with ssh-keygen and returns the private key path.
func GenerateKey(t testing.TB) string {
	t.Helper()
	NeedTool(t, "ssh-keygen")
	key := filepath.Join(t.TempDir(), "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return key
}

// SSHOpts are the OpenSSH client options for talking to a test server.
func (s *Server) SSHOpts(key string) []string {
	return []string{
		"-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "IdentitiesOnly=yes",
		"-i", key,
	}
}

// SFTPBatch runs `sftp -b -` with the given batch script as user.
func (s *Server) SFTPBatch(t testing.TB, user, key, batch string) (string, error) {
	t.Helper()
	NeedTool(t, "sftp")
	args := append(s.SSHOpts(key), "-P", s.SFTPPort, "-b", "-", user+"@"+s.SFTPHost)
	cmd := exec.Command("sftp", args...)
	cmd.Stdin = strings.NewReader(batch)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Curl runs curl against the WebDAV server as user:password (-k for the self-signed certificate).
func (s *Server) Curl(t testing.TB, user, password string, args ...string) (string, error) {
	t.Helper()
	NeedTool(t, "curl")
	base := []string{"-sS", "-k"}
	if user != "" {
		base = append(base, "-u", user+":"+password)
	}
	out, err := exec.Command("curl", append(base, args...)...).CombinedOutput()
	return string(out), err
}

// RandomFile writes n random bytes to a new file in a temp dir and returns its path.
func RandomFile(t testing.TB, n int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rand-"+strconv.FormatInt(n, 10))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// RandomName is a short random hex string.
func RandomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SameFile fails the test unless the two files hold the same bytes.
func SameFile(t testing.TB, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s (%d bytes) and %s (%d bytes) differ", a, len(x), b, len(y))
	}
}

// AssertNoPlaintext fails if any 32-byte run of the plaintext file appears
// anywhere under dir (the store must hold ciphertext only).
func AssertNoPlaintext(t testing.TB, dir, plaintextFile string) {
	t.Helper()
	pt, err := os.ReadFile(plaintextFile)
	if err != nil {
		t.Fatal(err)
	}
	const win = 32
	if len(pt) < win {
		return
	}
	needles := map[string]bool{}
	for i := 0; i+win <= len(pt); i += win {
		needles[string(pt[i:i+win])] = true
	}
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if vanished(err) {
			return nil
		}
		if vanished(err) {
			return nil
		}
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if vanished(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for i := 0; i+win <= len(data); i++ {
			if needles[string(data[i:i+win])] {
				return fmt.Errorf("plaintext found in %s at offset %d", p, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// CurlBrowserLogin signs user in to the browser client with curl (login
// form, its token, a same-origin POST) and returns the cookie jar holding
// the session.
func (s *Server) CurlBrowserLogin(t testing.TB, user, password string) string {
	t.Helper()
	jar := filepath.Join(t.TempDir(), "jar")
	page, err := s.Curl(t, "", "", "-c", jar, "-b", jar, s.DAVURL+"/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	tok := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(page)
	if tok == nil {
		t.Fatalf("no form token: %s", page)
	}
	if out, err := s.Curl(t, "", "", "-f", "-c", jar, "-b", jar, "-H", "Origin: "+s.DAVURL, "-o", "/dev/null",
		"--data-urlencode", "token="+tok[1], "--data-urlencode", "username="+user, "--data-urlencode", "password="+password, s.DAVURL+"/ui/login"); err != nil {
		t.Fatalf("browser login: %v %s", err, out)
	}
	return jar
}

// vanished reports an error from a file the running server removed
// between a walk's listing and its read: an upload's temporary file
// renamed into place, or a v2 blob deleted by the collector. Such a
// file holds nothing left to check.
func vanished(err error) bool { return errors.Is(err, fs.ErrNotExist) }
