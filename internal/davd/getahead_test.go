package davd

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"testing"

	"github.com/securefsd/securefsd/internal/httpx"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/vfs"
)

// TestGetAhead: a large GET (read-ahead) returns the file, a damaged chunk
// past the first cuts the body and is logged, and Range requests of a
// large file are still served exactly.
func TestGetAhead(t *testing.T) {
	env := newTestEnv(t)
	data := make([]byte, httpx.AheadMin+3*chunkSize+17)
	rand.Read(data)
	resp, body := env.do(t, "PUT", "/big.bin", bytes.NewReader(data))
	wantStatus(t, resp, body, 201)
	resp, body = env.do(t, "GET", "/big.bin", nil)
	wantStatus(t, resp, body, 200)
	if body != string(data) {
		t.Fatalf("GET: %d bytes, content equal %v", len(body), body == string(data))
	}
	resp, body = env.do(t, "GET", "/big.bin", nil, "Range", "bytes=100000-300000")
	wantStatus(t, resp, body, 206)
	if body != string(data[100000:300001]) {
		t.Fatalf("Range GET: %d bytes", len(body))
	}

	corruptStoredFile(t, env, testUser, "big.bin")
	req, _ := http.NewRequest("GET", env.URL+"/big.bin", nil)
	req.SetBasicAuth(testUser, testPass)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err == nil || len(got) >= len(data) || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("damaged GET: status %d, %d of %d bytes, err %v (want a cut body of correct bytes)", r.StatusCode, len(got), len(data), err)
	}
	if !env.logged(eventIntegrity, "big.bin") {
		t.Errorf("no integrity log line:\n%s", env.Log.String())
	}
}

func writeFile(t testing.TB, fsys *vfs.FS, name string, data []byte) {
	t.Helper()
	fixture.WriteFile(t, fsys, name, data)
}
