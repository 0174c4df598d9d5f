package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"
)

var roundTripSizes = []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 7}

func TestRoundTrip(t *testing.T) {
	kr := testKeyring(t)
	for _, size := range roundTripSizes {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			data := pattern(size, uint64(size))
			stored := writeFile(t, kr, data)
			if want := CiphertextSize(int64(size)); int64(len(stored)) != want {
				t.Fatalf("stored %d bytes, want %d", len(stored), want)
			}
			got, err := readAll(t, stored, kr)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("File round trip: err %v, equal %v", err, bytes.Equal(got, data))
			}
			r, err := NewReader(newMem(stored), int64(len(stored)), kr, Options{})
			must(t, err)
			if err := iotest.TestReader(r, data); err != nil {
				t.Fatal(err)
			}
			must(t, Verify(newMem(stored), int64(len(stored)), kr, Options{}))

			// The streaming writer produces the same layout.
			var buf bytes.Buffer
			w, err := NewWriter(&buf, kr, Options{})
			must(t, err)
			// Odd-sized writes cross chunk boundaries.
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1000+len(rest)%777)
				_, err := w.Write(rest[:n])
				must(t, err)
				rest = rest[n:]
			}
			must(t, w.Close())
			if buf.Len() != len(stored) {
				t.Fatalf("writer stored %d bytes, File %d", buf.Len(), len(stored))
			}
			got, err = readAll(t, buf.Bytes(), kr)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("writer round trip: %v", err)
			}
		})
	}
}

func TestReadAtEOF(t *testing.T) {
	kr := testKeyring(t)
	data := pattern(100, 1)
	stored := writeFile(t, kr, data)
	f, err := Open(newMem(stored), int64(len(stored)), kr, Options{})
	must(t, err)
	defer f.Close()
	p := make([]byte, 10)
	for _, tc := range []struct {
		off  int64
		n    int
		eof  bool
		name string
	}{
		{0, 10, false, "start"},
		{95, 5, true, "across end"},
		{100, 0, true, "at end"},
		{1000, 0, true, "beyond end"},
	} {
		n, err := f.ReadAt(p, tc.off)
		if n != tc.n || (err == io.EOF) != tc.eof || (err != nil && err != io.EOF) {
			t.Errorf("%s: ReadAt(%d) = %d, %v", tc.name, tc.off, n, err)
		}
		if n > 0 && !bytes.Equal(p[:n], data[tc.off:tc.off+int64(n)]) {
			t.Errorf("%s: wrong bytes", tc.name)
		}
	}
	if _, err := f.ReadAt(p, -1); err == nil {
		t.Error("negative offset accepted")
	}
	if n, err := f.ReadAt(nil, 5); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}
}

