package webui

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

func TestLogin(t *testing.T) {
	f := newFixture(t)
	f.addUser("alice", "alice-password", users.PermAll, 0)

	t.Run("success", func(t *testing.T) {
		c := f.client()
		r := c.loginResp("alice", "alice-password")
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/" {
			t.Fatalf("status %d location %q", r.StatusCode, r.Header.Get("Location"))
		}
		var sc *http.Cookie
		for _, ck := range r.Cookies() {
			if ck.Name == sessionCookie {
				sc = ck
			}
		}
		if sc == nil {
			t.Fatal("no session cookie")
		}
		if !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/ui/" {
			t.Errorf("cookie attributes: %+v", sc)
		}
		if len(sc.Value) != 43 { // 32 bytes base64url
			t.Errorf("session id %q is not 256 bits", sc.Value)
		}
		c.refreshCSRF()
		// The login page now goes straight to the list.
		if r := c.get("/ui/login"); r.StatusCode != http.StatusSeeOther {
			t.Errorf("login page while logged in: %d", r.StatusCode)
		}
	})
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "alice", "nope"},
		{"unknown user", "mallory", "alice-password"},
		{"empty password", "alice", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.client()
			r := c.loginResp(tc.user, tc.pw)
			if r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d", r.StatusCode)
			}
			if !strings.Contains(r.body, "Sign-in failed: wrong user name or password") {
				t.Errorf("message missing: %q", r.body)
			}
			for _, ck := range r.Cookies() {
				if ck.Name == sessionCookie && ck.Value != "" {
					t.Errorf("session cookie set on failure")
				}
			}
			if r := c.get("/ui/files/"); r.StatusCode != http.StatusSeeOther {
				t.Errorf("list without login: %d", r.StatusCode)
			}
		})
	}
	t.Run("no form token", func(t *testing.T) {
		c := f.client()
		r := c.post("/ui/login", url.Values{"username": {"alice"}, "password": {"alice-password"}})
		if r.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d", r.StatusCode)
		}
	})
	t.Run("cross-site", func(t *testing.T) {
		c := f.client()
		page := c.get("/ui/login")
		tok := reToken.FindStringSubmatch(page.body)[1]
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {tok}, "username": {"alice"}, "password": {"alice-password"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		if r := c.do(req); r.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d", r.StatusCode)
		}
	})
	t.Run("next", func(t *testing.T) {
		c := f.client()
		r := c.get("/ui/files/docs/?sort=size")
		if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login?next=") {
			t.Fatalf("status %d location %q", r.StatusCode, r.Header.Get("Location"))
		}
		page := c.get(r.Header.Get("Location"))
		tok := reToken.FindStringSubmatch(page.body)[1]
		r = c.post("/ui/login", url.Values{"token": {tok}, "username": {"alice"}, "password": {"alice-password"}, "next": {"/ui/files/docs/?sort=size"}})
		if r.Header.Get("Location") != "/ui/files/docs/?sort=size" {
			t.Errorf("after login: %q", r.Header.Get("Location"))
		}
		for _, bad := range []string{"https://evil.example/", "//evil.example/ui/", "/ui/../x", "/other", "/ui/\\evil"} {
			if got := f.ui.safeNext(bad); got != "/ui/files/" && bad != "/ui/../x" {
				t.Errorf("safeNext(%q) = %q", bad, got)
			}
		}
	})
}

func TestLoginBan(t *testing.T) {
	f := newFixture(t, func(u *users.Options, _ *Options) {
		u.Defender.AddrThreshold = 3
		u.Defender.BanTime = time.Hour
	})
	f.addUser("alice", "alice-password", users.PermAll, 0)
	c := f.client()
	for i := 0; i < 3; i++ {
		if r := c.loginResp("alice", "wrong"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d", i, r.StatusCode)
		}
	}
	// Banned now: the right password is refused with the same message.
	r := c.loginResp("alice", "alice-password")
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, "Sign-in failed") {
		t.Fatalf("banned login: status %d %q", r.StatusCode, r.body)
	}
	f.clock.Advance(2 * time.Hour)
	if r := c.loginResp("alice", "alice-password"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the ban: status %d", r.StatusCode)
	}
}

