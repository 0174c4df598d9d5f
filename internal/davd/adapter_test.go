package davd

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/webdav"
)

// TestAdapterUnderXNetHandler drives davFS with golang.org/x/net/webdav's
// own Handler: the adapter is a complete webdav.FileSystem (dead properties
// through DeadPropsHolder, PROPPATCH on a directory opened O_RDWR, content
// type and ETag from the FileInfo).
func TestAdapterUnderXNetHandler(t *testing.T) {
	env := newTestEnv(t)
	h := &webdav.Handler{FileSystem: davFS{fs: env.home(t, testUser)}, LockSystem: webdav.NewMemLS()}
	ts := httptest.NewServer(h)
	defer ts.Close()
	do := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("MKCOL", "/dir", ""); code != 201 {
		t.Fatalf("MKCOL %d", code)
	}
	if code, _ := do("PUT", "/dir/a.html", "<p>hi</p>"); code != 201 {
		t.Fatalf("PUT %d", code)
	}
	set := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x"><D:set><D:prop><x:tag>v1</x:tag></D:prop></D:set></D:propertyupdate>`
	for _, p := range []string{"/dir", "/dir/a.html"} {
		code, body := do("PROPPATCH", p, set)
		if code != 207 || !strings.Contains(body, "200 OK") {
			t.Fatalf("PROPPATCH %s: %d %s", p, code, body)
		}
	}
	code, body := do("PROPFIND", "/dir", `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontenttype/><D:getetag/><x:tag xmlns:x="urn:x"/></D:prop></D:propfind>`, "Depth", "1")
	if code != 207 || strings.Count(body, "v1</") != 2 || !strings.Contains(body, "text/html") || !strings.Contains(body, "getetag") {
		t.Fatalf("PROPFIND %d:\n%s", code, body)
	}
	// What x/net stored is what our handler reads (same vfs metadata).
	resp, body := env.do(t, "PROPFIND", "/dir/a.html", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><x:tag xmlns:x="urn:x"/></D:prop></D:propfind>`), "Depth", "0")
	wantStatus(t, resp, body, 207)
	if !strings.Contains(body, `<tag xmlns="urn:x">v1</tag>`) {
		t.Fatalf("our handler does not see the prop:\n%s", body)
	}
}