func TestCreateRefusesNonEmpty(t *testing.T) {
	kr := testKeyring(t)
	if _, err := Create(newMem([]byte("x")), kr, Options{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create on non-empty backing: %v", err)
	}
}

func TestClosed(t *testing.T) {
	kr := testKeyring(t)
	f, err := Create(newMem(nil), kr, Options{})
	must(t, err)
	must(t, f.Close())
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("WriteAt after Close: %v", err)
	}
	if err := f.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

// TestGrowShrink walks the truncate cases across chunk boundaries, checking
// the stored bytes after each Flush by reopening.
func TestGrowShrink(t *testing.T) {
	kr := testKeyring(t)
	cs := int64(chunkSize)
	steps := []int64{0, 1, cs - 1, cs, cs + 1, 3*cs + 7, 2 * cs, cs + 1, 5, 0, 2*cs + 3, 0}
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	var model []byte
	for k, size := range steps {
		// Write a marker into the old tail, so shrink-then-grow must zero it.
		if len(model) > 0 {
			off := int64(len(model)) - 1
			_, err := f.WriteAt([]byte{0xAA}, off)
			must(t, err)
			model[off] = 0xAA
		}
		must(t, f.Truncate(size))
		model = applyTruncate(model, size)
		if f.Size() != size {
			t.Fatalf("step %d: Size %d, want %d", k, f.Size(), size)
		}
		must(t, f.Flush())
		if m.Size() != CiphertextSize(size) {
			t.Fatalf("step %d: stored %d, want %d", k, m.Size(), CiphertextSize(size))
		}
		got, err := readAll(t, m.Bytes(), kr)
		if err != nil || !bytes.Equal(got, model) {
			t.Fatalf("step %d (size %d): reopened content differs: %v", k, size, err)
		}
	}
	must(t, f.Close())
}

func TestWritePastEOFZeros(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	off := int64(3*chunkSize + 100)
	_, err = f.WriteAt([]byte("tail"), off)
	must(t, err)
	must(t, f.Close())
	want := append(make([]byte, off), "tail"...)
	got, err := readAll(t, m.Bytes(), kr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sparse write: %v", err)
	}
	// The gap is stored as encrypted zeros, not as zero bytes.
	if bytes.Contains(m.Bytes()[HeaderSize:], make([]byte, 64)) {
		t.Error("stored file contains a run of 64 zero bytes")
	}
}

// model is the plain in-memory reference the File is checked against.
type model struct {
	mu   sync.Mutex
	data []byte
}

// TestRandomOps runs random WriteAt/ReadAt/Truncate/Flush sequences, biased
// to chunk boundaries, from several goroutines against one File, and checks
// every read against a model. Each goroutine owns a disjoint region for
// writes, so the model stays exact under concurrency, and a final check
// compares everything (also after reopening).
func TestRandomOps(t *testing.T) {
	kr := testKeyring(t)
	seeds := 6
	ops := 300
	if testing.Short() {
		seeds, ops = 2, 100
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			randomOps(t, kr, uint64(seed), ops)
		})
	}
}

func randomOps(t *testing.T, kr *Keyring, seed uint64, ops int) {
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	mod := &model{}
	const workers = 4
	region := int64(2*chunkSize + 333) // per worker, straddles boundaries
	// Truncate changes everyone's data, so it runs between rounds while
	// no worker is active.
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(round*workers+w)))
				base := int64(w) * region
				if err := workerOps(f, mod, r, base, region, ops/3); err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(seed, 1000+uint64(round)))
		size := interestingOffset(r, workers*region)
		must(t, f.Truncate(size))
		mod.data = applyTruncate(mod.data, size)
		checkAll(t, f, mod.data)
	}
	must(t, f.Close())
	got, err := readAll(t, m.Bytes(), kr)
	if err != nil || !bytes.Equal(got, mod.data) {
		t.Fatalf("after reopen: %v (len %d vs %d)", err, len(got), len(mod.data))
	}
}

// interestingOffset returns a random offset in [0, limit], half of the time
// within a few bytes of a chunk boundary.
func interestingOffset(r *rand.Rand, limit int64) int64 {
	if r.IntN(2) == 0 {
		return r.Int64N(limit + 1)
	}
	b := r.Int64N(limit/chunkSize+1)*chunkSize + r.Int64N(5) - 2
	return min(max(b, 0), limit)
}

// randomPool is where random writes take their bytes from (generating
// them per write is slow under -race). It is never written to.
var randomPool = pattern(4*chunkSize, 99)

