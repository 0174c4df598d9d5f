package davd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/perm"
	"github.com/securefsd/securefsd/internal/vfs"
)

// records is a slog.Handler that keeps every record, so tests assert on
// levels and attributes rather than on log text.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

// errorsLogged returns the messages of records at error level.
func (h *records) errorsLogged() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Level >= slog.LevelError {
			out = append(out, r.Message)
		}
	}
	return out
}

// TestTLSAEADOnly: a TLS 1.2 client that offers only CBC suites gets no
// connection; an AEAD suite works, and HTTPS answers carry HSTS while plain
// HTTP answers do not (issue 14 item 11).
func TestTLSAEADOnly(t *testing.T) {
	env := newTestEnv(t)
	dir := t.TempDir()
	cert, _, err := LoadOrCreateCert(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: env.Store, Users: env.Users})
	if err != nil {
		t.Fatal(err)
	}
	url := serveOn(t, srv, &tls.Config{Certificates: []tls.Certificate{cert}})
	get := func(suites []uint16) (*http.Response, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: suites}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("OPTIONS", url+"/", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	cbc := []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	}
	if _, err := get(cbc); err == nil {
		t.Error("a client offering only CBC/SHA-1 suites got a TLS 1.2 connection")
	}
	resp, err := get([]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256})
	if err != nil {
		t.Fatalf("AEAD suite refused: %v", err)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("HTTPS answer without Strict-Transport-Security")
	}
	plain, _ := env.do(t, "OPTIONS", "/", nil)
	if plain.Header.Get("Strict-Transport-Security") != "" {
		t.Error("plain HTTP answer carries Strict-Transport-Security")
	}
}

// TestRangeZeroSuffix: "bytes=-0" asks for no byte at all: 416, not a 206
// with an impossible Content-Range (issue 14 item 16).
func TestRangeZeroSuffix(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "PUT", "/f.txt", strings.NewReader("hello"))
	resp, _ := env.do(t, "GET", "/f.txt", nil, "Range", "bytes=-0")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != "bytes */5" {
		t.Errorf("Range bytes=-0: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	resp, body := env.do(t, "GET", "/f.txt", nil, "Range", "bytes=-2")
	if resp.StatusCode != http.StatusPartialContent || body != "lo" {
		t.Errorf("Range bytes=-2: %d %q", resp.StatusCode, body)
	}
}

// TestListingHrefsPlain: the HTML listing's hrefs need no character
// reference, so a mirror tool reading them with a regular expression
// fetches every file (issue 14 item 15).
func TestListingHrefsPlain(t *testing.T) {
	env := newTestEnv(t)
	names := []string{"a+b.bin", "x&y.txt", "k=v", "it's", "semi;colon", "hash#tag", "per%cent", "what?", "sp ace"}
	for _, n := range names {
		if resp, _ := env.do(t, "PUT", "/"+escapeForTest(n), strings.NewReader(n)); resp.StatusCode/100 != 2 {
			t.Fatalf("PUT %q: %d", n, resp.StatusCode)
		}
	}
	resp, page := env.do(t, "GET", "/", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("listing: %d", resp.StatusCode)
	}
	hrefs := regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1)
	got := map[string]bool{}
	for _, m := range hrefs {
		h := m[1]
		if strings.ContainsAny(h, "&#") {
			t.Errorf("href %q needs an HTML entity", h)
			continue
		}
		resp, body := env.do(t, "GET", "/"+strings.TrimPrefix(h, "./"), nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET of href %q: %d", h, resp.StatusCode)
			continue
		}
		got[body] = true
	}
	for _, n := range names {
		if !got[n] {
			t.Errorf("no href of the listing led to %q", n)
		}
	}
}

// escapeForTest percent-encodes a name for a request path.
func escapeForTest(n string) string {
	r := strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F", " ", "%20")
	return r.Replace(n)
}

