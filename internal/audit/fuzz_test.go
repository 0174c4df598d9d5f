package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSegment: a segment file is input to audit verify and query (anyone
// with write access to the directory can put bytes there). Any bytes must
// give an error or a note, never a panic, a hang or a huge allocation
// (frame lengths are capped).
func FuzzSegment(f *testing.F) {
	dir, k, _ := trail(f, 8, Options{MaxSegmentBytes: 1 << 20})
	good, err := os.ReadFile(filepath.Join(dir, segName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(magic + "\xff\xff\xff\xff"))
	f.Add([]byte(magic + "\x00\x00\x00\x28"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, segName(1)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Verify(d, k, VerifyOptions{})
		_ = Query(context.Background(), d, k, Filter{}, func(Record) error { return nil })
		_, _ = lastPosition(k, d, 1)
	})
}
