package webui

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// BenchmarkLinkStream downloads a 4 GiB file and a 2 GiB folder zip (two
// 1 GiB files) through share links, over TLS from the httptest server, and
// reports besides throughput and B/op the peak live heap (sampled every
// 5 ms) and the process's peak RSS (VmHWM, reset after the files are
// written): both must stay flat, far below the bytes streamed. The files
// are written once, through the real vfs (encrypted), from a repeated
// random block, so the benchmark needs 6 GiB of disk for a while; -short
// makes them 64 MiB and 2 × 32 MiB. Not run by scripts/test.sh.
//
//	go test -run '^$' -bench LinkStream -benchtime 1x -benchmem ./internal/webui/
func BenchmarkLinkStream(b *testing.B) {
	fileSize, partSize := int64(4<<30), int64(1<<30)
	if testing.Short() {
		fileSize, partSize = 64<<20, 32<<20
	}
	f, m, fsys := linkFixture(b, func(_ *users.Options, o *Options) { o.Logger = nil })
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	if err := fsys.Mkdir("/tree", 0o700); err != nil {
		b.Fatal(err)
	}
	writeBig(b, fsys, "/big.bin", fileSize, block)
	writeBig(b, fsys, "/tree/part1.bin", partSize, block)
	writeBig(b, fsys, "/tree/part2.bin", partSize, block)
	c := f.client()
	for _, tc := range []struct {
		name, url string
		size      int64 // bytes of file data (the zip adds its headers)
	}{
		{fmt.Sprintf("file-%dMiB", fileSize>>20), mkLink(b, m, shares.Spec{Path: "/big.bin", Kind: shares.File}) + "/download", fileSize},
		{fmt.Sprintf("zip-%dMiB", 2*partSize>>20), mkLink(b, m, shares.Spec{Path: "/tree", Kind: shares.Folder}) + "/zip", 2 * partSize},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(tc.size)
			b.ReportAllocs()
			// Hand the setup's heap back and start the RSS peak from here.
			debug.FreeOSMemory()
			resetPeakRSS(b)
			peak := samplePeakHeap(b)
			buf := make([]byte, 256<<10)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, f.srv.URL+tc.url, nil)
				resp, err := c.c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || n < tc.size {
					b.Fatalf("%s: %d, %d bytes, %v", tc.url, resp.StatusCode, n, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(statusKiB(b, "VmHWM"))/1024, "peak-RSS-MiB")
		})
	}
}

// writeBig writes size bytes of block, repeated, to a new file of fsys.
func writeBig(b *testing.B, fsys *vfs.FS, name string, size int64, block []byte) {
	b.Helper()
	w, err := fsys.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(w, io.LimitReader(&repeatReader{block: block}, size), make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// resetPeakRSS sets the process's VmHWM back to its current RSS (Linux:
// "5" to /proc/self/clear_refs).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset peak RSS: %v", err)
	}
}

// statusKiB reads a "Vm…: N kB" line of /proc/self/status.
func statusKiB(b *testing.B, key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/self/status", key)
	return 0
}