func workerOps(f *File, mod *model, r *rand.Rand, base, region int64, ops int) error {
	for range ops {
		off := base + interestingOffset(r, region-1)
		n := int(min(r.Int64N(3*chunkSize/2)+1, base+region-off))
		if r.IntN(4) == 0 {
			n = min(n, r.IntN(40)+1)
		}
		switch op := r.IntN(10); {
		case op < 5:
			start := r.IntN(len(randomPool) - n)
			p := randomPool[start : start+n : start+n]
			// Hold the model lock across the write so that model and
			// file see writes in the same order (regions are disjoint,
			// but growth zero-fills others' gaps).
			mod.mu.Lock()
			_, err := f.WriteAt(p, off)
			if err == nil {
				mod.data = applyWrite(mod.data, p, off)
			}
			mod.mu.Unlock()
			if err != nil {
				return err
			}
		case op < 9:
			p := make([]byte, n)
			mod.mu.Lock()
			got, err := f.ReadAt(p, off)
			want := max(0, min(int64(n), int64(len(mod.data))-off))
			ok := int64(got) == want && (want == 0 || bytes.Equal(p[:got], mod.data[off:off+want]))
			mod.mu.Unlock()
			if err != nil && err != io.EOF {
				return err
			}
			if !ok || (got < n) != (err == io.EOF) {
				return fmt.Errorf("ReadAt(%d, %d) = %d, %v; want %d bytes", n, off, got, err, want)
			}
		default:
			if err := f.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkAll(t *testing.T, f *File, want []byte) {
	t.Helper()
	if f.Size() != int64(len(want)) {
		t.Fatalf("Size %d, want %d", f.Size(), len(want))
	}
	got := make([]byte, len(want)+1)
	n, err := f.ReadAt(got, 0)
	if err != io.EOF || !bytes.Equal(got[:n], want) {
		t.Fatalf("full read: %d bytes, %v", n, err)
	}
}

// TestConcurrentSFTPWrites mimics an SFTP client: 8 workers write 32 KiB
// pieces out of order, then 8 workers read them back out of order.
func TestConcurrentSFTPWrites(t *testing.T) {
	kr := testKeyring(t)
	const piece = 32 << 10
	size := 2*maxCached*2*piece + 123 // twice the cache: evictions
	if testing.Short() {
		size = 12*piece + 123
	}
	data := pattern(size, 7)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	npieces := (size + piece - 1) / piece
	order := rand.New(rand.NewPCG(1, 2)).Perm(npieces)
	run := func(fn func(k int) error) {
		t.Helper()
		work := make(chan int)
		errs := make(chan error, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range work {
					if err := fn(k); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for _, k := range order {
			work <- k
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	run(func(k int) error {
		off := k * piece
		_, err := f.WriteAt(data[off:min(off+piece, size)], int64(off))
		return err
	})
	if f.Size() != int64(size) {
		t.Fatalf("Size %d, want %d", f.Size(), size)
	}
	run(func(k int) error {
		off := k * piece
		p := make([]byte, piece)
		n, err := f.ReadAt(p, int64(off))
		if err != nil && err != io.EOF {
			return err
		}
		if !bytes.Equal(p[:n], data[off:min(off+piece, size)]) {
			return fmt.Errorf("piece %d differs", k)
		}
		return nil
	})
	must(t, f.Close())
	got, err := readAll(t, m.Bytes(), kr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reopen: %v", err)
	}
}

// TestStickyWriteError: a failed write to the backing poisons the File.
func TestStickyWriteError(t *testing.T) {
	kr := testKeyring(t)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	m.mu.Lock()
	m.failAt = m.nmut + 1
	m.mu.Unlock()
	_, err = f.WriteAt(pattern(3*chunkSize, 1), 0)
	must(t, err) // cached
	if err := f.Flush(); !errors.Is(err, errInjected) {
		t.Fatalf("Flush: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, errInjected) {
		t.Errorf("ReadAt after failed flush: %v", err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, errInjected) {
		t.Errorf("WriteAt after failed flush: %v", err)
	}
	if err := f.Close(); !errors.Is(err, errInjected) {
		t.Errorf("Close after failed flush: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	kr := testKeyring(t)
	f, err := Create(newMem(nil), kr, Options{})
	must(t, err)
	defer f.Close()
	if _, err := f.WriteAt([]byte("x"), MaxPlaintextSize); !errors.Is(err, ErrTooLarge) {
		t.Errorf("WriteAt beyond limit: %v", err)
	}
	if err := f.Truncate(MaxPlaintextSize + 1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Truncate beyond limit: %v", err)
	}
}

// TestRandomOpsSequential interleaves Truncate with the other operations
// (the concurrent test only truncates between rounds).
func TestRandomOpsSequential(t *testing.T) {
	kr := testKeyring(t)
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		m := newMem(nil)
		f, err := Create(m, kr, Options{})
		must(t, err)
		var mod []byte
		r := rand.New(rand.NewPCG(uint64(seed), 9))
		for k := range 60 {
			off := interestingOffset(r, 3*chunkSize)
			n := int(r.Int64N(3*chunkSize/2) + 1)
			if r.IntN(3) == 0 {
				n = r.IntN(40) + 1
			}
			switch op := r.IntN(10); {
			case op < 5:
				start := r.IntN(len(randomPool) - n)
				p := randomPool[start : start+n : start+n]
				_, err := f.WriteAt(p, off)
				must(t, err)
				mod = applyWrite(mod, p, off)
			case op < 8:
				p := make([]byte, n)
				got, err := f.ReadAt(p, off)
				want := max(0, min(int64(n), int64(len(mod))-off))
				if (err != nil && err != io.EOF) || int64(got) != want ||
					(want > 0 && !bytes.Equal(p[:got], mod[off:off+want])) {
					t.Fatalf("seed %d op %d: ReadAt(%d, %d) = %d, %v; want %d bytes", seed, k, n, off, got, err, want)
				}
			case op < 9:
				must(t, f.Flush())
			default:
				must(t, f.Truncate(off))
				mod = applyTruncate(mod, off)
			}
		}
		must(t, f.Close())
		got, err := readAll(t, m.Bytes(), kr)
		if err != nil || !bytes.Equal(got, mod) {
			t.Fatalf("seed %d: after reopen: %v", seed, err)
		}
	}
}

// TestUploadSealsOnce: an upload in 32 KiB pieces, out of order within a
// window like pkg/sftp's workers, larger than the cache, seals and writes
// every chunk exactly once (evictions write only completed lower chunks and
// never the last one).
func TestUploadSealsOnce(t *testing.T) {
	for _, par := range []parallelism{parallelNone, parallelAll} {
		t.Run(fmt.Sprintf("parallel=%d", par), func(t *testing.T) {
			kr := testKeyring(t)
			const piece = 32 << 10
			nchunks := 3*maxCached + 5
			data := pattern(nchunks*chunkSize-100, 21)
			m := newMem(nil)
			f, err := Create(m, kr, Options{})
			must(t, err)
			f.setParallelism(par)
			m.mu.Lock()
			m.record = true
			m.mu.Unlock()
			r := rand.New(rand.NewPCG(5, 6))
			npieces := (len(data) + piece - 1) / piece
			for base := 0; base < npieces; base += 8 {
				for _, k := range r.Perm(8) {
					if k += base; k < npieces {
						_, err := f.WriteAt(data[k*piece:min((k+1)*piece, len(data))], int64(k*piece))
						must(t, err)
					}
				}
			}
			must(t, f.Close())
			writes := map[int64]int{}
			for _, op := range m.ops {
				if op.truncate {
					t.Fatal("upload truncated the backing")
				}
				// A batch of consecutive chunks goes in one write.
				first := (op.off - HeaderSize) / encChunkSize
				for k := range max(1, (len(op.data)+encChunkSize-1)/encChunkSize) {
					writes[first+int64(k)]++
				}
			}
			// Chunk 0 was the empty final chunk: re-sealed once, as any chunk.
			for i := range int64(nchunks) {
				if writes[i] != 1 {
					t.Errorf("chunk %d written %d times", i, writes[i])
				}
			}
			got, err := readAll(t, m.Bytes(), kr)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after upload: %v", err)
			}
		})
	}
}

// TestReadDuringLongWrite reads back every chunk while a long write is
// between evictions (stored chunks without a final one) and after.
func TestReadDuringLongWrite(t *testing.T) {
	kr := testKeyring(t)
	data := pattern((maxCached+10)*chunkSize+5, 22)
	m := newMem(nil)
	f, err := Create(m, kr, Options{})
	must(t, err)
	_, err = f.WriteAt(data, 0)
	must(t, err)
	if m.Size() == CiphertextSize(0) {
		t.Fatal("no eviction happened")
	}
	// The stored file has no final chunk yet.
	if _, err := readAll(t, m.Bytes(), kr); !errors.Is(err, ErrTruncated) {
		t.Fatalf("stored file mid-write: %v", err)
	}
	checkAll(t, f, data)
	// Overwrite a stored (evicted) chunk partially, grow, shrink, read.
	_, err = f.WriteAt([]byte("patch"), 3*chunkSize+10)
	must(t, err)
	copy(data[3*chunkSize+10:], "patch")
	checkAll(t, f, data)
	must(t, f.Truncate(int64(len(data))+chunkSize))
	data = append(data, make([]byte, chunkSize)...)
	checkAll(t, f, data)
	must(t, f.Truncate(5*chunkSize+1))
	data = data[:5*chunkSize+1]
	checkAll(t, f, data)
	must(t, f.Close())
	got, err := readAll(t, m.Bytes(), kr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after close: %v", err)
	}
}

// TestHotPathAllocs: once the cache is warm, ReadAt and WriteAt of 32 KiB
// (hits and misses, including evictions that seal and write chunks) do not
// allocate; with XAES-256-GCM, but for the AES-GCM of each chunk's derived
// key (crypto/aes and crypto/cipher allocate it: xaesAllocs per chunk;
// at most one chunk per call here).
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts under -short are not interesting")
	}
	for _, aead := range []AEAD{XChaCha20Poly1305, XAES256GCM} {
		t.Run(aead.String(), func(t *testing.T) {
			limit := 0.0
			if aead == XAES256GCM {
				limit = xaesAllocs
			}
			kr := testKeyring(t)
			const piece = 32 << 10
			n := 4 * maxCached * chunkSize / piece // pieces over 4 caches' worth
			store := make([]byte, 0, CiphertextSize(int64(4*n*piece)))
			m := &memBacking{data: store}
			f, err := Create(m, kr, Options{AEAD: aead})
			must(t, err)
			p := pattern(piece, 40)
			// Warm up: fill the cache and the buffer pool.
			for k := range n {
				_, err := f.WriteAt(p, int64(k*piece))
				must(t, err)
			}
			must(t, f.Flush())
			k := 0
			if a := testing.AllocsPerRun(2*n, func() {
				if _, err := f.WriteAt(p, int64(n*piece+k*piece)); err != nil {
					t.Fatal(err)
				}
				k++
			}); a > limit {
				t.Errorf("WriteAt: %.2f allocations per call", a)
			}
			must(t, f.Flush())
			k = 0
			buf := make([]byte, piece)
			if a := testing.AllocsPerRun(2*n, func() {
				if _, err := f.ReadAt(buf, int64((k*7919)%(2*n)*piece)); err != nil {
					t.Fatal(err)
				}
				k++
			}); a > limit {
				t.Errorf("ReadAt: %.2f allocations per call", a)
			}
		})
	}
}

// xaesAllocs is what sealing or opening one XAES-256-GCM chunk allocates:
// the AES-256 block cipher and the GCM of the derived key.
const xaesAllocs = 2

func TestXAESAllocsPerChunk(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts under -short are not interesting")
	}
	a, err := newChunkAEAD(aeadXAES256GCM, make([]byte, 32), make([]byte, 32))
	must(t, err)
	s := newSealer(a, [32]byte{})
	out := make([]byte, 1024+ChunkOverhead)
	plain := make([]byte, 1024)
	if n := testing.AllocsPerRun(100, func() {
		s.seal(out, 1, false, plain)
		must(t, s.open(plain, out, 1, false))
	}); n > 2*xaesAllocs {
		t.Errorf("seal+open: %.1f allocations, want <= %d", n, 2*xaesAllocs)
	}
}
