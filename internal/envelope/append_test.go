package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestWholeChunkAppends drives the fast path of sequential whole-chunk
// appends (appendChunk) into each way out of it: a read of the pending
// chunk or before it, a write elsewhere, an overwrite of the pending chunk,
// a Truncate (shrink and grow), a Flush, and Close; the File and the stored
// file must always hold what a plain byte slice does.
func TestWholeChunkAppends(t *testing.T) {
	cs := int64(chunkSize)
	n := int64(minStreamChunks + 2*pendBatch + 3) // two batches written, 3 pending
	for _, tc := range []struct {
		name  string
		after func(t *testing.T, f *File, want []byte) []byte
	}{
		{"close", func(t *testing.T, f *File, want []byte) []byte { return want }},
		{"read pending chunk", func(t *testing.T, f *File, want []byte) []byte {
			got := make([]byte, 100)
			_, err := f.ReadAt(got, (n-1)*cs+5)
			must(t, err)
			if !bytes.Equal(got, want[(n-1)*cs+5:][:100]) {
				t.Error("read of the pending chunk differs")
			}
			return want
		}},
		{"read before pending chunk", func(t *testing.T, f *File, want []byte) []byte {
			got := make([]byte, cs)
			_, err := f.ReadAt(got, (n-2)*cs)
			must(t, err)
			if !bytes.Equal(got, want[(n-2)*cs:][:cs]) {
				t.Error("read before the pending chunk differs")
			}
			return want
		}},
		{"read to EOF", func(t *testing.T, f *File, want []byte) []byte {
			got := make([]byte, 2*cs)
			k, err := f.ReadAt(got, (n-1)*cs)
			if k != chunkSize || !errors.Is(err, io.EOF) || !bytes.Equal(got[:k], want[(n-1)*cs:]) {
				t.Errorf("read to EOF: %d, %v", k, err)
			}
			return want
		}},
		{"overwrite pending chunk", func(t *testing.T, f *File, want []byte) []byte {
			_, err := f.WriteAt([]byte("XYZ"), (n-1)*cs+7)
			must(t, err)
			copy(want[(n-1)*cs+7:], "XYZ")
			return want
		}},
		{"write earlier", func(t *testing.T, f *File, want []byte) []byte {
			_, err := f.WriteAt([]byte("early"), 3)
			must(t, err)
			copy(want[3:], "early")
			return want
		}},
		{"unaligned append", func(t *testing.T, f *File, want []byte) []byte {
			_, err := f.WriteAt([]byte("tail"), n*cs)
			must(t, err)
			return append(want, "tail"...)
		}},
		{"append past a hole", func(t *testing.T, f *File, want []byte) []byte {
			p := pattern(chunkSize, 77)
			_, err := f.WriteAt(p, (n+1)*cs)
			must(t, err)
			return append(append(want, make([]byte, cs)...), p...)
		}},
		{"truncate shrink", func(t *testing.T, f *File, want []byte) []byte {
			must(t, f.Truncate((n-1)*cs-9))
			return want[:(n-1)*cs-9]
		}},
		{"truncate grow", func(t *testing.T, f *File, want []byte) []byte {
			must(t, f.Truncate(n*cs+10))
			return append(want, make([]byte, 10)...)
		}},
		{"flush and go on", func(t *testing.T, f *File, want []byte) []byte {
			must(t, f.Flush())
			for i := n; i < n+3; i++ {
				p := pattern(chunkSize, uint64(i)+100)
				_, err := f.WriteAt(p, i*cs)
				must(t, err)
				want = append(want, p...)
			}
			return want
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kr := testKeyring(t)
			m := newMem(nil)
			f, err := Create(m, kr, Options{})
			must(t, err)
			var want []byte
			for i := range n {
				p := pattern(chunkSize, uint64(i))
				_, err := f.WriteAt(p, i*cs)
				must(t, err)
				want = append(want, p...)
			}
			if f.pend.idx != n-1 {
				t.Fatalf("pending chunk %d, want %d", f.pend.idx, n-1)
			}
			want = tc.after(t, f, want)
			if got := f.Size(); got != int64(len(want)) {
				t.Errorf("Size %d, want %d", got, len(want))
			}
			got := make([]byte, len(want))
			if k, err := f.ReadAt(got, 0); k != len(want) || err != nil || !bytes.Equal(got, want) {
				t.Errorf("ReadAt: %d, %v, equal %v", k, err, bytes.Equal(got, want))
			}
			must(t, f.Close())
			stored, err := readAll(t, m.Bytes(), kr)
			if err != nil || !bytes.Equal(stored, want) {
				t.Fatalf("stored: %v, equal %v", err, bytes.Equal(stored, want))
			}
		})
	}
}

