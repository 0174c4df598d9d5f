package davd

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"

	"github.com/securefsd/securefsd/internal/testutil"
)

func TestStatusOf(t *testing.T) {
	pe := func(err error) error { return &fs.PathError{Op: "op", Path: "/x", Err: err} }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"quota", pe(vfs.ErrQuota), 507},
		{"file too large", pe(vfs.ErrFileTooLarge), 413},
		{"too many handles", pe(vfs.ErrTooManyHandles), 503},
		{"storage unavailable", pe(vfs.ErrUnavailable), 503},
		{"nospace", pe(vfs.ErrNoSpace), 507},
		{"wrapped quota", fmt.Errorf("davd: x: %w", pe(vfs.ErrQuota)), 507},
		{"notexist", pe(fs.ErrNotExist), 404},
		{"permission", pe(fs.ErrPermission), 403},
		{"exist", pe(fs.ErrExist), 405},
		{"integrity", pe(vfs.ErrIntegrity), 500},
		{"invalid name", pe(vfs.ErrInvalidName), 400},
		{"not empty", pe(vfs.ErrNotEmpty), 409},
		{"not dir", pe(vfs.ErrNotDir), 409},
		{"is dir", pe(vfs.ErrIsDir), 409},
		{"unsupported", pe(vfs.ErrUnsupported), 501},
		{"locked", errLocked, 423},
		{"bad xml", fmt.Errorf("%w: x", errBadXML), 400},
		{"explicit", httpErr(409, "parent"), 409},
		{"canceled", context.Canceled, 400},
		{"client gone", io.ErrUnexpectedEOF, 400},
		{"other", errors.New("boom"), 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusOf(tt.err); got != tt.want {
				t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func wantStatus(t testing.TB, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		if len(body) > 500 {
			body = body[:500] + "..."
		}
		t.Fatalf("%s %s: status %d, want %d; body: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuth(t *testing.T) {
	env := newTestEnv(t)
	resp, body := env.doAs(t, "", "", "PROPFIND", "/", nil, "Depth", "0")
	wantStatus(t, resp, body, 401)
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="securefsd", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	resp, body = env.doAs(t, testUser, "wrong", "PROPFIND", "/", nil, "Depth", "0")
	wantStatus(t, resp, body, 401)
	resp, body = env.doAs(t, "nobody", "x", "GET", "/", nil)
	wantStatus(t, resp, body, 401)

	// OPTIONS without credentials answers the DAV headers (Windows probes it).
	resp, body = env.doAs(t, "", "", "OPTIONS", "/", nil)
	wantStatus(t, resp, body, 200)
	if resp.Header.Get("DAV") != "1, 2" || resp.Header.Get("MS-Author-Via") != "DAV" {
		t.Errorf("OPTIONS headers: %v", resp.Header)
	}

	// Each user sees only their own home.
	resp, body = env.do(t, "PUT", "/secret.txt", strings.NewReader("alice's"))
	wantStatus(t, resp, body, 201)
	resp, body = env.doAs(t, otherUser, otherPass, "GET", "/secret.txt", nil)
	wantStatus(t, resp, body, 404)
	resp, body = env.doAs(t, otherUser, otherPass, "GET", "/../alice/secret.txt", nil)
	wantStatus(t, resp, body, 404)
	resp, body = env.doAs(t, otherUser, otherPass, "DELETE", "/secret.txt", nil)
	wantStatus(t, resp, body, 404)
	resp, body = env.do(t, "GET", "/secret.txt", nil)
	wantStatus(t, resp, body, 200)
	if body != "alice's" {
		t.Errorf("GET = %q", body)
	}
	if env.Recs.Count(func(r testutil.Record) bool {
		return r.Message == "dav request" && r.Attr("user") == "alice" && r.Attr("method") == "GET"
	}) == 0 {
		t.Errorf("access log lacks user/method:\n%s", env.Log.String())
	}
}

func TestBanned(t *testing.T) {
	dirEnv := newTestEnvBan(t)
	for i := 0; i < 3; i++ {
		resp, body := dirEnv.doAs(t, testUser, "wrong", "GET", "/", nil)
		wantStatus(t, resp, body, 401)
	}
	resp, body := dirEnv.doAs(t, testUser, testPass, "GET", "/", nil)
	wantStatus(t, resp, body, 429)
}

func TestPutGet(t *testing.T) {
	env := newTestEnv(t)
	data := randBytes(t, 300_000)
	resp, body := env.do(t, "PUT", "/a.bin", bytes.NewReader(data))
	wantStatus(t, resp, body, 201)
	if resp.Header.Get("ETag") == "" {
		t.Error("PUT gave no ETag")
	}
	// The ETag a PUT answers with (taken at the upload's close) is the
	// one the file then has for HEAD and PROPFIND.
	sameETag := func(put *http.Response) {
		t.Helper()
		head, body := env.do(t, "HEAD", "/a.bin", nil)
		wantStatus(t, head, body, 200)
		pf, body := env.do(t, "PROPFIND", "/a.bin", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`), "Depth", "0")
		wantStatus(t, pf, body, 207)
		want := put.Header.Get("ETag")
		if head.Header.Get("ETag") != want || !strings.Contains(body, html.EscapeString(want)) {
			t.Errorf("PUT's ETag %s; HEAD's %s; PROPFIND: %s", want, head.Header.Get("ETag"), body)
		}
	}
	sameETag(resp)
	resp, body = env.do(t, "PUT", "/a.bin", bytes.NewReader(data[:1000]))
	wantStatus(t, resp, body, 204)
	sameETag(resp)
	resp, body = env.do(t, "GET", "/a.bin", nil)
	wantStatus(t, resp, body, 200)
	if body != string(data[:1000]) {
		t.Fatalf("GET returned %d bytes, want the 1000 of the second PUT", len(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("Content-Security-Policy") != "sandbox" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET of a file lacks the sandbox headers: %v", resp.Header)
	}

	// Empty file.
	resp, body = env.do(t, "PUT", "/empty.txt", http.NoBody)
	wantStatus(t, resp, body, 201)
	resp, body = env.do(t, "GET", "/empty.txt", nil)
	wantStatus(t, resp, body, 200)
	if body != "" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("empty GET: %q %q", body, resp.Header.Get("Content-Type"))
	}

	// Chunked upload (Finder): no Content-Length.
	req, _ := http.NewRequest("PUT", env.URL+"/chunked.bin", io.MultiReader(bytes.NewReader(data)))
	req.SetBasicAuth(testUser, testPass)
	req.Header.Set("X-Expected-Entity-Length", fmt.Sprint(len(data)))
	req.ContentLength = -1
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 201 {
		t.Fatalf("chunked PUT: %d", r2.StatusCode)
	}
	resp, body = env.do(t, "GET", "/chunked.bin", nil)
	if body != string(data) {
		t.Fatalf("chunked GET: %d bytes", len(body))
	}

	// Errors.
	resp, body = env.do(t, "PUT", "/no/parent.txt", strings.NewReader("x"))
	wantStatus(t, resp, body, 409)
	resp, body = env.do(t, "MKCOL", "/dir", nil)
	wantStatus(t, resp, body, 201)
	resp, body = env.do(t, "PUT", "/dir", strings.NewReader("x"))
	wantStatus(t, resp, body, 405)
	resp, body = env.do(t, "PUT", "/a.bin", strings.NewReader("tail"), "Content-Range", "bytes 1000-1003/1004")
	wantStatus(t, resp, body, 501)
	resp, body = env.do(t, "GET", "/a.bin", nil)
	if body != string(data[:1000]) {
		t.Fatal("a refused Content-Range PUT changed the file")
	}
	resp, body = env.do(t, "PUT", "/a.bin", strings.NewReader("x"), "If-None-Match", "*")
	wantStatus(t, resp, body, 412)
	resp, body = env.do(t, "PUT", "/.securefsd-x", strings.NewReader("x"))
	wantStatus(t, resp, body, 403)
}

func TestPermissions(t *testing.T) {
	env := newTestEnv(t, withPerms(users.PermReadOnly))
	resp, body := env.do(t, "PUT", "/x.txt", strings.NewReader("x"))
	wantStatus(t, resp, body, 403)
	resp, body = env.do(t, "MKCOL", "/d", nil)
	wantStatus(t, resp, body, 403)
	resp, body = env.do(t, "PROPFIND", "/", nil, "Depth", "1")
	wantStatus(t, resp, body, 207)
}

// TestGetListOnly: a GET opens the name first (handler.get); a user who
// may list but not download still gets a directory's listing, and a
// file's content is refused.
func TestGetListOnly(t *testing.T) {
	env := newTestEnv(t, withPerms(users.PermList))
	home := env.home(t, testUser)
	if err := home.Mkdir("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, home, "/d/secret.txt", []byte("not for listers"))
	resp, body := env.do(t, "GET", "/d/", nil)
	wantStatus(t, resp, body, 200)
	if !strings.Contains(body, "secret.txt") {
		t.Errorf("listing lacks the file:\n%s", body)
	}
	resp, body = env.do(t, "GET", "/d/secret.txt", nil)
	wantStatus(t, resp, body, 403)
	if strings.Contains(body, "not for listers") {
		t.Error("a list-only user read a file's content")
	}
	resp, body = env.do(t, "GET", "/d/none.txt", nil)
	wantStatus(t, resp, body, 404)
}

func TestQuota(t *testing.T) {
	env := newTestEnv(t, withQuota(100_000))
	resp, body := env.do(t, "PUT", "/big.bin", bytes.NewReader(randBytes(t, 200_000)))
	wantStatus(t, resp, body, 507)

	req, _ := http.NewRequest("PUT", env.URL+"/big2.bin", io.MultiReader(bytes.NewReader(randBytes(t, 10))))
	req.SetBasicAuth(testUser, testPass)
	req.Header.Set("X-Expected-Entity-Length", "200000")
	req.ContentLength = -1
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 507 {
		t.Fatalf("chunked PUT over quota: %d", r2.StatusCode)
	}

	// Chunked with no announced length: the vfs stops it while writing.
	req, _ = http.NewRequest("PUT", env.URL+"/big3.bin", io.MultiReader(bytes.NewReader(randBytes(t, 200_000))))
	req.SetBasicAuth(testUser, testPass)
	req.ContentLength = -1
	r3, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != 507 {
		t.Fatalf("unannounced chunked PUT over quota: %d", r3.StatusCode)
	}
	for _, n := range []string{"/big.bin", "/big2.bin", "/big3.bin"} {
		resp, body = env.do(t, "GET", n, nil)
		wantStatus(t, resp, body, 404)
	}
	resp, body = env.do(t, "PROPFIND", "/", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>`), "Depth", "0")
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, "<D:quota-available-bytes>100000</D:quota-available-bytes>") || !strings.Contains(body, "<D:quota-used-bytes>0</D:quota-used-bytes>") {
		t.Errorf("quota props:\n%s", body)
	}
}

func TestRange(t *testing.T) {
	env := newTestEnv(t)
	data := randBytes(t, 200_000)
	resp, body := env.do(t, "PUT", "/r.bin", bytes.NewReader(data))
	wantStatus(t, resp, body, 201)
	for _, off := range []int{0, 65535, 65536, 65537, 131071, 131072, 199_999} {
		for _, n := range []int{1, 2, 3, 65536} {
			end := min(off+n, len(data)) - 1
			t.Run(fmt.Sprintf("%d+%d", off, n), func(t *testing.T) {
				resp, body := env.do(t, "GET", "/r.bin", nil, "Range", fmt.Sprintf("bytes=%d-%d", off, end))
				wantStatus(t, resp, body, 206)
				if body != string(data[off:end+1]) {
					t.Fatalf("range %d-%d: wrong bytes", off, end)
				}
			})
		}
	}
	resp, body = env.do(t, "GET", "/r.bin", nil, "Range", "bytes=-10")
	wantStatus(t, resp, body, 206)
	if body != string(data[len(data)-10:]) {
		t.Fatal("suffix range: wrong bytes")
	}
	resp, _ = env.do(t, "HEAD", "/r.bin", nil)
	if resp.ContentLength != int64(len(data)) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD: length %d, Accept-Ranges %q", resp.ContentLength, resp.Header.Get("Accept-Ranges"))
	}
	tag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	resp, body = env.do(t, "GET", "/r.bin", nil, "If-None-Match", tag)
	wantStatus(t, resp, body, 304)
	resp, body = env.do(t, "GET", "/r.bin", nil, "If-Modified-Since", lastMod)
	wantStatus(t, resp, body, 304)
	resp, body = env.do(t, "GET", "/r.bin", nil, "Range", "bytes=300000-")
	wantStatus(t, resp, body, 416)
}

const propfindAll = `<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`

func TestPropfind(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "MKCOL", "/d", nil)
	env.do(t, "PUT", "/d/a.txt", strings.NewReader("hello"))
	env.do(t, "PUT", "/d/b <&>.pdf", strings.NewReader("pdf"))
	env.do(t, "MKCOL", "/d/sub", nil)

	for _, depth := range []string{"", "infinity"} {
		resp, body := env.do(t, "PROPFIND", "/d", strings.NewReader(propfindAll), "Depth", depth)
		wantStatus(t, resp, body, 403)
		if !strings.Contains(body, "propfind-finite-depth") {
			t.Errorf("Depth %q: body %s", depth, body)
		}
	}
	resp, body := env.do(t, "PROPFIND", "/d", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>`), "Depth", "0")
	wantStatus(t, resp, body, 400)
	resp, body = env.do(t, "PROPFIND", "/d", strings.NewReader(`<D:propfind xmlns:D="DAV:"><D:prop>`), "Depth", "0")
	wantStatus(t, resp, body, 400)

	// No 301 for a missing trailing slash; one response per member.
	resp, body = env.do(t, "PROPFIND", "/d", strings.NewReader(propfindAll), "Depth", "1")
	wantStatus(t, resp, body, 207)
	for _, want := range []string{
		"<D:href>/d/</D:href>", "<D:href>/d/a.txt</D:href>", "<D:href>/d/b%20%3C&amp;%3E.pdf</D:href>", "<D:href>/d/sub/</D:href>",
		"<D:getcontentlength>5</D:getcontentlength>", "<D:getcontenttype>text/plain; charset=utf-8</D:getcontenttype>",
		"<D:getcontenttype>application/pdf</D:getcontenttype>", "<D:collection/>", "<D:getetag>&#34;",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("PROPFIND Depth 1 lacks %s:\n%s", want, body)
		}
	}
	if n := strings.Count(body, "<D:response>"); n != 4 {
		t.Errorf("%d responses, want 4", n)
	}
	resp, body = env.do(t, "PROPFIND", "/d", nil, "Depth", "1,noroot")
	wantStatus(t, resp, body, 207)
	if n := strings.Count(body, "<D:response>"); n != 3 || strings.Contains(body, "<D:href>/d/</D:href>") {
		t.Errorf("noroot: %d responses\n%s", n, body)
	}

	// Empty body = allprop; unknown props 404 in their own propstat.
	resp, body = env.do(t, "PROPFIND", "/d/a.txt", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getlastmodified/><x:nope xmlns:x="urn:x"/></D:prop></D:propfind>`), "Depth", "0")
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, "HTTP/1.1 404 Not Found") || !strings.Contains(body, `<nope xmlns="urn:x"/>`) || !strings.Contains(body, "GMT</D:getlastmodified>") {
		t.Errorf("prop PROPFIND:\n%s", body)
	}

	// Fast 404s for Finder's probes.
	for _, p := range []string{"/._a.txt", "/d/.DS_Store", "/.Spotlight-V100", "/.metadata_never_index"} {
		resp, body = env.do(t, "PROPFIND", p, nil, "Depth", "0")
		wantStatus(t, resp, body, 404)
	}
}

