package e2e

// Shared helpers of the reliability and security suites (tamper, crash,
// disk full, load, hostile input, keys, isolation): Go SFTP and WebDAV
// clients for the cases where OpenSSH's sftp or curl would be too slow or
// cannot send what a test needs, raw connections, polling with deadlines and
// /proc readings. Every client talks to 127.0.0.1 only.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// randBytes returns n random bytes.
func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// sum is the hex SHA-256 of b.
func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// waitFor polls cond until it holds or the deadline passes (then fails the
// test). It is how these tests wait: never a fixed sleep.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(delay)
	}
}

// waitLog waits until the server log contains every one of subs.
func waitLog(t testing.TB, srv *Server, within time.Duration, subs ...string) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("server log to contain %q", subs), func() bool {
		log := srv.Log()
		for _, s := range subs {
			if !strings.Contains(log, s) {
				return false
			}
		}
		return true
	})
}

// logLines returns the lines of the server log containing every one of subs.
func logLines(srv *Server, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(srv.Log(), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// storePath is where the server keeps home/name on disk.
func storePath(srv *Server, home, name string) string {
	return filepath.Join(srv.DataDir, "store", home, filepath.FromSlash(name))
}

// ---- SSH / SFTP ----

// keyAuth reads an OpenSSH private key for x/crypto/ssh.
func keyAuth(t testing.TB, keyFile string) ssh.AuthMethod {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("parse %s: %v", keyFile, err)
	}
	return ssh.PublicKeys(signer)
}

func sshConfig(user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a fresh test server; its key is not the point here
		Timeout:         30 * time.Second,
	}
}