// TestWholeChunkUploadSealsOnce: an upload in whole chunks writes each
// chunk once, in ascending order (the pending last chunk is opened back and
// sealed as final by Close, but written once).
func TestWholeChunkUploadSealsOnce(t *testing.T) {
	for _, par := range []parallelism{parallelNone, parallelAll} {
		t.Run(fmt.Sprintf("parallel=%d", par), func(t *testing.T) {
			kr := testKeyring(t)
			m := newMem(nil)
			f, err := Create(m, kr, Options{})
			must(t, err)
			f.setParallelism(par)
			m.record = true
			const n = minStreamChunks + 3*pendBatch + 2
			for i := range int64(n) {
				_, err := f.WriteAt(pattern(chunkSize, uint64(i)), i*chunkSize)
				must(t, err)
			}
			must(t, f.Close())
			var idx []int64 // the chunks written, in order
			for _, op := range m.ops {
				if (op.off-HeaderSize)%encChunkSize != 0 || (len(op.data)%encChunkSize != 0 && op.off != chunkOffset(n-1)) {
					t.Fatalf("write of %d bytes at %d: not whole chunks", len(op.data), op.off)
				}
				for k := range max(1, len(op.data)/encChunkSize) {
					idx = append(idx, (op.off-HeaderSize)/encChunkSize+int64(k))
				}
			}
			// Chunk 0, the stored final chunk, is re-sealed as interior after the
			// first chunks beyond it (docs/FORMAT.md, "Write order"); the others
			// are written in ascending order.
			k0 := slices.Index(idx, 0)
			if k0 < 0 {
				t.Fatalf("chunk writes %v: chunk 0 not written", idx)
			}
			idx = slices.Delete(idx, k0, k0+1)
			for k, i := range idx {
				if i != int64(k)+1 {
					t.Fatalf("chunk writes %v, want 1..%d ascending (and 0)", idx, n-1)
				}
			}
			idx = append(idx, 0)
			if len(idx) != n {
				t.Fatalf("%d chunk writes, want %d", len(idx), n)
			}
		})
	}
}

// TestStickyErrorWholeChunks: a backing write failing on the fast path
// poisons the File like any other.
func TestStickyErrorWholeChunks(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	for i := range int64(minStreamChunks + 1) {
		_, err := f.WriteAt(pattern(chunkSize, 1), i*chunkSize)
		must(t, err)
	}
	m.mu.Lock()
	m.failAt = m.nmut + 1
	m.mu.Unlock()
	// Pending chunks are written a batch at a time: the failure shows
	// at the first batch.
	i := int64(minStreamChunks + 1)
	for ; ; i++ {
		_, err := f.WriteAt(pattern(chunkSize, 1), i*chunkSize)
		if err != nil {
			if !errors.Is(err, errInjected) {
				t.Fatalf("WriteAt: %v", err)
			}
			break
		}
		if i > minStreamChunks+pendBatch+1 {
			t.Fatal("no write reached the backing")
		}
	}
	if _, err := f.WriteAt(pattern(chunkSize, 1), (i+1)*chunkSize); !errors.Is(err, errInjected) {
		t.Errorf("WriteAt after failure: %v", err)
	}
	if err := f.Close(); !errors.Is(err, errInjected) {
		t.Errorf("Close: %v", err)
	}
}

