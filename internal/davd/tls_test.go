package davd

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/securefsd/securefsd/internal/httpx"
)

// TestTLSGetPut moves a large file over HTTPS with HTTP/1.1 (uploads read
// ahead, downloads corked) and HTTP/2 (never corked), whole and by range.
func TestTLSGetPut(t *testing.T) {
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
	data := make([]byte, 5*httpx.AheadBufSize+12345)
	rand.Read(data)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr}
		do := func(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
			t.Helper()
			req, _ := http.NewRequest(method, url+path, body)
			req.SetBasicAuth(testUser, testPass)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return resp, b
		}
		resp, _ := do("PUT", "/big.bin", bytes.NewReader(data))
		if resp.StatusCode != 201 && resp.StatusCode != 204 {
			t.Fatalf("h2=%v PUT: %d", h2, resp.StatusCode)
		}
		for i := 0; i < 2; i++ { // twice on one connection
			resp, body := do("GET", "/big.bin", nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, data) || (resp.ProtoMajor == 2) != h2 {
				t.Fatalf("h2=%v GET: %d %s, %d bytes, equal %v", h2, resp.StatusCode, resp.Proto, len(body), bytes.Equal(body, data))
			}
		}
		resp, body := do("GET", "/big.bin", nil, "Range", "bytes=1000-")
		if resp.StatusCode != 206 || !bytes.Equal(body, data[1000:]) {
			t.Fatalf("h2=%v Range GET: %d, %d bytes", h2, resp.StatusCode, len(body))
		}
		tr.CloseIdleConnections()
	}
}
