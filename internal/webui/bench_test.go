package webui

import (
	"crypto/rand"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

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
			peak := samplePeakHeap(b)
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
			b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
		})
	}
}

// samplePeakHeap samples the live heap every few milliseconds until the
// returned func is called, which reports the highest value seen: evidence
// that an upload is not held in memory (it stays far below the file size).
func samplePeakHeap(b *testing.B) func() uint64 {
	runtime.GC()
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(stop); return <-done }
}

// BenchmarkDownload streams a 64 MiB file through the download handler.
//
//	go test -run '^$' -bench Download -benchtime 3x -benchmem ./internal/webui/
func BenchmarkDownload(b *testing.B) {
	f := newFixture(b, func(_ *users.Options, o *Options) { o.Logger = nil })
	home := f.addUser("bench", "pw-bench", users.PermAll, 0)
	c := f.client()
	c.login("bench", "pw-bench")
	u, _ := url.Parse(f.srv.URL + "/ui/")
	cookies := c.c.Jar.Cookies(u)
	const size = 64 << 20
	w, err := home.Create("/big.bin")
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	if _, err := io.Copy(w, io.LimitReader(&repeatReader{block: block}, size)); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodGet, "/ui/dl/big.bin", nil)
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		rw := &countingWriter{header: http.Header{}}
		f.ui.ServeHTTP(rw, req)
		if rw.status != http.StatusOK || rw.n != size {
			b.Fatalf("download: %d, %d bytes", rw.status, rw.n)
		}
	}
}

// countingWriter is a ResponseWriter that counts and drops the body.
type countingWriter struct {
	header http.Header
	status int
	n      int64
}

func (c *countingWriter) Header() http.Header { return c.header }
func (c *countingWriter) WriteHeader(s int)   { c.status = s }
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.n += int64(len(p))
	return len(p), nil
}