// TestRandomOpsWithAppends runs random operations, biased to the sequential
// whole-chunk appends of appendChunk, against a File and a byte slice, and
// compares them after every step (through ReadAt) and at the end (the
// stored file).
func TestRandomOpsWithAppends(t *testing.T) {
	cs := int64(chunkSize)
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			kr := testKeyring(t)
			m := newMem(nil)
			f, err := Create(m, kr, Options{})
			must(t, err)
			if seed >= 2 {
				f.setParallelism(parallelAll)
			}
			r := rand.New(rand.NewPCG(seed, 99))
			var want []byte
			pending := 0 // steps that left chunks pending
			for step := range 300 {
				// The File alternates between parallel and serial
				// writes: appendChunk then mixes plaintext and
				// sealed pending chunks.
				if seed == 3 && r.IntN(4) == 0 {
					if f.par == parallelAll {
						f.setParallelism(parallelReads)
					} else {
						f.setParallelism(parallelAll)
					}
				}
				size := int64(len(want))
				switch op := r.IntN(20); {
				case op < 12: // whole-chunk appends (at a boundary, or not; 1-3 chunks, maybe a bit more)
					off := size
					if off%cs != 0 && r.IntN(2) == 0 {
						off = (off/cs + 1) * cs
					}
					n := chunkSize
					if r.IntN(3) == 0 {
						n = (1+r.IntN(3))*chunkSize + r.IntN(2)*r.IntN(chunkSize)
					}
					p := pattern(n, uint64(step))
					_, err := f.WriteAt(p, off)
					must(t, err)
					want = append(append(want, make([]byte, off-size)...), p...)
				case op < 14: // small write anywhere (maybe past the end)
					off := r.Int64N(size + 2*cs + 1)
					p := pattern(1+r.IntN(3*chunkSize), uint64(step))
					_, err := f.WriteAt(p, off)
					must(t, err)
					if end := off + int64(len(p)); end > int64(len(want)) {
						want = append(want, make([]byte, end-int64(len(want)))...)
					}
					copy(want[off:], p)
				case op < 16: // read somewhere
					off := r.Int64N(size + 1)
					got := make([]byte, r.IntN(2*chunkSize)+1)
					k, err := f.ReadAt(got, off)
					if err != nil && !errors.Is(err, io.EOF) {
						t.Fatalf("step %d: ReadAt: %v", step, err)
					}
					if !bytes.Equal(got[:k], want[off:off+int64(k)]) {
						t.Fatalf("step %d: ReadAt(%d) differs", step, off)
					}
				case op < 17:
					must(t, f.Flush())
				case op < 18:
					ns := r.Int64N(size + cs + 1)
					must(t, f.Truncate(ns))
					if ns < size {
						want = want[:ns]
					} else {
						want = append(want, make([]byte, ns-size)...)
					}
				default: // a long upload in whole chunks
					for range r.IntN(3 * pendBatch) {
						p := pattern(chunkSize, uint64(step)+7)
						off := int64(len(want))
						off = (off + cs - 1) / cs * cs
						_, err := f.WriteAt(p, off)
						must(t, err)
						want = append(append(want, make([]byte, off-int64(len(want)))...), p...)
					}
				}
				if f.Size() != int64(len(want)) {
					t.Fatalf("step %d: Size %d, want %d", step, f.Size(), len(want))
				}
				if f.pend.idx >= 0 {
					pending++
				}
				if len(want) > 40*chunkSize { // keep it small: start over
					must(t, f.Truncate(0))
					want = want[:0]
				}
			}
			if pending < 20 {
				t.Errorf("only %d steps with pending chunks: the fast path is not exercised", pending)
			}
			got := make([]byte, len(want))
			if k, err := f.ReadAt(got, 0); k != len(want) || (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(got, want) {
				t.Fatalf("final ReadAt: %d, %v", k, err)
			}
			must(t, f.Close())
			stored, err := readAll(t, m.Bytes(), kr)
			if err != nil || !bytes.Equal(stored, want) {
				t.Fatalf("stored: %v, equal %v", err, bytes.Equal(stored, want))
			}
		})
	}
}
