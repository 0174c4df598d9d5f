package davd

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestPropfindGolden pins the exact bytes of PROPFIND responses (allprop,
// propname, prop lists with dead, missing and computed properties, a lock,
// names that need URL and XML escaping), so that rewriting the response
// writer for speed cannot change what clients get. Every response must also
// be well-formed XML. Lock tokens are replaced by a placeholder; the rest is
// deterministic (fixed mtimes and contents). go test -run PropfindGolden -update
// rewrites testdata/propfind.golden.
func TestPropfindGolden(t *testing.T) {
	env := newTestEnv(t)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	oc := "X-OC-Mtime"
	ts := "1714979289"
	env.do(t, "MKCOL", "/d", nil)
	env.do(t, "MKCOL", "/d/sub dir", nil)
	env.do(t, "PUT", "/d/a.txt", strings.NewReader("hello"), oc, ts)
	env.do(t, "PUT", "/d/b <&>'\".pdf", strings.NewReader("pdf"), oc, ts)
	env.do(t, "PUT", "/d/é ü.bin", strings.NewReader(strings.Repeat("x", 70000)), oc, ts)
	env.do(t, "PUT", "/d/UPPER.JPG", strings.NewReader(""), oc, ts)
	env.do(t, "PUT", "/d/noext", strings.NewReader("n"), oc, ts)
	env.do(t, "PUT", "/d/locked.txt", strings.NewReader("locked"), oc, ts)
	// Dead properties on a file and a collection, one overriding a live name.
	resp, body := env.do(t, "PROPPATCH", "/d/a.txt", strings.NewReader(`<?xml version="1.0"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://example.com/z"><D:set><D:prop>
<Z:color>red &amp; <Z:b attr="1&lt;2">blue</Z:b></Z:color><D:displayname>Display &lt;A&gt;</D:displayname>
</D:prop></D:set></D:propertyupdate>`))
	wantStatus(t, resp, body, 207)
	resp, body = env.do(t, "PROPPATCH", "/d/sub dir", strings.NewReader(`<?xml version="1.0"?>
<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><k xmlns="urn:k">v</k></D:prop></D:set></D:propertyupdate>`))
	wantStatus(t, resp, body, 207)
	resp, body = env.do(t, "LOCK", "/d/locked.txt", strings.NewReader(`<?xml version="1.0"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>me</D:href></D:owner></D:lockinfo>`),
		"Timeout", "Second-3600")
	wantStatus(t, resp, body, 200)
	// Checksums of all files before the directory mtimes are set: caching
	// them writes the directory's metadata.
	resp, body = env.do(t, "PROPFIND", "/d", strings.NewReader(`<D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><oc:checksums/></D:prop></D:propfind>`), "Depth", "1")
	wantStatus(t, resp, body, 207)
	fsys := env.home(t, testUser)
	for _, d := range []string{"/d/sub dir", "/d", "/"} {
		if err := fsys.Chtimes(d, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct{ name, path, depth, body string }{
		{"allprop-empty-body", "/d", "1", ""},
		{"allprop", "/d", "1", propfindAll},
		{"allprop-include", "/d", "1", `<D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:allprop/><D:include><D:quota-used-bytes/><oc:checksums/><D:displayname/></D:include></D:propfind>`},
		{"propname", "/d", "1", `<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`},
		{"prop", "/d", "1", `<D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:Z="http://example.com/z"><D:prop><D:getlastmodified/><D:getcontentlength/><D:resourcetype/><D:getetag/><oc:checksums/><oc:size/><Z:color/><x:nope xmlns:x="urn:x&amp;y"/><D:quota-used-bytes/><D:getcontenttype/><D:lockdiscovery/><D:creationdate/></D:prop></D:propfind>`},
		{"prop-missing-only", "/d/a.txt", "0", `<D:propfind xmlns:D="DAV:"><D:prop><x:nope xmlns:x="urn:x"/></D:prop></D:propfind>`},
		{"noroot", "/d", "1,noroot", `<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/></D:prop></D:propfind>`},
		{"file-depth1", "/d/locked.txt", "1", ""},
		{"root-depth0", "/", "0", `<D:propfind xmlns:D="DAV:"><D:allprop/><D:include><D:quota-used-bytes/></D:include></D:propfind>`},
	}
	tokenRE := regexp.MustCompile(`opaquelocktoken:[0-9a-f-]+`)
	secondsRE := regexp.MustCompile(`Second-\d+`)
	var got bytes.Buffer
	for _, tc := range cases {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		resp, out := env.do(t, "PROPFIND", tc.path, body, "Depth", tc.depth)
		wantStatus(t, resp, out, 207)
		checkWellFormed(t, tc.name, out)
		out = tokenRE.ReplaceAllString(out, "opaquelocktoken:TOKEN")
		out = secondsRE.ReplaceAllString(out, "Second-N")
		got.WriteString("=== " + tc.name + "\n" + out)
	}
	golden := filepath.Join("testdata", "propfind.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("PROPFIND output differs from %s at line %d:\n got: %s\nwant: %s", golden, i+1, g, w)
			}
		}
	}
}

// checkWellFormed fails unless doc is one well-formed XML document.
func checkWellFormed(t testing.TB, name, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v\n%s", name, err, doc)
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 || roots != 1 {
		t.Fatalf("%s: %d root elements, depth %d at the end", name, roots, depth)
	}
}