func TestListSortAndEscape(t *testing.T) {
	f := newFixture(t)
	home := f.addUser("alice", "pw-alice", users.PermAll, 0)
	if err := home.Mkdir("/zeta dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := home.Mkdir("/alpha", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, home, "/b-small.txt", []byte("hi"))
	writeFile(t, home, "/a-big.bin", bytes.Repeat([]byte("x"), 3*1024*1024/2))
	// "/" cannot be in a name, so this is a folder "<script>alert(1)<"
	// holding "script>.html"; the top level has an <img onerror> file.
	if err := home.Mkdir("/<script>alert(1)<", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, home, "/<script>alert(1)</script>.html", []byte("<script>alert(1)</script>"))
	writeFile(t, home, "/<img src=x onerror=alert(1)>.html", []byte("<svg onload=alert(1)>"))
	if err := home.Chtimes("/b-small.txt", time.Now(), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	c := f.client()
	c.login("alice", "pw-alice")

	order := func(body string, names ...string) []int {
		var pos []int
		for _, n := range names {
			pos = append(pos, strings.Index(body, `data-name="`+n+`"`))
		}
		return pos
	}
	isOrdered := func(p []int) bool {
		for i := range p {
			if p[i] < 0 || i > 0 && p[i] < p[i-1] {
				return false
			}
		}
		return true
	}
	xssDir := "&lt;script&gt;alert(1)&lt;"
	xss := "&lt;img src=x onerror=alert(1)&gt;.html"
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{xssDir, "alpha", "zeta dir", xss, "a-big.bin", "b-small.txt"}},
		{"?sort=name&order=desc", []string{"zeta dir", "alpha", xssDir, "b-small.txt", "a-big.bin", xss}},
		{"?sort=size", []string{"b-small.txt", xss, "a-big.bin"}},
		{"?sort=size&order=desc", []string{"a-big.bin", xss, "b-small.txt"}},
		{"?sort=date", []string{"b-small.txt", "a-big.bin"}},
	} {
		t.Run("sort"+tc.query, func(t *testing.T) {
			r := c.get("/ui/files/" + tc.query)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("status %d", r.StatusCode)
			}
			if p := order(r.body, tc.want...); !isOrdered(p) {
				t.Errorf("order %v of %q wrong", p, tc.want)
			}
		})
	}
	r := c.get("/ui/files/")
	for _, want := range []string{"1.5 MiB", "2 B", `href="/ui/files/zeta%20dir/"`, `href="/ui/dl/a-big.bin"`, ">zeta dir<", "3 folders, 3 files"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, "<img src=x") {
		t.Errorf("unescaped name in the list")
	}
	if !strings.Contains(r.body, xss) || !strings.Contains(r.body, xssDir) {
		t.Errorf("escaped names missing")
	}
	// Inside the folder, the breadcrumb and the file are escaped too.
	in := c.get("/ui/files/%3Cscript%3Ealert%281%29%3C/")
	if in.StatusCode != http.StatusOK || strings.Contains(in.body, "<script>alert") || !strings.Contains(in.body, ">"+xssDir+"</a>") || !strings.Contains(in.body, ">script&gt;.html</a>") {
		t.Errorf("folder page: %d %q", in.StatusCode, in.body)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The XSS file's rename and delete pages escape it too.
	for _, p := range []string{"/ui/rename/%3Cimg%20src=x%20onerror=alert%281%29%3E.html", "/ui/delete/%3Cscript%3Ealert%281%29%3C/script%3E.html"} {
		r := c.get(p)
		if r.StatusCode != http.StatusOK || strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, "<img src=x") || !strings.Contains(r.body, "&gt;.html") {
			t.Errorf("%s: %d %q", p, r.StatusCode, r.body)
		}
	}
	// Its download is an opaque attachment.
	d := c.get("/ui/dl/%3Cscript%3Ealert%281%29%3C/script%3E.html")
	if d.StatusCode != http.StatusOK || d.Header.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(d.Header.Get("Content-Disposition"), `attachment; filename="script>.html"`) {
		t.Errorf("download headers %v", d.Header)
	}
	// A subfolder lists with breadcrumbs.
	r = c.get("/ui/files/zeta%20dir/")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `<a href="/ui/files/zeta%20dir/">zeta dir</a>`) || !strings.Contains(r.body, "This folder is empty.") {
		t.Errorf("subfolder: %d %q", r.StatusCode, r.body)
	}
	// A file URL under files/ redirects to its download.
	if r := c.get("/ui/files/b-small.txt"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/dl/b-small.txt" {
		t.Errorf("files/<file>: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := c.get("/ui/files/missing/"); r.StatusCode != http.StatusNotFound {
		t.Errorf("missing folder: %d", r.StatusCode)
	}
}