// TestPropfindOpensNoFile corrupts a file's stored bytes: a listing (sizes,
// types, ETags) still works because PROPFIND never opens or decrypts it,
// while GET fails and logs an integrity error naming the file.
func TestPropfindOpensNoFile(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "PUT", "/f.txt", strings.NewReader(strings.Repeat("secret ", 1000)))
	corruptStoredFile(t, env, testUser, "f.txt")
	env.do(t, "PUT", "/empty.txt", http.NoBody)
	corruptStoredFile(t, env, testUser, "empty.txt")
	resp, body := env.do(t, "GET", "/empty.txt", nil)
	wantStatus(t, resp, body, 500)
	resp, body = env.do(t, "PROPFIND", "/", strings.NewReader(propfindAll), "Depth", "1")
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, "<D:href>/f.txt</D:href>") || !strings.Contains(body, "<D:getcontentlength>7000</D:getcontentlength>") || strings.Contains(body, "HTTP/1.1 500") {
		t.Fatalf("listing of a damaged file:\n%s", body)
	}
	resp, body = env.do(t, "GET", "/f.txt", nil)
	wantStatus(t, resp, body, 500)
	if strings.Contains(body, "secret") {
		t.Fatal("GET of a damaged file returned plaintext")
	}
	if !env.logged(eventIntegrity, "/f.txt") {
		t.Errorf("no log line naming the file and integrity:\n%s", env.Log.String())
	}
}

