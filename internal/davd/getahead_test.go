package davd

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/iotest"

	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/vfs"
)

// TestAheadReader checks the GET read-ahead against the file's content:
// io reads of every size (iotest.TestReader also seeks), writeTo with and
// without a limit, seeks that restart it, and close in any state.
func TestAheadReader(t *testing.T) {
	env := newTestEnv(t)
	fsys := env.home(t, testUser)
	for _, size := range []int{0, 1, chunkSize + 1, aheadBufSize - 1, aheadBufSize, aheadBufSize + 1, 3*aheadBufSize + 5} {
		data := make([]byte, size)
		rand.Read(data)
		name := fmt.Sprintf("/f%d", size)
		writeFile(t, fsys, name, data)
		open := func(t *testing.T) (*aheadReader, func()) {
			f, err := fsys.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			a := newAheadReader(f)
			return a, func() {
				a.close()
				if err := f.Close(); err != nil {
					t.Error(err)
				}
			}
		}
		t.Run(fmt.Sprintf("%d/iotest", size), func(t *testing.T) {
			a, done := open(t)
			defer done()
			if err := iotest.TestReader(a, data); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(fmt.Sprintf("%d/writeTo", size), func(t *testing.T) {
			for _, limit := range []int64{-1, 0, 1, int64(size) / 2, int64(size), int64(size) + 10} {
				a, done := open(t)
				var b bytes.Buffer
				n, err := a.writeTo(&b, limit, nil)
				want := data
				if limit >= 0 && limit < int64(size) {
					want = data[:limit]
				}
				if err != nil || n != int64(len(want)) || !bytes.Equal(b.Bytes(), want) {
					t.Fatalf("limit %d: wrote %d, %v; equal %v", limit, n, err, bytes.Equal(b.Bytes(), want))
				}
				// The rest follows with Read.
				rest, err := io.ReadAll(a)
				if err != nil || !bytes.Equal(rest, data[len(want):]) {
					t.Fatalf("limit %d: rest %d bytes, %v", limit, len(rest), err)
				}
				done()
			}
		})
		t.Run(fmt.Sprintf("%d/seek", size), func(t *testing.T) {
			a, done := open(t)
			defer done()
			buf := make([]byte, 1000)
			a.Read(buf) // starts the read-ahead
			for _, off := range []int64{int64(size) / 3, 0, int64(size), int64(size) - 1} {
				if off < 0 {
					continue
				}
				if got, err := a.Seek(off, io.SeekStart); err != nil || got != off {
					t.Fatalf("Seek(%d): %d, %v", off, got, err)
				}
				rest, err := io.ReadAll(a)
				if err != nil || !bytes.Equal(rest, data[off:]) {
					t.Fatalf("after Seek(%d): %d bytes, %v", off, len(rest), err)
				}
			}
			if end, err := a.Seek(0, io.SeekEnd); err != nil || end != int64(size) {
				t.Fatalf("Seek(end): %d, %v", end, err)
			}
		})
	}
}

// TestGetAhead: a large GET (read-ahead) returns the file, a damaged chunk
// past the first cuts the body and is logged, and Range requests of a
// large file are still served exactly.
func TestGetAhead(t *testing.T) {
	env := newTestEnv(t)
	data := make([]byte, aheadMin+3*chunkSize+17)
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