func TestDownload(t *testing.T) {
	f := newFixture(t)
	home := f.addUser("alice", "pw-alice", users.PermAll, 0)
	data := make([]byte, 200_000)
	_, _ = rand.Read(data)
	if err := home.Mkdir("/docs", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, home, "/docs/report ü 2026.pdf", data)
	c := f.client()
	c.login("alice", "pw-alice")

	r := c.get("/ui/dl/docs/report%20%C3%BC%202026.pdf")
	if r.StatusCode != http.StatusOK || r.body != string(data) {
		t.Fatalf("status %d, %d bytes", r.StatusCode, len(r.body))
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/octet-stream",
		"Content-Disposition":    `attachment; filename="report _ 2026.pdf"; filename*=UTF-8''report%20%C3%BC%202026.pdf`,
		"X-Content-Type-Options": "nosniff",
		"Accept-Ranges":          "bytes",
		"Content-Length":         "200000",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("download CSP %q lacks sandbox", csp)
	}
	for _, tc := range []struct {
		rng        string
		start, end int
	}{{"bytes=0-0", 0, 1}, {"bytes=65530-65545", 65530, 65546}, {"bytes=199990-", 199990, 200000}, {"bytes=-10", 199990, 200000}} {
		t.Run(tc.rng, func(t *testing.T) {
			r := c.get("/ui/dl/docs/report%20%C3%BC%202026.pdf", "Range", tc.rng)
			if r.StatusCode != http.StatusPartialContent {
				t.Fatalf("status %d", r.StatusCode)
			}
			if r.body != string(data[tc.start:tc.end]) {
				t.Errorf("range body differs")
			}
			if want := fmt.Sprintf("bytes %d-%d/200000", tc.start, tc.end-1); r.Header.Get("Content-Range") != want {
				t.Errorf("Content-Range %q, want %q", r.Header.Get("Content-Range"), want)
			}
		})
	}
	if r := c.get("/ui/dl/docs/report%20%C3%BC%202026.pdf", "Range", "bytes=300000-"); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: %d", r.StatusCode)
	}
	if r := c.get("/ui/dl/docs/"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/docs/" {
		t.Errorf("dl of a folder: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := c.get("/ui/dl/nope"); r.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: %d", r.StatusCode)
	}
}

func TestUpload(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // nothing may be spooled to a temp file
	f := newFixture(t)
	home := f.addUser("alice", "pw-alice", users.PermAll, 0)
	c := f.client()
	c.login("alice", "pw-alice")

	big := make([]byte, 3<<20+17)
	_, _ = rand.Read(big)
	files := []uploadFile{{"big.bin", big}, {"empty.txt", nil}, {"naïve résumé.txt", []byte("hello")}}

	t.Run("multi", func(t *testing.T) {
		ct, body := multipartBody(t, c.csrf, false, files...)
		r := c.upload("/", nil, ct, body)
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/" {
			t.Fatalf("status %d %q", r.StatusCode, r.body)
		}
		for _, uf := range files {
			if got := readAll(t, home, "/"+uf.name); !bytes.Equal(got, uf.data) {
				t.Errorf("%s: %d bytes stored, want %d", uf.name, len(got), len(uf.data))
			}
		}
		if l := c.get("/ui/files/"); !strings.Contains(l.body, "Uploaded 3 files.") {
			t.Errorf("no flash message")
		}
	})
	t.Run("exists", func(t *testing.T) {
		ct, body := multipartBody(t, c.csrf, false, uploadFile{"empty.txt", []byte("new")})
		if r := c.upload("/", nil, ct, body); r.StatusCode != http.StatusConflict {
			t.Fatalf("status %d", r.StatusCode)
		}
		ct, body = multipartBody(t, c.csrf, true, uploadFile{"empty.txt", []byte("new")})
		if r := c.upload("/", nil, ct, body); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("overwrite: status %d", r.StatusCode)
		}
		if got := readAll(t, home, "/empty.txt"); string(got) != "new" {
			t.Errorf("overwrite stored %q", got)
		}
	})
	t.Run("xhr", func(t *testing.T) {
		ct, body := multipartBody(t, "", false, uploadFile{"x.txt", []byte("xhr")})
		r := c.upload("/", http.Header{"X-Csrf-Token": {c.csrf}, "Accept": {"application/json"}}, ct, body)
		if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `"uploaded":["x.txt"]`) {
			t.Fatalf("status %d %q", r.StatusCode, r.body)
		}
	})
	t.Run("mtime", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("csrf", c.csrf)
		_ = mw.WriteField("mtime", "1262304000000") // 2010-01-01
		w, _ := mw.CreateFormFile("file", "dated.txt")
		_, _ = w.Write([]byte("d"))
		w, _ = mw.CreateFormFile("file", "undated.txt")
		_, _ = w.Write([]byte("u"))
		_ = mw.Close()
		if r := c.upload("/", nil, mw.FormDataContentType(), &buf); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d", r.StatusCode)
		}
		want := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
		if fi, err := home.Stat("/dated.txt"); err != nil || !fi.ModTime().Equal(want) {
			t.Errorf("dated.txt: %v %v", fi.ModTime(), err)
		}
		if fi, err := home.Stat("/undated.txt"); err != nil || fi.ModTime().Equal(want) {
			t.Errorf("undated.txt took the previous date: %v", err)
		}
	})
	t.Run("subfolder", func(t *testing.T) {
		if err := home.Mkdir("/sub", 0o755); err != nil {
			t.Fatal(err)
		}
		ct, body := multipartBody(t, c.csrf, false, uploadFile{"in-sub.txt", []byte("s")})
		if r := c.upload("/sub", nil, ct, body); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/sub/" {
			t.Fatalf("status %d %q", r.StatusCode, r.Header.Get("Location"))
		}
		if got := readAll(t, home, "/sub/in-sub.txt"); string(got) != "s" {
			t.Errorf("stored %q", got)
		}
	})
	// Streaming: the body is read part by part. When the handler reads
	// well into the second file, the first is already stored in full; the
	// body then breaks, and the second file is never published.
	t.Run("streamed part by part", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("csrf", c.csrf)
		w, _ := mw.CreateFormFile("file", "first.bin")
		_, _ = w.Write(big)
		firstEnd := int64(buf.Len())
		w, _ = mw.CreateFormFile("file", "second.bin")
		_, _ = w.Write(big[:1<<20])
		checkAt := firstEnd + 256<<10
		var firstSeen []byte
		body := &hookReader{data: buf.Bytes(), at: checkAt, hook: func() { firstSeen = readAll(t, home, "/first.bin") }, err: errors.New("client went away")}
		req := httptest.NewRequest(http.MethodPost, "/ui/upload/", body)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		u, _ := url.Parse(f.srv.URL + "/ui/")
		for _, ck := range c.c.Jar.Cookies(u) {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		f.ui.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("broken upload answered %d", rec.Code)
		}
		if !body.hooked {
			t.Fatal("the handler never read into the second file")
		}
		if !bytes.Equal(firstSeen, big) {
			t.Errorf("first file not stored before the second was read: %d bytes", len(firstSeen))
		}
		if _, err := home.Stat("/second.bin"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("second file published: %v", err)
		}
	})
	t.Run("bad names", func(t *testing.T) {
		for _, name := range []string{"..", ".securefsd-x"} {
			ct, body := multipartBody(t, c.csrf, false, uploadFile{name, []byte("x")})
			if r := c.upload("/", nil, ct, body); r.StatusCode < 400 || r.StatusCode >= 500 {
				t.Errorf("%q: status %d", name, r.StatusCode)
			}
		}
		// A path in the filename keeps only its last element (RFC 7578).
		ct, body := multipartBody(t, c.csrf, false, uploadFile{"../../etc/evil.txt", []byte("x")})
		if r := c.upload("/", nil, ct, body); r.StatusCode != http.StatusSeeOther {
			t.Errorf("status %d", r.StatusCode)
		}
		if _, err := home.Stat("/evil.txt"); err != nil {
			t.Errorf("evil.txt not in home: %v", err)
		}
	})
	ents, err := os.ReadDir(tmp)
	if err != nil || len(ents) != 0 {
		t.Errorf("temp dir holds %d entries (%v): uploads were spooled", len(ents), err)
	}
	// The store holds ciphertext only.
	assertNoPlaintext(t, f.storeDir, big)
}

