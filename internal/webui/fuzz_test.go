package webui

import (
	"mime"
	"net/url"
	"strings"
	"testing"
)

// FuzzContentDisposition: the header is one line of ASCII, parses as an
// attachment, and its filename* gives back the exact name.
func FuzzContentDisposition(f *testing.F) {
	for _, s := range []string{"a.txt", `x"y\z;.txt`, "日本.txt", "a\r\nb", "%41", "", "<script>.html"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		h := contentDisposition(name)
		for i := 0; i < len(h); i++ {
			if h[i] < 0x20 || h[i] >= 0x7f {
				t.Fatalf("byte %#x in header %q", h[i], h)
			}
		}
		_, star, ok := strings.Cut(h, "filename*=UTF-8''")
		if !ok {
			t.Fatalf("no filename* in %q", h)
		}
		got, err := url.PathUnescape(star)
		if err != nil || got != name {
			t.Fatalf("filename* %q decodes to %q (%v), want %q", star, got, err, name)
		}
		if disp, _, err := mime.ParseMediaType(h); err != nil || disp != "attachment" {
			t.Fatalf("%q does not parse as an attachment: %v", h, err)
		}
	})
}

// FuzzEscapePath: an escaped client name survives a URL round trip and
// never carries characters that end or change the path.
func FuzzEscapePath(f *testing.F) {
	for _, s := range []string{"/a b/c?d#e", "/%2e%2e/x", "/日本/<script>", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		name = cleanName(name)
		e := escapePath(name)
		if strings.ContainsAny(e, "?#\\ \"'<>") {
			t.Fatalf("escapePath(%q) = %q", name, e)
		}
		u, err := url.Parse("/ui/files" + e)
		if err != nil {
			t.Fatalf("parse %q: %v", e, err)
		}
		if got := cleanName(strings.TrimPrefix(u.Path, "/ui/files")); got != name {
			t.Fatalf("round trip %q -> %q -> %q", name, e, got)
		}
	})
}