// dialSSH connects from local address src ("" = any loopback) to the
// server's SFTP port.
func dialSSH(srv *Server, src string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", srv.SFTPAddr)
	if err != nil {
		return nil, err
	}
	// Bound the handshake: a server that never answers must not hang the test.
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, srv.SFTPAddr, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// newSFTP opens an SFTP session as user with the key; closed at cleanup.
func newSFTP(t testing.TB, srv *Server, user, keyFile string) *sftp.Client {
	t.Helper()
	c, err := openSFTP(srv, user, keyAuth(t, keyFile))
	if err != nil {
		t.Fatalf("sftp as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openSFTP opens an SFTP session; closing the client closes the SSH connection.
func openSFTP(srv *Server, user string, auth ssh.AuthMethod) (*sftp.Client, error) {
	sc, err := dialSSH(srv, "", sshConfig(user, auth))
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		return nil, err
	}
	go func() { c.Wait(); sc.Close() }()
	return c, nil
}

// sftpPut uploads data to name (create/truncate) and reports the error the
// client saw, including the one of the final CLOSE.
func sftpPut(c *sftp.Client, name string, data []byte) error {
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sftpGet downloads name.
func sftpGet(c *sftp.Client, name string) ([]byte, error) {
	f, err := c.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = f.WriteTo(&b)
	return b.Bytes(), err
}

// ---- WebDAV ----

// davClient is a WebDAV client as one user over a Go http.Client (one
// connection pool per client).
type davClient struct {
	srv      *Server
	user, pw string
	hc       *http.Client
}

// newDAV returns a client for user; src, if not empty, is the local address
// to connect from (127.0.0.X: every 127/8 address reaches the server on
// 127.0.0.1, which lets the ban tests come "from another address").
func newDAV(t testing.TB, srv *Server, user, pw, src string) *davClient {
	t.Helper()
	d := &net.Dialer{Timeout: 30 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // self-signed test certificate
		MaxIdleConnsPerHost: 8,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &davClient{srv: srv, user: user, pw: pw, hc: &http.Client{
		Transport:     tr,
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends method to path (appended to the server URL as is: "/../x" and
// "%2e%2e" reach the server unchanged) with optional headers "Name: value",
// and returns the status and the whole body. A transport error, or a body
// cut short, is err (with the status and the bytes received so far).
func (d *davClient) do(method, path string, body io.Reader, hdr ...string) (int, []byte, error) {
	resp, b, err := d.doResp(method, path, body, hdr...)
	if resp == nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, err
}

func (d *davClient) doResp(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, d.srv.DAVURL+path, body)
	if err != nil {
		return nil, nil, err
	}
	if d.user != "" {
		req.SetBasicAuth(d.user, d.pw)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (d *davClient) put(path string, data []byte) error {
	code, b, err := d.do("PUT", path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	if code != http.StatusCreated && code != http.StatusNoContent && code != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", path, code, b)
	}
	return nil
}

func (d *davClient) get(path string) ([]byte, error) {
	code, b, err := d.do("GET", path, nil)
	if err != nil {
		return b, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, code, b)
	}
	return b, nil
}

// rawResponse is what rawHTTP read back.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
	Raw    string // status line and headers as sent

	length int64
	te     []string
}

// rawHTTP sends request bytes exactly as given over a fresh TLS (or plain)
// connection and reads one response.
func rawHTTP(t testing.TB, srv *Server, request string) (*rawResponse, error) {
	t.Helper()
	nc, err := dialDAV(srv)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(nc, request); err != nil {
		return nil, err
	}
	if strings.HasPrefix(request, "HEAD ") {
		return readRawHead(bufio.NewReader(nc))
	}
	return readRawResponse(bufio.NewReader(nc))
}

func readRawResponse(br *bufio.Reader) (*rawResponse, error) {
	r, err := readRawHead(br)
	if err != nil {
		return nil, err
	}
	switch {
	case r.Status/100 == 1 || r.Status == http.StatusNoContent || r.Status == http.StatusNotModified:
	case r.Header.Get("Transfer-Encoding") != "" || len(r.te) > 0:
		r.Body, err = io.ReadAll(httputil.NewChunkedReader(br))
	case r.length >= 0:
		r.Body = make([]byte, r.length)
		var n int
		n, err = io.ReadFull(br, r.Body)
		r.Body = r.Body[:n]
	default: // until the server closes
		r.Body, err = io.ReadAll(br)
	}
	return r, err
}

// readRawHead reads a status line and headers verbatim.
func readRawHead(br *bufio.Reader) (*rawResponse, error) {
	// Read the head by hand to keep it verbatim.
	var raw strings.Builder
	for {
		line, err := br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			return nil, fmt.Errorf("reading response head: %w (got %q)", err, raw.String())
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw.String())), nil)
	if err != nil {
		return nil, err
	}
	return &rawResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw.String(),
		length: resp.ContentLength, te: resp.TransferEncoding}, nil
}

// dialDAV opens a connection to the WebDAV port, with TLS unless the server
// runs plain HTTP.
func dialDAV(srv *Server) (net.Conn, error) {
	if strings.HasPrefix(srv.DAVURL, "http://") {
		return net.DialTimeout("tcp", srv.DAVAddr, 30*time.Second)
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	return d.DialContext(context.Background(), "tcp", srv.DAVAddr)
}

// basic is the Authorization header value for user:pw.
func basic(user, pw string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pw)
	return req.Header.Get("Authorization")
}

// ---- process ----

// procKB reads a "VmRSS:"-style field (KiB) of /proc/PID/status.
func procKB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parse %s %q: %v", field, v, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// alive fails the test unless the server process still runs and answers a
// fresh SFTP login and a WebDAV request as user.
func alive(t testing.TB, srv *Server, user, pw, keyFile string) {
	t.Helper()
	select {
	case <-srv.done:
		t.Fatalf("securefsd exited: %v", srv.exited)
	default:
	}
	c, err := openSFTP(srv, user, keyAuth(t, keyFile))
	if err != nil {
		t.Fatalf("server no longer serves SFTP: %v", err)
	}
	if _, err := c.Getwd(); err != nil {
		t.Fatalf("server no longer serves SFTP: %v", err)
	}
	c.Close()
	d := newDAV(t, srv, user, pw, "")
	if code, b, err := d.do("PROPFIND", "/", nil, "Depth: 0"); err != nil || code != http.StatusMultiStatus {
		t.Fatalf("server no longer serves WebDAV: %d %v %s", code, err, b)
	}
}

// verify runs `securefsd verify` through the running server (or directly
// when none runs) and returns the damaged paths it listed and whether it
// exited non-zero.
func verify(t testing.TB, srv *Server, args ...string) (damaged []string, failed bool, out string) {
	t.Helper()
	out, err := srv.CLI(t, append([]string{"verify"}, args...)...)
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "DAMAGED "); ok {
			p, _, _ := strings.Cut(rest, ": ")
			damaged = append(damaged, p)
		}
	}
	if !strings.Contains(out, "checked ") {
		t.Fatalf("verify printed no summary: %v\n%s", err, out)
	}
	return damaged, err != nil, out
}

// resetPeakRSS resets the process's VmHWM to its current RSS (clear_refs
// 5), so a later VmHWM reading shows the peak of what happened in between.
func resetPeakRSS(t testing.TB, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
}

// soakScale is how much longer the reliability suites run: 1 in
// scripts/test.sh, SECUREFSD_SOAK=N under scripts/soak.sh.
func soakScale() int {
	n, err := strconv.Atoi(os.Getenv("SECUREFSD_SOAK"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}