func TestChecksumsAndOCMtime(t *testing.T) {
	env := newTestEnv(t)
	data := randBytes(t, 100_000)
	s1, m5 := sha1.Sum(data), md5.Sum(data)
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	resp, body := env.do(t, "PUT", "/c.bin", bytes.NewReader(data),
		"X-OC-Mtime", fmt.Sprint(mtime.Unix()), "OC-Checksum", "SHA1:"+hex.EncodeToString(s1[:]))
	wantStatus(t, resp, body, 201)
	if resp.Header.Get("X-OC-Mtime") != "accepted" {
		t.Errorf("X-OC-Mtime reply %q", resp.Header.Get("X-OC-Mtime"))
	}
	fi, err := env.home(t, testUser).Stat("/c.bin")
	if err != nil || !fi.ModTime().Equal(mtime) {
		t.Fatalf("mtime %v (%v), want %v", fi.ModTime(), err, mtime)
	}
	resp, body = env.do(t, "PROPFIND", "/", strings.NewReader(`<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><d:getlastmodified/><d:getcontentlength/><oc:checksums/></d:prop></d:propfind>`), "Depth", "1")
	wantStatus(t, resp, body, 207)
	want := fmt.Sprintf(`<checksums xmlns="http://owncloud.org/ns"><checksum>SHA1:%x MD5:%x</checksum></checksums>`, s1, m5)
	if !strings.Contains(body, want) || !strings.Contains(body, "Thu, 04 Mar 2021 05:06:07 GMT") {
		t.Errorf("PROPFIND lacks %s:\n%s", want, body)
	}

	// A wrong OC-Checksum discards the upload.
	resp, body = env.do(t, "PUT", "/bad.bin", bytes.NewReader(data), "OC-Checksum", "MD5:00000000000000000000000000000000")
	wantStatus(t, resp, body, 400)
	resp, body = env.do(t, "GET", "/bad.bin", nil)
	wantStatus(t, resp, body, 404)

	// MOVE and COPY honour X-OC-Mtime too.
	resp, body = env.do(t, "MOVE", "/c.bin", nil, "Destination", env.URL+"/c2.bin", "X-OC-Mtime", "1600000000")
	wantStatus(t, resp, body, 201)
	if resp.Header.Get("X-OC-Mtime") != "accepted" {
		t.Error("MOVE: no X-OC-Mtime: accepted")
	}
	if fi, _ := env.home(t, testUser).Stat("/c2.bin"); fi == nil || fi.ModTime().Unix() != 1600000000 {
		t.Errorf("MOVE mtime: %v", fi)
	}
}

