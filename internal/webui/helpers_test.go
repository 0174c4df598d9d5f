package webui

import (
	"bytes"
	"context"
	"html"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil"
	fx "github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// fakeClock is the UI's and the user DB's Options.Now.
type fakeClock = testutil.Clock

// fixture is a UI over a fresh store and user DB, served by an httptest
// TLS server (so Secure cookies flow as in production).
type fixture struct {
	t        testing.TB
	store    *vfs.Store
	storeDir string
	db       *users.DB
	clock    *fakeClock
	ui       *UI
	srv      *httptest.Server
}

type fixtureOpt func(*users.Options, *Options)

func newFixture(t testing.TB, fopts ...fixtureOpt) *fixture {
	t.Helper()
	dir := t.TempDir()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, storeDir: filepath.Join(dir, "store"), clock: testutil.NewClock(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))}
	f.store = fx.Store(t, f.storeDir, vfs.Options{Keyring: kr})
	uopts := users.Options{
		Argon2:   users.Argon2Params{Time: 1, Memory: 64, Threads: 1},
		Now:      f.clock.Now,
		CacheTTL: -1,
		Defender: users.DefenderOptions{Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }},
	}
	opts := Options{Store: f.store, Logger: testLogger(t), Secure: true, Now: f.clock.Now}
	for _, o := range fopts {
		o(&uopts, &opts)
	}
	f.db = fx.Users(t, filepath.Join(dir, "users.db"), uopts)
	opts.Users = f.db
	f.ui, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(f.ui.Prefix(), f.ui)
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// addUser adds a user with perms and returns its home FS (full rights).
func (f *fixture) addUser(name, password string, perms users.Perm, quota int64) *vfs.FS {
	f.t.Helper()
	if err := f.db.Add(context.Background(), users.User{Name: name, Perms: perms, QuotaBytes: quota}, []byte(password)); err != nil {
		f.t.Fatal(err)
	}
	fsys, err := f.store.Home(name, vfs.HomeOptions{Perm: vfs.PermAll})
	if err != nil {
		f.t.Fatal(err)
	}
	return fsys
}

// client is a cookie-keeping HTTP client that does not follow redirects.
type client struct {
	t    testing.TB
	f    *fixture
	c    *http.Client
	csrf string
}

func (f *fixture) client() *client {
	f.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	// srv.Client() is shared; each client needs its own jar.
	c := &http.Client{Transport: f.srv.Client().Transport, Jar: jar}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client{t: f.t, f: f, c: c}
}

// resp is a read response.
type resp struct {
	*http.Response
	body string
}

func (c *client) do(req *http.Request) resp {
	c.t.Helper()
	r, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp{r, string(b)}
}

func (c *client) get(path string, hdr ...string) resp {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.f.srv.URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return c.do(req)
}

// getRaw sends path verbatim (no client-side cleaning of ".." or escapes).
func (c *client) getRaw(rawPath string) resp {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.f.srv.URL+"/", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.URL.Opaque = rawPath
	u, _ := url.Parse(c.f.srv.URL + "/ui/")
	for _, ck := range c.c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	return c.do(req)
}

func (c *client) post(path string, form url.Values) resp {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.f.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// postCSRF posts form with the session's CSRF token.
func (c *client) postCSRF(path string, form url.Values) resp {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", c.csrf)
	return c.post(path, form)
}

var (
	reToken = regexp.MustCompile(`name="token" value="([^"]+)"`)
	reCSRF  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

func (c *client) loginResp(name, password string) resp {
	c.t.Helper()
	page := c.get("/ui/login")
	m := reToken.FindStringSubmatch(page.body)
	if m == nil {
		c.t.Fatalf("no login token in %q", page.body)
	}
	return c.post("/ui/login", url.Values{"token": {m[1]}, "username": {name}, "password": {password}})
}

// login signs in and fetches the CSRF token from the file list.
func (c *client) login(name, password string) {
	c.t.Helper()
	r := c.loginResp(name, password)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/" {
		c.t.Fatalf("login %s: %d %s %q", name, r.StatusCode, r.Header.Get("Location"), r.body)
	}
	c.refreshCSRF()
}

func (c *client) refreshCSRF() {
	c.t.Helper()
	list := c.get("/ui/files/")
	m := reCSRF.FindStringSubmatch(list.body)
	if list.StatusCode != http.StatusOK || m == nil {
		c.t.Fatalf("file list: %d %q", list.StatusCode, list.body)
	}
	c.csrf = html.UnescapeString(m[1])
}

// uploadFile is one file of a multipart upload.
type uploadFile struct {
	name string
	data []byte
}

// multipartBody builds an upload form body: csrf first, then overwrite, then files.
func multipartBody(t testing.TB, csrf string, overwrite bool, files ...uploadFile) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if csrf != "" {
		_ = mw.WriteField("csrf", csrf)
	}
	if overwrite {
		_ = mw.WriteField("overwrite", "1")
	}
	for _, f := range files {
		w, err := mw.CreateFormFile("file", f.name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(f.data)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), &buf
}

func (c *client) upload(dir string, hdr http.Header, ctype string, body io.Reader) resp {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.f.srv.URL+"/ui/upload"+dir, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ctype)
	return c.do(req)
}

func readAll(t testing.TB, fsys *vfs.FS, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, fsys *vfs.FS, name string, data []byte) {
	t.Helper()
	fx.WriteFile(t, fsys, name, data)
}
