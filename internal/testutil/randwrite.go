package testutil

import (
	"io"
	"math/rand/v2"
	"testing"
)

// RandomWrites makes n writes of 4 KiB at random offsets (multiples of
// align) of w, one at a time like a database file's, and the same writes
// to want, the model of w's content. The bytes and offsets are the same
// for every call with the same n and align.
func RandomWrites(t testing.TB, w io.WriterAt, want []byte, n int, align int64) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, 4096)
	for i := range n {
		off := r.Int64N(int64(len(want)-len(p))) / align * align
		for k := range p {
			p[k] = byte(i ^ k)
		}
		if _, err := w.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
}