// TestClientFaultsNotErrors: refusals a client causes are not logged at
// error level (issue 14 item 16): a Content-Range PUT (501), a Destination
// on another server (502), a full quota (507).
func TestClientFaultsNotErrors(t *testing.T) {
	env := newTestEnv(t, withQuota(10))
	h := &records{}
	url := env.serveWith(t, Options{Logger: slog.New(h)})
	do := func(method, path string, body io.Reader, hdr ...string) int {
		req, _ := http.NewRequest(method, url+path, body)
		req.SetBasicAuth(testUser, testPass)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("PUT", "/a", strings.NewReader("x"), "Content-Range", "bytes 0-0/1"); code != 501 {
		t.Errorf("Content-Range PUT: %d", code)
	}
	if code := do("PUT", "/small", strings.NewReader("x")); code/100 != 2 {
		t.Fatalf("PUT: %d", code)
	}
	if code := do("COPY", "/small", nil, "Destination", "http://elsewhere.example/x"); code != 502 {
		t.Errorf("foreign Destination: %d", code)
	}
	if code := do("PUT", "/big", strings.NewReader(strings.Repeat("x", 100))); code != 507 {
		t.Errorf("over quota: %d", code)
	}
	if errs := h.errorsLogged(); len(errs) > 0 {
		t.Errorf("client-caused refusals logged at error level: %q", errs)
	}
}

const lockInfoScope = `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:%s/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>x</D:owner></D:lockinfo>`

// TestReadOnlyNoLock: a read-only account takes no lock, exclusive or
// shared (it could keep writers out); a writer still can (issue 14 item 12).
func TestReadOnlyNoLock(t *testing.T) {
	env := newTestEnv(t, withPerms(perm.ReadOnly))
	if resp, _ := env.doAs(t, otherUser, otherPass, "PUT", "/doc.txt", strings.NewReader("x")); resp.StatusCode/100 != 2 {
		t.Fatalf("PUT as bob: %d", resp.StatusCode)
	}
	// alice is read-only; bob's home is his own, so lock in alice's home.
	h := env.home(t, testUser)
	if err := writeFileFS(h, "/doc.txt", "x"); err != nil {
		t.Fatal(err)
	}
	for _, scope := range []string{"exclusive", "shared"} {
		resp, _ := env.do(t, "LOCK", "/doc.txt", strings.NewReader(fmt.Sprintf(lockInfoScope, scope)), "Timeout", "Second-60")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("read-only %s LOCK: %d, want 403", scope, resp.StatusCode)
		}
		resp, _ = env.do(t, "LOCK", "/new.txt", strings.NewReader(fmt.Sprintf(lockInfoScope, scope)))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("read-only %s LOCK of a new name: %d, want 403", scope, resp.StatusCode)
		}
	}
	if _, err := h.Stat("/new.txt"); err == nil {
		t.Error("a refused LOCK created a file")
	}
	resp, _ := env.doAs(t, otherUser, otherPass, "LOCK", "/doc.txt", strings.NewReader(fmt.Sprintf(lockInfoScope, "exclusive")))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("writer's LOCK: %d", resp.StatusCode)
	}
}

// TestCopyRefusedLeavesNothing: a COPY refused for its depth leaves no
// partial tree at the destination (issue 14 item 12).
func TestCopyRefusedLeavesNothing(t *testing.T) {
	env := newTestEnv(t)
	h := env.home(t, testUser)
	deep := "/src"
	for i := 0; i <= maxCopyDepth+1; i++ {
		deep += "/d"
	}
	if err := h.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFileFS(h, "/src/top.txt", "top"); err != nil {
		t.Fatal(err)
	}
	resp, _ := env.do(t, "COPY", "/src", nil, "Destination", env.URL+"/dst")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("COPY of a too deep tree: %d, want 403", resp.StatusCode)
	}
	if _, err := h.Stat("/dst"); err == nil {
		t.Error("a refused COPY left a partial copy at the destination")
	}
}

func writeFileFS(f *vfs.FS, name, data string) error {
	w, err := f.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, data); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// TestProppatchQuotaAndCaps: dead properties count against the quota
// (507) and are capped per value (403): a user with a 1 MiB quota cannot
// store more through PROPPATCH (issue 14 item 4).
func TestProppatchQuotaAndCaps(t *testing.T) {
	env := newTestEnv(t, withQuota(1<<20))
	patch := func(name, key string, size int) int {
		body := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:` + key + `>` +
			strings.Repeat("v", size) + `</Z:` + key + `></D:prop></D:set></D:propertyupdate>`
		resp, _ := env.do(t, "PROPPATCH", name, strings.NewReader(body))
		return resp.StatusCode
	}
	if code := patch("/", "big", 64<<10+1); code != http.StatusForbidden {
		t.Errorf("a 64 KiB+1 property value: %d, want 403", code)
	}
	stored, code := 0, 0
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("/f%d", i/8)
		if i%8 == 0 {
			env.do(t, "PUT", name, strings.NewReader(""))
		}
		if code = patch(name, fmt.Sprintf("p%d", i), 60<<10); code != http.StatusMultiStatus {
			break
		}
		stored++
	}
	if code != http.StatusInsufficientStorage {
		t.Errorf("after %d properties of 60 KiB under a 1 MiB quota: %d, want 507", stored, code)
	}
	if stored*(60<<10) > 1<<20 {
		t.Errorf("%d bytes of properties stored under a 1 MiB quota", stored*(60<<10))
	}
}

// TestPutAnnouncedTooLarge: a PUT announcing more than --max-file-size is
// refused with 413 before its body is read (issue 14 item 8).
func TestPutAnnouncedTooLarge(t *testing.T) {
	env := newTestEnv(t)
	c := dialFrom(t, env.URL, "127.0.0.1")
	fmt.Fprintf(c, "PUT /huge HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Length: %d\r\n\r\nstart", basicAuth(testUser, testPass), int64(1)<<41)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT announcing 2 TiB: %d, want 413", resp.StatusCode)
	}
}
