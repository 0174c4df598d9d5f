// Package httpx holds the HTTP rules that davd (WebDAV) and webui (the
// browser client, share links) share: how a file is served with ranges and
// read ahead (AheadReader), which TLS cipher suites are offered, and the
// transport security header.
package httpx

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HSTS is the Strict-Transport-Security value sent on every HTTPS response:
// a browser that saw it once never falls back to plain HTTP for this host
// for a year. It is not sent over plain HTTP, where it would be ignored.
const HSTS = "max-age=31536000"

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange with an
// AEAD only. Go's defaults also offer CBC suites with SHA-1 MACs, which
// have a long record of padding-oracle attacks; every client securefsd
// supports speaks one of these (TLS 1.3 suites are not configurable and
// are all AEAD).
var cipherSuites = [...]uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuites returns the TLS 1.2 cipher suites securefsd offers.
func CipherSuites() []uint16 { return cipherSuites[:] }

// HardenTLS returns a copy of cfg that requires TLS 1.2 or later and offers
// only the AEAD suites of CipherSuites, unless cfg already names suites.
func HardenTLS(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.CipherSuites == nil {
		c.CipherSuites = CipherSuites()
	}
	return c
}

// ServeContent is http.ServeContent, except that a Range header whose
// every range has a suffix length of zero ("bytes=-0") gets 416, as RFC
// 9110 section 14.1.2 says; net/http answers it with a 206 for an empty,
// impossible range ("bytes N-(N-1)/N"). Zero-length suffixes among other
// ranges are dropped.
func ServeContent(w http.ResponseWriter, r *http.Request, name string, modtime time.Time, content io.ReadSeeker) {
	if h := r.Header.Get("Range"); h != "" {
		kept, dropped := dropZeroSuffixes(h)
		if dropped {
			if kept == "" {
				size, err := content.Seek(0, io.SeekEnd)
				if err == nil {
					w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
				}
				http.Error(w, "416 requested range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			r = r.Clone(r.Context())
			r.Header.Set("Range", kept)
		}
	}
	http.ServeContent(w, r, name, modtime, content)
}

// dropZeroSuffixes removes the "-0" ranges of a bytes Range header. kept is
// the header without them ("" if none is left); dropped says whether any
// was removed. Headers of other units, or malformed ones, are left to
// net/http.
func dropZeroSuffixes(h string) (kept string, dropped bool) {
	specs, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return h, false
	}
	var rest []string
	for _, s := range strings.Split(specs, ",") {
		t := strings.TrimSpace(s)
		if len(t) > 1 && t[0] == '-' && strings.Trim(t[1:], "0") == "" {
			dropped = true
			continue
		}
		rest = append(rest, t)
	}
	if !dropped {
		return h, false
	}
	if len(rest) == 0 {
		return "", true
	}
	return "bytes=" + strings.Join(rest, ","), true
}

// ServerFault reports whether a request that ended with status code failed
// through the server's own fault, to be logged at error level. Everything
// else is a refusal a client caused (a full quota, something not
// implemented, a Destination elsewhere, going away mid-request), logged at
// debug or info level, so an admin's alerting on ERROR never pages for a
// client's mistakes.
func ServerFault(code int, r *http.Request) bool {
	return code == http.StatusInternalServerError && r.Context().Err() == nil
}

// EscapePath percent-encodes every byte of p but the unreserved characters
// of RFC 3986 (letters, digits, "-", ".", "_", "~") and "/". url's escaping
// leaves sub-delimiters such as "+", "&", "=" and "'" as they are, which is
// valid in a path, but html/template then writes them into an href as
// character references ("a&#43;b"), and clients that read hrefs with a
// simple parser (mirror tools) cut the name at the "#". A fully
// percent-encoded href needs no character reference.
func EscapePath(p string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(p); i++ {
		if !unreserved(p[i]) {
			n++
		}
	}
	if n == 0 {
		return p
	}
	b := make([]byte, 0, len(p)+2*n)
	for i := 0; i < len(p); i++ {
		if c := p[i]; unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '/'
}

// userSlot carries, up the handler chain, the name of the user a mounted
// handler (the browser client, with its own sessions) authenticated, so the
// access log written around it names the real user.
type userSlot struct{ name string }

type userSlotKey struct{}

// WithUserSlot returns ctx with an empty slot for SetUser.
func WithUserSlot(ctx context.Context) context.Context {
	return context.WithValue(ctx, userSlotKey{}, &userSlot{})
}

// SetUser records the authenticated user in ctx's slot, if it has one.
// A request is served by one goroutine; the slot is not locked.
func SetUser(ctx context.Context, name string) {
	if s, ok := ctx.Value(userSlotKey{}).(*userSlot); ok {
		s.name = name
	}
}

// User returns the name SetUser recorded in ctx's slot, or "".
func User(ctx context.Context) string {
	if s, ok := ctx.Value(userSlotKey{}).(*userSlot); ok {
		return s.name
	}
	return ""
}
