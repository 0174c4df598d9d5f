package webui

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/securefsd/securefsd/internal/shares"
)

// liveHeap is the heap in use after a full collection: what a stream
// keeps, not what it churns.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLinkStreamsFlatMemory downloads a large file and a folder zip of
// two of them through link URLs, sampling the live heap every 8 MiB the
// client reads: the peak must stay far below the bytes streamed, so
// nothing is buffered whole (sizes are bounded to keep the suite fast; the
// code path does not depend on size, and archive/zip's zip64 switch is per
// entry).
func TestLinkStreamsFlatMemory(t *testing.T) {
	const size = 96 << 20
	const limit = 24 << 20 // growth allowed: buffers, TLS, the race detector's shadow
	f, m, fsys := linkFixture(t)
	if err := fsys.Mkdir("/big", 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := fsys.Create("/big/x1.bin")
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for range size >> 20 {
		if _, err := w.Write(zero); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Rename("/big/x1.bin", "/big/x2.bin", false); err != nil {
		t.Fatal(err)
	}
	src, _ := fsys.Open("/big/x2.bin")
	w, _ = fsys.Create("/big/x1.bin")
	if _, err := io.Copy(w, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fileLink := mkLink(t, m, shares.Spec{Path: "/big/x1.bin", Kind: shares.File})
	dirLink := mkLink(t, m, shares.Spec{Path: "/big", Kind: shares.Folder})
	c := f.client()
	for _, tc := range []struct {
		url  string
		want int64
	}{{fileLink + "/download", size}, {dirLink + "/zip", 2 * size}} {
		base := liveHeap()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, f.srv.URL+tc.url, nil)
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		var peak uint64
		buf := make([]byte, 1<<20)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			got += int64(n)
			if got%(8<<20) == 0 || err != nil {
				if h := liveHeap(); h > peak {
					peak = h
				}
			}
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if got < tc.want {
			t.Fatalf("%s: read %d bytes, want at least %d", tc.url, got, tc.want)
		}
		growth := int64(peak) - int64(base)
		t.Logf("%s: %d MiB streamed, live heap %d MiB before, peak growth %.1f MiB", tc.url, got>>20, base>>20, float64(growth)/(1<<20))
		if growth > limit {
			t.Errorf("%s: live heap grew %d MiB while streaming %d MiB", tc.url, growth>>20, got>>20)
		}
	}
}
