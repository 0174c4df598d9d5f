package davd

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWindowsUploadSequence replays Explorer's (WebClient) upload: PROPFIND
// 404, PUT of 0 bytes, LOCK, PROPPATCH of Win32 times, HEAD, PUT, PROPPATCH,
// UNLOCK.
func TestWindowsUploadSequence(t *testing.T) {
	env := newTestEnv(t)
	data := randBytes(t, 150_000)
	resp, body := env.do(t, "PROPFIND", "/New Text.txt", nil, "Depth", "0", "Translate", "f")
	wantStatus(t, resp, body, 404)
	resp, body = env.do(t, "PUT", "/New Text.txt", http.NoBody, "Translate", "f")
	wantStatus(t, resp, body, 201)
	resp, body = env.do(t, "LOCK", "/New Text.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")), "Timeout", "Second-3600", "Depth", "0")
	wantStatus(t, resp, body, 200)
	tok := resp.Header.Get("Lock-Token")
	win32 := func(mod string) string {
		return `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>` +
			`<Z:Win32CreationTime>Tue, 01 Jun 2021 08:00:00 GMT</Z:Win32CreationTime><Z:Win32LastAccessTime>` + mod + `</Z:Win32LastAccessTime>` +
			`<Z:Win32LastModifiedTime>` + mod + `</Z:Win32LastModifiedTime><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>`
	}
	resp, body = env.do(t, "PROPPATCH", "/New Text.txt", strings.NewReader(win32("Tue, 01 Jun 2021 08:00:00 GMT")), "If", "("+tok+")")
	wantStatus(t, resp, body, 207)
	resp, body = env.do(t, "HEAD", "/New Text.txt", nil)
	wantStatus(t, resp, body, 200)
	// Tagged and untagged If forms both name the lock.
	resp, body = env.do(t, "PUT", "/New Text.txt", bytes.NewReader(data[:10]), "If", "<"+env.URL+"/New%20Text.txt> ("+tok+")")
	wantStatus(t, resp, body, 204)
	resp, body = env.do(t, "PUT", "/New Text.txt", bytes.NewReader(data), "If", "("+tok+")")
	wantStatus(t, resp, body, 204)
	resp, body = env.do(t, "PROPPATCH", "/New Text.txt", strings.NewReader(win32("Wed, 02 Jun 2021 09:30:00 GMT")), "If", "("+tok+")")
	wantStatus(t, resp, body, 207)
	if strings.Contains(body, "HTTP/1.1 4") {
		t.Fatalf("PROPPATCH:\n%s", body)
	}
	resp, body = env.do(t, "UNLOCK", "/New Text.txt", nil, "Lock-Token", tok)
	wantStatus(t, resp, body, 204)
	fi, err := env.home(t, testUser).Stat("/New Text.txt")
	if err != nil || fi.Size() != int64(len(data)) || !fi.ModTime().Equal(time.Date(2021, 6, 2, 9, 30, 0, 0, time.UTC)) {
		t.Fatalf("after the sequence: %v %v", fi, err)
	}
	resp, body = env.do(t, "GET", "/New%20Text.txt", nil)
	if body != string(data) {
		t.Fatal("content differs")
	}
}

// TestFinderUploadSequence replays Finder: OPTIONS, PROPFIND of the volume
// (quota), AppleDouble probe, LOCK of the new name, chunked PUT with
// X-Expected-Entity-Length and the token, PROPFIND, Apple PROPPATCH, UNLOCK.
func TestFinderUploadSequence(t *testing.T) {
	env := newTestEnv(t)
	resp, body := env.do(t, "OPTIONS", "/", nil)
	wantStatus(t, resp, body, 200)
	if !strings.Contains(resp.Header.Get("DAV"), "2") {
		t.Fatal("no class 2: Finder would mount read-only")
	}
	resp, body = env.do(t, "PROPFIND", "/", strings.NewReader(`<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:getlastmodified/><D:getcontentlength/><D:resourcetype/><D:quota-available-bytes/><D:quota-used-bytes/></D:prop></D:propfind>`), "Depth", "0")
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, "quota-available-bytes>") || !strings.Contains(body, "<D:collection/>") {
		t.Fatalf("volume PROPFIND:\n%s", body)
	}
	for _, p := range []string{"/._photo.jpg", "/.DS_Store"} {
		resp, body = env.do(t, "PROPFIND", p, nil, "Depth", "0")
		wantStatus(t, resp, body, 404)
	}
	resp, body = env.do(t, "LOCK", "/photo.jpg", strings.NewReader(`<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>http://www.apple.com/webdav_fs/</D:href></D:owner></D:lockinfo>`), "Timeout", "Second-600", "Depth", "0")
	wantStatus(t, resp, body, 201)
	tok := resp.Header.Get("Lock-Token")
	data := randBytes(t, 400_000)
	req, _ := http.NewRequest("PUT", env.URL+"/photo.jpg", io.MultiReader(bytes.NewReader(data)))
	req.SetBasicAuth(testUser, testPass)
	req.ContentLength = -1
	req.Header.Set("X-Expected-Entity-Length", fmt.Sprint(len(data)))
	req.Header.Set("If", "(<"+tok[1:len(tok)-1]+">)")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 204 && r.StatusCode != 201 {
		t.Fatalf("chunked PUT: %d", r.StatusCode)
	}
	resp, body = env.do(t, "PROPPATCH", "/photo.jpg", strings.NewReader(`<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><A:com.apple.FinderInfo xmlns:A="http://www.apple.com/webdav_fs/props/">AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</A:com.apple.FinderInfo></D:prop></D:set></D:propertyupdate>`), "If", "("+tok+")")
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, "200 OK") {
		t.Fatalf("Apple PROPPATCH:\n%s", body)
	}
	resp, body = env.do(t, "UNLOCK", "/photo.jpg", nil, "Lock-Token", tok)
	wantStatus(t, resp, body, 204)
	resp, body = env.do(t, "GET", "/photo.jpg", nil)
	if body != string(data) || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("GET: %d bytes, %q", len(body), resp.Header.Get("Content-Type"))
	}
}
