package httpx

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestServeContentZeroSuffix(t *testing.T) {
	content := strings.Repeat("x", 100)
	for _, tc := range []struct {
		rng    string
		status int
		cr     string
	}{
		{"bytes=-0", 416, "bytes */100"},
		{"bytes=-00", 416, "bytes */100"},
		{"bytes=-0, -0", 416, "bytes */100"},
		{"bytes=-0,0-9", 206, "bytes 0-9/100"},
		{"bytes=-10", 206, "bytes 90-99/100"},
		{"bytes=0-", 206, "bytes 0-99/100"},
		{"bytes=200-", 416, "bytes */100"},
	} {
		req := httptest.NewRequest("GET", "/f", nil)
		req.Header.Set("Range", tc.rng)
		rec := httptest.NewRecorder()
		ServeContent(rec, req, "f", time.Time{}, strings.NewReader(content))
		if rec.Code != tc.status || rec.Header().Get("Content-Range") != tc.cr {
			t.Errorf("Range %q: %d %q, want %d %q", tc.rng, rec.Code, rec.Header().Get("Content-Range"), tc.status, tc.cr)
		}
	}
}

func TestEscapePath(t *testing.T) {
	for _, name := range []string{"/a+b.bin", "/x&y=z", "/it's", "/semi;colon", "/hash#tag", "/per%cent", "/what?", "/a b/ü.txt", "/plain-._~/"} {
		got := EscapePath(name)
		for _, c := range "+&='; #%?" {
			if strings.ContainsRune(strings.ReplaceAll(got, "%", ""), c) && c != '%' {
				t.Errorf("EscapePath(%q) = %q keeps %q", name, got, c)
			}
		}
		back, err := url.PathUnescape(got)
		if err != nil || back != name {
			t.Errorf("EscapePath(%q) = %q, unescapes to %q, %v", name, got, back, err)
		}
	}
	if got := EscapePath("/plain-._~/dir"); got != "/plain-._~/dir" {
		t.Errorf("unreserved characters escaped: %q", got)
	}
}

func TestHardenTLS(t *testing.T) {
	c := HardenTLS(&tls.Config{})
	if c.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", c.MinVersion)
	}
	insecure := map[uint16]bool{}
	for _, s := range tls.InsecureCipherSuites() {
		insecure[s.ID] = true
	}
	suites := map[uint16]*tls.CipherSuite{}
	for _, s := range tls.CipherSuites() {
		suites[s.ID] = s
	}
	for _, id := range c.CipherSuites {
		s := suites[id]
		if s == nil || insecure[id] || strings.Contains(s.Name, "CBC") || strings.HasSuffix(s.Name, "_SHA") || !strings.HasPrefix(s.Name, "TLS_ECDHE_") {
			t.Errorf("offered suite %s is not an ECDHE AEAD suite", tls.CipherSuiteName(id))
		}
	}
	own := HardenTLS(&tls.Config{CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, MinVersion: tls.VersionTLS13})
	if len(own.CipherSuites) != 1 || own.MinVersion != tls.VersionTLS13 {
		t.Errorf("a configured choice was overridden: %v %x", own.CipherSuites, own.MinVersion)
	}
}

func TestServerFault(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	for code, want := range map[int]bool{500: true, 501: false, 502: false, 503: false, 507: false, 404: false} {
		if got := ServerFault(code, req); got != want {
			t.Errorf("ServerFault(%d) = %v", code, got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ServerFault(http.StatusInternalServerError, req.WithContext(ctx)) {
		t.Error("a request whose client went away counted as a server fault")
	}
}