func TestWin32Proppatch(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "PUT", "/w.txt", http.NoBody)
	env.do(t, "MKCOL", "/wd", nil)
	for _, p := range []string{"/w.txt", "/wd"} {
		resp, body := env.do(t, "PROPPATCH", p, strings.NewReader(`<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>`+
			`<Z:Win32CreationTime>Wed, 01 Jan 2020 10:00:00 GMT</Z:Win32CreationTime>`+
			`<Z:Win32LastAccessTime>Wed, 01 Jan 2020 11:00:00 GMT</Z:Win32LastAccessTime>`+
			`<Z:Win32LastModifiedTime>Wed, 01 Jan 2020 12:00:00 GMT</Z:Win32LastModifiedTime>`+
			`<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>`+
			`</D:prop></D:set></D:propertyupdate>`))
		wantStatus(t, resp, body, 207)
		if strings.Contains(body, "HTTP/1.1 4") || strings.Count(body, "xmlns=\"urn:schemas-microsoft-com:\"") != 4 {
			t.Errorf("PROPPATCH %s:\n%s", p, body)
		}
		fi, err := env.home(t, testUser).Stat(p)
		if err != nil || !fi.ModTime().Equal(time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC)) {
			t.Errorf("%s mtime %v, want the Win32LastModifiedTime", p, fi.ModTime())
		}
	}
	// Protected properties fail as a whole (nothing applied).
	resp, body := env.do(t, "PROPPATCH", "/w.txt", strings.NewReader(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>x</D:getetag><x:a xmlns:x="urn:x">1</x:a></D:prop></D:set></D:propertyupdate>`))
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, "403 Forbidden") || !strings.Contains(body, "424 Failed Dependency") {
		t.Errorf("protected PROPPATCH:\n%s", body)
	}
}

func TestDeadPropsFollowCopyMoveDelete(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "MKCOL", "/p", nil)
	env.do(t, "PUT", "/p/f", strings.NewReader("x"))
	set := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x"><D:set><D:prop><x:color>blue <b xmlns="urn:y">bold</b></x:color></D:prop></D:set></D:propertyupdate>`
	for _, p := range []string{"/p", "/p/f"} {
		resp, body := env.do(t, "PROPPATCH", p, strings.NewReader(set))
		wantStatus(t, resp, body, 207)
	}
	get := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><x:color xmlns:x="urn:x"/></D:prop></D:propfind>`
	has := func(p string) bool {
		t.Helper()
		resp, body := env.do(t, "PROPFIND", p, strings.NewReader(get), "Depth", "0")
		wantStatus(t, resp, body, 207)
		return strings.Contains(body, `<color xmlns="urn:x">blue <b xmlns="urn:y">bold</b></color>`)
	}
	if !has("/p") || !has("/p/f") {
		t.Fatal("props not set")
	}
	resp, body := env.do(t, "COPY", "/p", nil, "Destination", "/q")
	wantStatus(t, resp, body, 201)
	if !has("/q") || !has("/q/f") || !has("/p/f") {
		t.Fatal("COPY did not copy props")
	}
	resp, body = env.do(t, "MOVE", "/q", nil, "Destination", "/r")
	wantStatus(t, resp, body, 201)
	if !has("/r") || !has("/r/f") {
		t.Fatal("MOVE did not keep props")
	}
	resp, body = env.do(t, "DELETE", "/r/f", nil)
	wantStatus(t, resp, body, 204)
	env.do(t, "PUT", "/r/f", strings.NewReader("y"))
	if has("/r/f") {
		t.Fatal("props survived DELETE")
	}
	// MOVE without Overwrite onto an existing resource overwrites (RFC 4918: absent = T).
	resp, body = env.do(t, "MOVE", "/p/f", nil, "Destination", "/r/f")
	wantStatus(t, resp, body, 204)
	resp, body = env.do(t, "COPY", "/r/f", nil, "Destination", "/r/g", "Overwrite", "F")
	wantStatus(t, resp, body, 201)
	resp, body = env.do(t, "COPY", "/r/f", nil, "Destination", "/r/g", "Overwrite", "F")
	wantStatus(t, resp, body, 412)
	resp, body = env.do(t, "COPY", "/r/f", nil, "Destination", "/nope/g")
	wantStatus(t, resp, body, 409)
	resp, body = env.do(t, "MOVE", "/r", nil, "Destination", "/r/inside")
	wantStatus(t, resp, body, 403)
	resp, body = env.do(t, "COPY", "/r/f", nil, "Destination", "http://elsewhere.example/r/h")
	wantStatus(t, resp, body, 502)
}

const lockBody = `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:%s/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>me</D:href></D:owner></D:lockinfo>`

func TestLocks(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "PUT", "/l.txt", strings.NewReader("x"))
	resp, body := env.do(t, "LOCK", "/l.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")), "Timeout", "Second-600")
	wantStatus(t, resp, body, 200)
	tok := resp.Header.Get("Lock-Token")
	if !regexp.MustCompile(`^<opaquelocktoken:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}>$`).MatchString(tok) {
		t.Fatalf("Lock-Token %q", tok)
	}
	if !strings.Contains(body, "<D:timeout>Second-600</D:timeout>") || !strings.Contains(body, `<D:owner><href xmlns="DAV:">me</href></D:owner>`) {
		t.Errorf("LOCK body:\n%s", body)
	}
	resp, body = env.do(t, "PUT", "/l.txt", strings.NewReader("y"))
	wantStatus(t, resp, body, 423)
	resp, body = env.doAs(t, otherUser, otherPass, "PUT", "/l.txt", strings.NewReader("y"))
	wantStatus(t, resp, body, 201) // bob's home is another tree: alice's lock is not his
	resp, body = env.doAs(t, otherUser, otherPass, "PUT", "/l.txt", strings.NewReader("y"), "If", "("+tok+")")
	wantStatus(t, resp, body, 412) // and her token names no lock there
	resp, body = env.do(t, "PUT", "/l.txt", strings.NewReader("y"), "If", "("+tok+")")
	wantStatus(t, resp, body, 204)
	resp, body = env.do(t, "LOCK", "/l.txt", strings.NewReader(fmt.Sprintf(lockBody, "shared")))
	wantStatus(t, resp, body, 423)
	resp, body = env.do(t, "PROPFIND", "/l.txt", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/><D:supportedlock/></D:prop></D:propfind>`), "Depth", "0")
	if !strings.Contains(body, tok[1:len(tok)-1]) || !strings.Contains(body, "<D:shared/>") {
		t.Errorf("lockdiscovery:\n%s", body)
	}
	resp, body = env.do(t, "UNLOCK", "/l.txt", nil, "Lock-Token", "<opaquelocktoken:nope>")
	wantStatus(t, resp, body, 409)
	resp, body = env.do(t, "UNLOCK", "/l.txt", nil, "Lock-Token", tok)
	wantStatus(t, resp, body, 204)

	// Two shared locks coexist; an exclusive one then fails.
	resp, body = env.do(t, "LOCK", "/l.txt", strings.NewReader(fmt.Sprintf(lockBody, "shared")), "Depth", "0")
	wantStatus(t, resp, body, 200)
	s1 := resp.Header.Get("Lock-Token")
	resp, body = env.do(t, "LOCK", "/l.txt", strings.NewReader(fmt.Sprintf(lockBody, "shared")), "Depth", "0")
	wantStatus(t, resp, body, 200)
	resp, body = env.do(t, "LOCK", "/l.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
	wantStatus(t, resp, body, 423)
	resp, body = env.do(t, "PUT", "/l.txt", strings.NewReader("z"), "If", "("+s1+")")
	wantStatus(t, resp, body, 204)
	// ETags in If headers.
	fi, _ := env.home(t, testUser).Stat("/l.txt")
	resp, body = env.do(t, "PUT", "/l.txt", strings.NewReader("z"), "If", "("+s1+` ["nope"])`)
	wantStatus(t, resp, body, 412)
	resp, body = env.do(t, "PUT", "/l.txt", strings.NewReader("z"), "If", "("+s1+" ["+etag(fi)+"])")
	wantStatus(t, resp, body, 204)
	// Refresh.
	resp, body = env.do(t, "LOCK", "/l.txt", nil, "If", "("+s1+")", "Timeout", "Second-100")
	wantStatus(t, resp, body, 200)
	// Lock of an unmapped URL creates an empty file (201).
	resp, body = env.do(t, "LOCK", "/new.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
	wantStatus(t, resp, body, 201)
	// Collection locks cover new members.
	env.do(t, "MKCOL", "/lc", nil)
	resp, body = env.do(t, "LOCK", "/lc", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
	wantStatus(t, resp, body, 200)
	ct := resp.Header.Get("Lock-Token")
	resp, body = env.do(t, "PUT", "/lc/m", strings.NewReader("m"))
	wantStatus(t, resp, body, 423)
	resp, body = env.do(t, "PUT", "/lc/m", strings.NewReader("m"), "If", "("+ct+")")
	wantStatus(t, resp, body, 201)
	resp, body = env.do(t, "DELETE", "/lc", nil, "If", "("+ct+")")
	wantStatus(t, resp, body, 204)
	resp, body = env.do(t, "PUT", "/lc", strings.NewReader("free again"))
	wantStatus(t, resp, body, 201)
}

func TestGetCollection(t *testing.T) {
	env := newTestEnv(t)
	env.do(t, "MKCOL", "/d", nil)
	env.do(t, "PUT", "/d/<script>.txt", strings.NewReader("x"))
	resp, body := env.do(t, "GET", "/d", nil)
	wantStatus(t, resp, body, 200)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;.txt") {
		t.Errorf("listing:\n%s", body)
	}
	resp, body = env.do(t, "OPTIONS", "/d", nil)
	wantStatus(t, resp, body, 200)
	if !strings.Contains(resp.Header.Get("Allow"), "PROPFIND") || resp.Header.Get("DAV") != "1, 2" {
		t.Errorf("OPTIONS: %v", resp.Header)
	}
	resp, body = env.do(t, "MKCOL", "/d", nil)
	wantStatus(t, resp, body, 405)
	resp, body = env.do(t, "MKCOL", "/x/y", nil)
	wantStatus(t, resp, body, 409)
	resp, body = env.do(t, "MKCOL", "/m", strings.NewReader("body"))
	wantStatus(t, resp, body, 415)
	resp, body = env.do(t, "DELETE", "/", nil)
	wantStatus(t, resp, body, 403)
	resp, body = env.do(t, "POST", "/d", nil)
	wantStatus(t, resp, body, 405)
}

// fakeUI stands in for internal/webui: it echoes the path it serves and,
// with lists set, names listing pages like webui's ListURL.
type fakeUI struct{}

func (fakeUI) ServeHTTP(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ui:"+r.URL.Path) }

type listingUI struct{ fakeUI }

func (listingUI) ListURL(dir string) string { return "/ui/files" + (&url.URL{Path: dir}).EscapedPath() }

// TestUIRedirect: a browser opening any collection (or, before it has
// authenticated, any URL) is sent to the web client's page for it with 303;
// WebDAV clients, which do not ask for HTML, are not.
func TestUIRedirect(t *testing.T) {
	const html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	const chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
	tests := []struct {
		name       string
		ui         http.Handler
		auth       bool
		method     string
		path       string
		accept, ua string
		code       int
		location   string
	}{
		{"anon root", listingUI{}, false, "GET", "/", html, chrome, 303, "/ui/files/"},
		{"anon subdir", listingUI{}, false, "GET", "/d/sub%20dir/", html, chrome, 303, "/ui/files/d/sub%20dir"},
		{"anon file", listingUI{}, false, "GET", "/d/f.txt", html, chrome, 303, "/ui/files/d/f.txt"},
		{"anon dotdot", listingUI{}, false, "GET", "/../../etc", html, chrome, 303, "/ui/files/etc"},
		{"auth root", listingUI{}, true, "GET", "/", html, chrome, 303, "/ui/files/"},
		{"auth subdir", listingUI{}, true, "GET", "/d/sub%20dir", html, chrome, 303, "/ui/files/d/sub%20dir"},
		{"auth subdir slash", listingUI{}, true, "GET", "/d/", html, chrome, 303, "/ui/files/d"},
		{"auth HEAD subdir", listingUI{}, true, "HEAD", "/d/", html, chrome, 303, "/ui/files/d"},
		{"auth file", listingUI{}, true, "GET", "/d/f.txt", html, chrome, 200, ""},
		{"auth missing", listingUI{}, true, "GET", "/nope/", html, chrome, 404, ""},
		{"curl", listingUI{}, true, "GET", "/d/", "*/*", "curl/8.14.1", 200, ""},
		{"curl anon", listingUI{}, false, "GET", "/d/", "*/*", "curl/8.14.1", 401, ""},
		{"no accept", listingUI{}, true, "GET", "/d/", "", "", 200, ""},
		{"webdav agent", listingUI{}, true, "GET", "/d/", "text/html, */*", "Microsoft-WebDAV-MiniRedir/10.0.19045", 200, ""},
		{"webdav agent anon", listingUI{}, false, "GET", "/d/", "text/html, */*", "WebDAVFS/3.0.0 (03008000) Darwin/22.1.0", 401, ""},
		{"propfind", listingUI{}, true, "PROPFIND", "/d/", html, chrome, 207, ""},
		{"propfind anon", listingUI{}, false, "PROPFIND", "/d/", html, chrome, 401, ""},
		{"ui without ListURL", fakeUI{}, true, "GET", "/d/", html, chrome, 303, "/ui/"},
		{"ui without ListURL anon", fakeUI{}, false, "GET", "/d/", html, chrome, 303, "/ui/"},
		{"no ui", nil, true, "GET", "/d/", html, chrome, 200, ""},
		{"no ui anon", nil, false, "GET", "/d/", html, chrome, 401, ""},
	}
	env := newTestEnv(t)
	env.do(t, "MKCOL", "/d", nil)
	env.do(t, "MKCOL", "/d/sub dir", nil)
	env.do(t, "PUT", "/d/f.txt", strings.NewReader("file"))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	urls := map[http.Handler]string{}
	for _, tt := range tests {
		if _, ok := urls[tt.ui]; !ok {
			urls[tt.ui] = env.serveWith(t, Options{UI: tt.ui})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, urls[tt.ui]+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth {
				req.SetBasicAuth(testUser, testPass)
			}
			req.Header.Set("Accept", tt.accept)
			req.Header.Set("User-Agent", tt.ua)
			if tt.method == "PROPFIND" {
				req.Header.Set("Depth", "0")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || resp.Header.Get("Location") != tt.location {
				t.Fatalf("%s %s: %d Location %q, want %d %q\n%s", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.code, tt.location, body)
			}
			if tt.code == 200 && tt.method == "GET" && strings.HasSuffix(tt.path, "/") && !strings.Contains(string(body), "f.txt") {
				t.Errorf("plain listing lacks f.txt:\n%s", body)
			}
		})
	}
	resp, err := http.Get(urls[listingUI{}] + "/ui/files")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ui:/ui/files" {
		t.Fatalf("UI route: %d %q", resp.StatusCode, body)
	}
}

func TestParseIf(t *testing.T) {
	tests := []struct {
		in    string
		ok    bool
		lists int
	}{
		{"(<opaquelocktoken:a>)", true, 1},
		{`(<opaquelocktoken:a> ["etag"]) (Not <DAV:no-lock> ["etag"])`, true, 2},
		{`<http://h/p> (<opaquelocktoken:a>) <http://h/q> (["x"])`, true, 2},
		{"(Not)", false, 0},
		{"(", false, 0},
		{"<a>", false, 0},
		{"", false, 0},
		{"()", false, 0},
		{"(<a>) <b> (<c>)", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l, ok := parseIf(tt.in)
			if ok != tt.ok || len(l) != tt.lists {
				t.Errorf("parseIf(%q) = %d lists, %v; want %d, %v", tt.in, len(l), ok, tt.lists, tt.ok)
			}
		})
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":                            defaultLockTimeout,
		"Second-600":                  600 * time.Second,
		"Infinite":                    maxLockTimeout,
		"Infinite, Second-4100000000": maxLockTimeout,
		"Second-99999999999":          maxLockTimeout,
		"bogus":                       defaultLockTimeout,
	} {
		if got := parseTimeout(in); got != want {
			t.Errorf("parseTimeout(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestAvailable(t *testing.T) {
	tests := []struct {
		u    vfs.Usage
		want int64
	}{
		{vfs.Usage{DiskTotal: 100, DiskFree: 40}, 40},
		{vfs.Usage{QuotaBytes: 50, UsedBytes: 20, DiskTotal: 100, DiskFree: 40}, 30},
		{vfs.Usage{QuotaBytes: 50, UsedBytes: 20, DiskTotal: 100, DiskFree: 10}, 10},
		{vfs.Usage{QuotaBytes: 50, UsedBytes: 70, DiskTotal: 100, DiskFree: 10}, 0},
		{vfs.Usage{QuotaBytes: 50, UsedBytes: 20}, 30},
	}
	for _, tt := range tests {
		if got := available(&tt.u); got != tt.want {
			t.Errorf("available(%+v) = %d, want %d", tt.u, got, tt.want)
		}
	}
}

// TestChecksumBudget: digests are computed on demand, and one PROPFIND
// reads at most about checksumBudget bytes for them: files past the budget
// get a 404 oc:checksums (logged), which the next listing fills in.
func TestChecksumBudget(t *testing.T) {
	env := newTestEnv(t)
	env.Srv.checksumBudget = 150_000
	sums := map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		data := randBytes(t, 100_000)
		resp, body := env.do(t, "PUT", "/"+n, bytes.NewReader(data))
		wantStatus(t, resp, body, 201)
		sums[n] = fmt.Sprintf("<checksum>SHA1:%x MD5:%x</checksum>", sha1.Sum(data), md5.Sum(data))
	}
	propfind := `<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop><oc:checksums/></d:prop></d:propfind>`
	count := func(body string) int {
		k := 0
		for _, s := range sums {
			if strings.Contains(body, s) {
				k++
			}
		}
		return k
	}
	resp, body := env.do(t, "PROPFIND", "/", strings.NewReader(propfind), "Depth", "1")
	wantStatus(t, resp, body, 207)
	if got := count(body); got != 2 || !strings.Contains(body, "404 Not Found") {
		t.Fatalf("first listing: %d checksums, want 2 and a 404:\n%s", got, body)
	}
	if env.Recs.Count(func(r testutil.Record) bool { return r.Attr("event") == eventHashBudget }) == 0 {
		t.Errorf("deferred checksums not logged:\n%s", env.Log.String())
	}
	resp, body = env.do(t, "PROPFIND", "/", strings.NewReader(propfind), "Depth", "1")
	wantStatus(t, resp, body, 207)
	if got := count(body); got != 3 {
		t.Fatalf("second listing: %d checksums, want 3:\n%s", got, body)
	}
}
