package davd

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkPropfindListing lists a directory of 10,000 files with Depth: 1
// (the scripts/bench.sh listing workload),
// asking for what Finder (live props only) and rclone (oc:checksums) ask.
func BenchmarkPropfindListing(b *testing.B) {
	env := newTestEnv(b)
	fsys := env.home(b, testUser)
	if err := fsys.Mkdir("/big", 0o755); err != nil {
		b.Fatal(err)
	}
	const entries = 10000
	for i := 0; i < entries; i++ {
		f, err := fsys.Create(fmt.Sprintf("/big/f%05d.txt", i))
		if err != nil {
			b.Fatal(err)
		}
		f.Write([]byte("hello"))
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, body string }{
		{"live", `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getlastmodified/><D:getcontentlength/><D:resourcetype/><D:getetag/></D:prop></D:propfind>`},
		{"checksums", `<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><D:getlastmodified/><D:getcontentlength/><D:resourcetype/><oc:checksums/></D:prop></D:propfind>`},
		{"allprop", propfindAll},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				resp, body := env.do(b, "PROPFIND", "/big", strings.NewReader(tc.body), "Depth", "1")
				if resp.StatusCode != 207 || strings.Count(body, "<D:response>") != entries+1 {
					b.Fatalf("PROPFIND: %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkPut uploads 64 MiB over loopback HTTP/1.1 (no TLS), so what it
// measures is davd plus vfs (encryption, hashing, disk).
func BenchmarkPut(b *testing.B) {
	env := newTestEnv(b)
	data := make([]byte, 64<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, body := env.do(b, "PUT", "/big.bin", bytes.NewReader(data))
		if resp.StatusCode != 201 && resp.StatusCode != 204 {
			b.Fatalf("PUT: %d %s", resp.StatusCode, body)
		}
	}
}

// BenchmarkPutSmall uploads 4 KiB files (rclone copying many small
// files): the per-request cost of authentication, home lookup, locks and
// the access log.
func BenchmarkPutSmall(b *testing.B) {
	env := newTestEnv(b)
	data := make([]byte, 4<<10)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, body := env.do(b, "PUT", fmt.Sprintf("/small-%d.bin", i%100), bytes.NewReader(data))
		if resp.StatusCode != 201 && resp.StatusCode != 204 {
			b.Fatalf("PUT: %d %s", resp.StatusCode, body)
		}
	}
}

// BenchmarkGetSmall downloads a 16 KiB file (rclone or curl fetching many
// small files): the per-request cost of a GET.
func BenchmarkGetSmall(b *testing.B) {
	env := newTestEnv(b)
	data := make([]byte, 16<<10)
	rand.Read(data)
	if resp, body := env.do(b, "PUT", "/small.bin", bytes.NewReader(data)); resp.StatusCode != 201 {
		b.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, body := env.do(b, "GET", "/small.bin", nil)
		if resp.StatusCode != 200 || len(body) != len(data) {
			b.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
}
