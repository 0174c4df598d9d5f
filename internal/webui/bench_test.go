package webui

import (
	"crypto/rand"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/users"
)

// repeatReader yields block over and over.
type repeatReader struct {
	block []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.block[r.off:])
		n += c
		r.off = (r.off + c) % len(r.block)
	}
	return n, nil
}

// BenchmarkUpload streams one file of each size through the upload handler
// (in process, no network) and reports throughput and memory per upload:
// B/op stays far below the file size because nothing is buffered.
//
//	go test -run '^$' -bench Upload -benchtime 3x -benchmem ./internal/webui/
func BenchmarkUpload(b *testing.B) {
	f := newFixture(b, func(_ *users.Options, o *Options) { o.Logger = nil })
	f.addUser("bench", "pw-bench", users.PermAll, 0)
	c := f.client()
	c.login("bench", "pw-bench")
	u, _ := url.Parse(f.srv.URL + "/ui/")
	cookies := c.c.Jar.Cookies(u)
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	for _, size := range []int64{1 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var head strings.Builder
				mw := multipart.NewWriter(&head)
				_ = mw.WriteField("csrf", c.csrf)
				_ = mw.WriteField("overwrite", "1")
				if _, err := mw.CreateFormFile("file", "bench.bin"); err != nil {
					b.Fatal(err)
				}
				tail := "\r\n--" + mw.Boundary() + "--\r\n"
				body := io.MultiReader(strings.NewReader(head.String()), io.LimitReader(&repeatReader{block: block}, size), strings.NewReader(tail))
				req := httptest.NewRequest(http.MethodPost, "/ui/upload/", body)
				req.Header.Set("Content-Type", mw.FormDataContentType())
				for _, ck := range cookies {
					req.AddCookie(ck)
				}
				rec := httptest.NewRecorder()
				f.ui.ServeHTTP(rec, req)
				if rec.Code != http.StatusSeeOther {
					b.Fatalf("upload: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