// hookReader serves data, calls hook once when a read starts at or past
// offset at, and fails with err at the end of data.
type hookReader struct {
	data   []byte
	pos    int64
	at     int64
	hook   func()
	hooked bool
	err    error
}

func (h *hookReader) Read(p []byte) (int, error) {
	if !h.hooked && h.pos >= h.at {
		h.hooked = true
		h.hook()
	}
	if h.pos >= int64(len(h.data)) {
		return 0, h.err
	}
	n := copy(p, h.data[h.pos:])
	h.pos += int64(n)
	return n, nil
}

func assertNoPlaintext(t *testing.T, dir string, pt []byte) {
	t.Helper()
	needle := pt[1000:1064]
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, needle) {
			t.Errorf("plaintext in %s", p)
		}
		return nil
	})
}

func TestMkdirRenameDelete(t *testing.T) {
	f := newFixture(t)
	home := f.addUser("alice", "pw-alice", users.PermAll, 0)
	writeFile(t, home, "/a.txt", []byte("A"))
	writeFile(t, home, "/b.txt", []byte("B"))
	c := f.client()
	c.login("alice", "pw-alice")

	if r := c.postCSRF("/ui/mkdir/", url.Values{"name": {"New <i>folder"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("mkdir: %d %q", r.StatusCode, r.body)
	}
	if fi, err := home.Stat("/New <i>folder"); err != nil || !fi.IsDir() {
		t.Fatalf("mkdir result: %v", err)
	}
	for _, tc := range []struct {
		name string
		want int
	}{{"New <i>folder", http.StatusConflict}, {"", http.StatusBadRequest}, {"a/b", http.StatusBadRequest}, {"..", http.StatusBadRequest}, {".securefsd-meta", http.StatusForbidden}} {
		if r := c.postCSRF("/ui/mkdir/", url.Values{"name": {tc.name}}); r.StatusCode != tc.want && !(tc.want == http.StatusForbidden && r.StatusCode == http.StatusBadRequest) {
			t.Errorf("mkdir %q: %d, want %d", tc.name, r.StatusCode, tc.want)
		}
	}

	// Rename: the form page works without JS, then the POST.
	if r := c.get("/ui/rename/a.txt"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, `action="/ui/rename/a.txt"`) {
		t.Fatalf("rename form: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/rename/a.txt", url.Values{"newname": {"c.txt"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("rename: %d %q", r.StatusCode, r.body)
	}
	if got := readAll(t, home, "/c.txt"); string(got) != "A" {
		t.Errorf("renamed content %q", got)
	}
	if r := c.postCSRF("/ui/rename/c.txt", url.Values{"newname": {"b.txt"}}); r.StatusCode != http.StatusConflict {
		t.Errorf("rename onto existing: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/rename/missing", url.Values{"newname": {"x"}}); r.StatusCode != http.StatusNotFound {
		t.Errorf("rename missing: %d", r.StatusCode)
	}

	// Delete: confirmation page, then POST; folders go with their content.
	writeFile(t, home, "/New <i>folder/inner.txt", []byte("I"))
	r := c.get("/ui/delete/New%20%3Ci%3Efolder")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, "and everything in it") || !strings.Contains(r.body, `id="delete-form"`) {
		t.Fatalf("delete confirm: %d %q", r.StatusCode, r.body)
	}
	if r := c.postCSRF("/ui/delete/New%20%3Ci%3Efolder", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete folder: %d", r.StatusCode)
	}
	if _, err := home.Stat("/New <i>folder"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("folder still there: %v", err)
	}
	if r := c.postCSRF("/ui/delete/c.txt", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete file: %d", r.StatusCode)
	}
	if _, err := home.Stat("/c.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file still there: %v", err)
	}
	if r := c.postCSRF("/ui/delete/", nil); r.StatusCode != http.StatusBadRequest {
		t.Errorf("delete home: %d", r.StatusCode)
	}
	// GET never changes anything.
	if r := c.get("/ui/delete/b.txt"); r.StatusCode != http.StatusOK {
		t.Errorf("confirm page: %d", r.StatusCode)
	}
	if _, err := home.Stat("/b.txt"); err != nil {
		t.Errorf("GET deleted: %v", err)
	}
	if r := c.get("/ui/mkdir/x"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET mkdir: %d", r.StatusCode)
	}
}

func TestCSRFRefused(t *testing.T) {
	f := newFixture(t)
	home := f.addUser("alice", "pw-alice", users.PermAll, 0)
	writeFile(t, home, "/keep.txt", []byte("K"))
	c := f.client()
	c.login("alice", "pw-alice")
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{"/ui/mkdir/", url.Values{"name": {"x"}}},
		{"/ui/rename/keep.txt", url.Values{"newname": {"y"}}},
		{"/ui/delete/keep.txt", nil},
		{"/ui/logout", nil},
	} {
		last := "A"
		if strings.HasSuffix(c.csrf, "A") {
			last = "B"
		}
		for _, tok := range []string{"", "wrong", c.csrf[:len(c.csrf)-1] + last} {
			form := url.Values{}
			for k, v := range tc.form {
				form[k] = v
			}
			if tok != "" {
				form.Set("csrf", tok)
			}
			if r := c.post(tc.path, form); r.StatusCode != http.StatusForbidden {
				t.Errorf("%s token %q: %d", tc.path, tok, r.StatusCode)
			}
		}
	}
	// Upload without token, and with the token only after the file.
	ct, body := multipartBody(t, "", false, uploadFile{"u.txt", []byte("u")})
	if r := c.upload("/", nil, ct, body); r.StatusCode != http.StatusForbidden {
		t.Errorf("upload without token: %d", r.StatusCode)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("file", "u.txt")
	_, _ = w.Write([]byte("u"))
	_ = mw.WriteField("csrf", c.csrf)
	_ = mw.Close()
	if r := c.upload("/", nil, mw.FormDataContentType(), &buf); r.StatusCode != http.StatusForbidden {
		t.Errorf("upload with late token: %d", r.StatusCode)
	}
	ct, body = multipartBody(t, "", false, uploadFile{"u.txt", []byte("u")})
	if r := c.upload("/", http.Header{"X-Csrf-Token": {"nope"}}, ct, body); r.StatusCode != http.StatusForbidden {
		t.Errorf("upload with a bad header token: %d", r.StatusCode)
	}
	// A cross-site POST with the right token is refused too.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/ui/mkdir/", strings.NewReader(url.Values{"csrf": {c.csrf}, "name": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := c.do(req); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", r.StatusCode)
	}
	// Another session's token does not work.
	c2 := f.client()
	c2.login("alice", "pw-alice")
	if r := c.postCSRF("/ui/mkdir/", url.Values{"name": {"ok"}}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("own token: %d", r.StatusCode)
	}
	c.csrf = c2.csrf
	if r := c.postCSRF("/ui/mkdir/", url.Values{"name": {"x2"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("other session's token: %d", r.StatusCode)
	}
	ents, _ := home.ReadDir("/")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "keep.txt,ok" {
		t.Errorf("home holds %v", names)
	}
}

func TestConfinement(t *testing.T) {
	f := newFixture(t)
	f.addUser("alice", "pw-alice", users.PermAll, 0)
	bob := f.addUser("bob", "pw-bob", users.PermAll, 0)
	writeFile(t, bob, "/secret.txt", []byte("bob's secret"))
	c := f.client()
	c.login("alice", "pw-alice")
	for _, p := range []string{
		"/ui/dl/../bob/secret.txt",
		"/ui/dl/%2e%2e/bob/secret.txt",
		"/ui/dl/..%2fbob%2fsecret.txt",
		"/ui/dl/%2e%2e%2f%2e%2e%2fbob%2fsecret.txt",
		"/ui/dl/bob/secret.txt",
		"/ui/dl//bob/secret.txt",
		"/ui/files/../bob/",
		"/ui/files/%2e%2e/",
	} {
		r := c.getRaw(p)
		if r.StatusCode/100 == 3 { // the mux cleans ".." with a redirect
			r = c.get(r.Header.Get("Location"))
		}
		if strings.Contains(r.body, "bob's secret") || strings.Contains(r.body, "secret.txt") {
			t.Errorf("%s: %d leaked bob's file", p, r.StatusCode)
		}
		if r.StatusCode == http.StatusOK && !strings.HasPrefix(p, "/ui/files/") {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
		// Straight at the handler, with no mux cleaning in between.
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path, req.URL.RawPath = "", ""
		req.URL, _ = url.Parse(p)
		u, _ := url.Parse(f.srv.URL + "/ui/")
		for _, ck := range c.c.Jar.Cookies(u) {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		f.ui.ServeHTTP(rec, req)
		if strings.Contains(rec.Body.String(), "bob's secret") || strings.Contains(rec.Body.String(), "secret.txt") {
			t.Errorf("%s direct: %d leaked bob's file", p, rec.Code)
		}
		if strings.HasPrefix(p, "/ui/dl/") && rec.Code != http.StatusNotFound {
			t.Errorf("%s direct: %d, want 404", p, rec.Code)
		}
	}
	// Writes stay in alice's home too.
	if r := c.postCSRF("/ui/delete/..%2Fbob%2Fsecret.txt", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("delete of bob's file: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/rename/x", url.Values{"newname": {"../bob/x"}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("rename into bob's home: %d", r.StatusCode)
	}
	if got := readAll(t, bob, "/secret.txt"); string(got) != "bob's secret" {
		t.Errorf("bob's file changed")
	}
}

func TestPermissions(t *testing.T) {
	f := newFixture(t)
	home := f.addUser("reader", "pw-reader", users.PermReadOnly, 0)
	writeFile(t, home, "/r.txt", []byte("R"))
	c := f.client()
	c.login("reader", "pw-reader")
	r := c.get("/ui/files/")
	if strings.Contains(r.body, `id="upload-form"`) || strings.Contains(r.body, `id="mkdir-form"`) || strings.Contains(r.body, `class="delete"`) {
		t.Errorf("read-only user sees write controls")
	}
	if r := c.get("/ui/dl/r.txt"); r.StatusCode != http.StatusOK || r.body != "R" {
		t.Errorf("download: %d", r.StatusCode)
	}
	ct, body := multipartBody(t, c.csrf, false, uploadFile{"w.txt", []byte("w")})
	if r := c.upload("/", nil, ct, body); r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "You do not have permission") {
		t.Errorf("upload: %d %q", r.StatusCode, r.body)
	}
	for _, p := range []string{"/ui/mkdir/", "/ui/rename/r.txt", "/ui/delete/r.txt"} {
		if r := c.postCSRF(p, url.Values{"name": {"n"}, "newname": {"n"}}); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
	// Rights are re-read when the record changes.
	if err := f.db.Update(context.Background(), "reader", func(u *users.User) error { u.Perms = users.PermAll; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := c.postCSRF("/ui/mkdir/", url.Values{"name": {"now-allowed"}}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("mkdir after grant: %d", r.StatusCode)
	}
}

func TestQuota(t *testing.T) {
	f := newFixture(t)
	f.addUser("small", "pw-small", users.PermAll, 10_000)
	c := f.client()
	c.login("small", "pw-small")
	ct, body := multipartBody(t, c.csrf, false, uploadFile{"huge.bin", make([]byte, 100_000)})
	r := c.upload("/", http.Header{"Accept": {"application/json"}}, ct, body)
	if r.StatusCode != http.StatusInsufficientStorage || !strings.Contains(r.body, "quota") {
		t.Errorf("over quota: %d %q", r.StatusCode, r.body)
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t)
	f.addUser("alice", "pw-alice", users.PermAll, 0)
	c := f.client()
	c.login("alice", "pw-alice")
	old := c.csrf
	// Keep the cookie to replay it after logout.
	u, _ := url.Parse(f.srv.URL + "/ui/")
	cookies := c.c.Jar.Cookies(u)
	r := c.postCSRF("/ui/logout", nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login?bye=1" {
		t.Fatalf("logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if l := c.get("/ui/login?bye=1"); !strings.Contains(l.body, "You have signed out.") {
		t.Errorf("no sign-out message")
	}
	if r := c.get("/ui/files/"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("list after logout: %d", r.StatusCode)
	}
	replay := f.client()
	replay.c.Jar.SetCookies(u, cookies)
	replay.csrf = old
	if r := replay.get("/ui/files/"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("replayed cookie after logout: %d", r.StatusCode)
	}
	if r := replay.postCSRF("/ui/mkdir/", url.Values{"name": {"x"}}); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
		t.Errorf("replayed POST after logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if n := f.ui.SessionCount(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func TestSessionExpiry(t *testing.T) {
	f := newFixture(t, func(_ *users.Options, o *Options) {
		o.IdleTimeout = 30 * time.Minute
		o.MaxAge = 2 * time.Hour
	})
	home := f.addUser("alice", "pw-alice", users.PermAll, 0)
	writeFile(t, home, "/f.txt", []byte("F"))

	t.Run("idle", func(t *testing.T) {
		c := f.client()
		c.login("alice", "pw-alice")
		f.clock.Advance(29 * time.Minute)
		if r := c.get("/ui/files/"); r.StatusCode != http.StatusOK {
			t.Fatalf("before idle timeout: %d", r.StatusCode)
		}
		f.clock.Advance(30 * time.Minute)
		r := c.get("/ui/dl/f.txt")
		if r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "expired=1") {
			t.Fatalf("after idle timeout: %d %q", r.StatusCode, r.Header.Get("Location"))
		}
		if r := c.postCSRF("/ui/delete/f.txt", nil); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
			t.Fatalf("POST after expiry: %d", r.StatusCode)
		}
		if _, err := home.Stat("/f.txt"); err != nil {
			t.Errorf("expired session deleted a file")
		}
	})
	t.Run("absolute", func(t *testing.T) {
		c := f.client()
		c.login("alice", "pw-alice")
		for i := 0; i < 5; i++ { // active every 25 minutes: 2h05m in all
			f.clock.Advance(25 * time.Minute)
			r := c.get("/ui/files/")
			if want := http.StatusOK; i == 4 {
				if r.StatusCode != http.StatusSeeOther {
					t.Fatalf("past max age: %d", r.StatusCode)
				}
			} else if r.StatusCode != want {
				t.Fatalf("step %d: %d", i, r.StatusCode)
			}
		}
	})
	t.Run("xhr", func(t *testing.T) {
		c := f.client()
		c.login("alice", "pw-alice")
		f.clock.Advance(time.Hour)
		ct, body := multipartBody(t, "", false, uploadFile{"late.txt", []byte("l")})
		if r := c.upload("/", http.Header{"X-Csrf-Token": {c.csrf}, "Accept": {"application/json"}}, ct, body); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("XHR after expiry: %d", r.StatusCode)
		}
	})
}

func TestSessionDiesOnUserChange(t *testing.T) {
	f := newFixture(t)
	f.addUser("alice", "pw-alice", users.PermAll, 0)
	f.addUser("bob", "pw-bob", users.PermAll, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func() error
		dies   bool
	}{
		{"other user's password", func() error { return f.db.SetPassword(ctx, "bob", []byte("pw-bob-2")) }, false},
		{"own password", func() error { return f.db.SetPassword(ctx, "alice", []byte("pw-alice-2")) }, true},
		{"disabled", func() error {
			return f.db.Update(ctx, "alice", func(u *users.User) error { u.Disabled = true; return nil })
		}, true},
		{"deleted", func() error { return f.db.Delete(ctx, "alice") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pw := "pw-alice"
			if u, err := f.db.Get(ctx, "alice"); err != nil {
				f.addUser("alice", pw, users.PermAll, 0)
			} else {
				_ = f.db.Update(ctx, "alice", func(u *users.User) error { u.Disabled = false; return nil })
				_ = f.db.SetPassword(ctx, "alice", []byte(pw))
				_ = u
			}
			c := f.client()
			c.login("alice", pw)
			if err := tc.change(); err != nil {
				t.Fatal(err)
			}
			r := c.get("/ui/files/")
			if tc.dies && r.StatusCode != http.StatusSeeOther {
				t.Errorf("session survived: %d", r.StatusCode)
			}
			if !tc.dies && r.StatusCode != http.StatusOK {
				t.Errorf("session died: %d", r.StatusCode)
			}
		})
	}
}

func TestStaticAndRouting(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	for _, tc := range []struct{ path, ctype string }{
		{"/ui/static/app.js", "text/javascript; charset=utf-8"},
		{"/ui/static/app.css", "text/css; charset=utf-8"},
		{"/ui/static/folder.svg", "image/svg+xml"},
	} {
		r := c.get(tc.path)
		if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != tc.ctype || len(r.body) < 100 {
			t.Errorf("%s: %d %q %d bytes", tc.path, r.StatusCode, r.Header.Get("Content-Type"), len(r.body))
		}
	}
	for _, tc := range []struct {
		path string
		want int
	}{{"/ui/static/nope.js", 404}, {"/ui/", 303}, {"/ui/nowhere", 404}, {"/ui/files/", 303}} {
		if r := c.get(tc.path); r.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.path, r.StatusCode, tc.want)
		}
	}
	// Traversal out of static/ straight at the handler (no mux cleaning).
	for _, p := range []string{"/ui/static/../webui.go", "/ui/static/%2e%2e/webui.go", "/ui/static/assets/app.js"} {
		rec := httptest.NewRecorder()
		f.ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
	// The login page links only same-origin assets and has no inline script.
	r := c.get("/ui/login")
	if strings.Contains(r.body, "<script>") || strings.Contains(r.body, "style=") || strings.Contains(r.body, "http://") || strings.Contains(r.body, "https://") {
		t.Errorf("login page has inline code or external links")
	}
}

func TestNewValidates(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"ui/", "/ui", "/a//b/", "/../"} {
		if _, err := New(Options{Store: f.store, Users: f.db, Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if _, err := New(Options{Users: f.db}); err == nil {
		t.Error("nil store accepted")
	}
	ui, err := New(Options{Store: f.store, Users: f.db, Prefix: "/web/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ui.ListURL("/a b/c"); got != "/web/files/a%20b/c" {
		t.Errorf("ListURL = %q", got)
	}
}

func TestHTTPError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&fs.PathError{Op: "write", Path: "/x", Err: vfs.ErrQuota}, http.StatusInsufficientStorage},
		{&fs.PathError{Op: "write", Path: "/x", Err: vfs.ErrFileTooLarge}, http.StatusRequestEntityTooLarge},
		{&fs.PathError{Op: "open", Path: "/x", Err: vfs.ErrTooManyHandles}, http.StatusServiceUnavailable},
		{&fs.PathError{Op: "open", Path: "/x", Err: vfs.ErrUnavailable}, http.StatusServiceUnavailable},
		{&fs.PathError{Op: "write", Path: "/x", Err: vfs.ErrNoSpace}, http.StatusInsufficientStorage},
		{&fs.PathError{Op: "mkdir", Path: "/x", Err: fs.ErrExist}, http.StatusConflict},
		{&fs.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission}, http.StatusForbidden},
		{&fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}, http.StatusNotFound},
		{&fs.PathError{Op: "remove", Path: "/x", Err: vfs.ErrNotEmpty}, http.StatusConflict},
		{&fs.PathError{Op: "open", Path: "/x", Err: vfs.ErrInvalidName}, http.StatusBadRequest},
		{&fs.PathError{Op: "read", Path: "/x", Err: vfs.ErrIntegrity}, http.StatusInternalServerError},
		{fmt.Errorf("wrapped: %w", fs.ErrNotExist), http.StatusNotFound},
		{errors.New("/srv/data/store/alice/x: disk on fire"), http.StatusInternalServerError},
	} {
		got, msg := httpError(tc.err)
		if got != tc.want {
			t.Errorf("%v: %d, want %d", tc.err, got, tc.want)
		}
		if strings.Contains(msg, "/") && strings.Contains(msg, "srv") {
			t.Errorf("message leaks the error: %q", msg)
		}
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {10 * 1024, "10 KiB"}, {5 << 30, "5.0 GiB"}, {1 << 62, "4.0 EiB"}} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"a.txt", `attachment; filename="a.txt"; filename*=UTF-8''a.txt`},
		{`x"y\z;.txt`, `attachment; filename="x_y_z_.txt"; filename*=UTF-8''x%22y%5Cz%3B.txt`},
		{"日本.txt", `attachment; filename="__.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt`},
		{"a\r\nb", `attachment; filename="a__b"; filename*=UTF-8''a%0D%0Ab`},
	} {
		if got := contentDisposition(tc.name); got != tc.want {
			t.Errorf("contentDisposition(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := escapePath("/a b/c?d#e/%"); got != "/a%20b/c%3Fd%23e/%25" {
		t.Errorf("escapePath = %q", got)
	}
}

func TestSessionFixationAndInsecureCookie(t *testing.T) {
	f := newFixture(t)
	f.addUser("alice", "pw-alice", users.PermAll, 0)
	u, _ := url.Parse(f.srv.URL + "/ui/")
	// A planted session id is never adopted: sign-in issues a fresh one.
	planted := strings.Repeat("B", 43)
	c := f.client()
	c.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: planted, Path: "/ui/"}})
	c.login("alice", "pw-alice")
	for _, ck := range c.c.Jar.Cookies(u) {
		if ck.Name == sessionCookie && ck.Value == planted {
			t.Errorf("planted session id adopted")
		}
	}
	if n := f.ui.SessionCount(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
	// A forged cookie value is just "no session".
	forged := f.client()
	forged.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: strings.Repeat("A", 43), Path: "/ui/"}})
	if r := forged.get("/ui/files/"); r.StatusCode != http.StatusSeeOther || strings.Contains(r.Header.Get("Location"), "expired") {
		t.Errorf("forged cookie: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	// Under --insecure-http the cookie drops Secure, keeps the rest.
	g := newFixture(t, func(_ *users.Options, o *Options) { o.Secure = false })
	g.addUser("bob", "pw-bob", users.PermAll, 0)
	r := g.client().loginResp("bob", "pw-bob")
	for _, ck := range r.Cookies() {
		if ck.Name == sessionCookie && (ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode) {
			t.Errorf("insecure-mode cookie: %+v", ck)
		}
	}
}
