package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"
)

// The raw AEAD on 64 KiB is the ceiling the File benchmarks are compared
// with: go test -run x -bench . -benchtime 200x ./internal/envelope/

func BenchmarkRawXChaCha20Poly1305Seal64K(b *testing.B) {
	aead, _ := chacha20poly1305.NewX(make([]byte, 32))
	nonce := make([]byte, nonceSize)
	plain := make([]byte, chunkSize)
	out := make([]byte, 0, encChunkSize)
	b.SetBytes(chunkSize)
	for b.Loop() {
		aead.Seal(out[:0], nonce, plain, nil)
	}
}

func BenchmarkRawXChaCha20Poly1305Open64K(b *testing.B) {
	aead, _ := chacha20poly1305.NewX(make([]byte, 32))
	nonce := make([]byte, nonceSize)
	sealed := aead.Seal(nil, nonce, make([]byte, chunkSize), nil)
	out := make([]byte, chunkSize)
	b.SetBytes(chunkSize)
	for b.Loop() {
		if _, err := aead.Open(out[:0], nonce, sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// The raw XAES-256-GCM as the File uses it: the per-chunk key derivation
// (two AES blocks, an AES-256 key schedule, a GCM) and AES-256-GCM; and
// plain AES-256-GCM for reference.
func BenchmarkRawXAES256GCMSeal64K(b *testing.B) {
	x, _ := newXAES256GCM(make([]byte, 32))
	var scr xaesScratch
	nonce := make([]byte, nonceSize)
	plain := make([]byte, chunkSize)
	out := make([]byte, 0, encChunkSize)
	b.SetBytes(chunkSize)
	for b.Loop() {
		x.derive(&scr, nonce).Seal(out[:0], nonce[12:], plain, nil)
	}
}

func BenchmarkRawXAES256GCMOpen64K(b *testing.B) {
	x, _ := newXAES256GCM(make([]byte, 32))
	var scr xaesScratch
	nonce := make([]byte, nonceSize)
	sealed := x.Seal(nil, nonce, make([]byte, chunkSize), nil)
	out := make([]byte, chunkSize)
	b.SetBytes(chunkSize)
	for b.Loop() {
		if _, err := x.derive(&scr, nonce).Open(out[:0], nonce[12:], sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawAES256GCMSeal64K(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 32))
	g, _ := cipher.NewGCM(blk)
	nonce := make([]byte, 12)
	plain := make([]byte, chunkSize)
	out := make([]byte, 0, encChunkSize)
	b.SetBytes(chunkSize)
	for b.Loop() {
		g.Seal(out[:0], nonce, plain, nil)
	}
}

// benchFile returns a File over an in-memory backing with room for n
// chunks, holding size plaintext bytes.
func benchFile(b *testing.B, n int, size int) (*File, *memBacking, *Keyring) {
	return benchFileAEAD(b, DefaultAEAD, n, size)
}

func benchFileAEAD(b *testing.B, aead AEAD, n int, size int) (*File, *memBacking, *Keyring) {
	b.Helper()
	kr := testKeyring(b)
	// Touch the backing memory first: page faults are not the format's.
	buf := make([]byte, CiphertextSize(int64(n)*chunkSize))
	for i := range buf {
		buf[i] = 1
	}
	m := &memBacking{data: buf[:0]}
	f, err := Create(m, kr, Options{AEAD: aead})
	must(b, err)
	if size > 0 {
		_, err = f.WriteAt(pattern(size, 1), 0)
		must(b, err)
		must(b, f.Flush())
	}
	return f, m, kr
}

func benchWriteSeq(b *testing.B, piece int) { benchWriteSeqAEAD(b, DefaultAEAD, piece) }

func benchWriteSeqAEAD(b *testing.B, aead AEAD, piece int) {
	f, _, _ := benchFileAEAD(b, aead, b.N*piece/chunkSize+2, 0)
	p := pattern(piece, 2)
	b.SetBytes(int64(piece))
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.WriteAt(p, int64(i)*int64(piece)); err != nil {
			b.Fatal(err)
		}
	}
	must(b, f.Close())
}

func BenchmarkFileWriteSequential64K(b *testing.B) { benchWriteSeq(b, 64<<10) }
func BenchmarkFileWriteSequential32K(b *testing.B) { benchWriteSeq(b, 32<<10) }

// The same for a file of XChaCha20-Poly1305 (AEAD id 1), to compare with
// the raw XChaCha20-Poly1305.
func BenchmarkFileXChaChaWriteSequential64K(b *testing.B) {
	benchWriteSeqAEAD(b, XChaCha20Poly1305, 64<<10)
}
func BenchmarkFileXChaChaReadSequential64K(b *testing.B) {
	benchReadSeqAEAD(b, XChaCha20Poly1305, 64<<10)
}

func benchReadSeq(b *testing.B, piece int) { benchReadSeqAEAD(b, DefaultAEAD, piece) }

func benchReadSeqAEAD(b *testing.B, aead AEAD, piece int) {
	size := b.N * piece
	f, m, kr := benchFileAEAD(b, aead, size/chunkSize+2, size)
	// Reopen so that nothing is cached.
	must(b, f.Close())
	p := make([]byte, piece)
	b.SetBytes(int64(piece))
	b.ResetTimer()
	g, err := Open(m, m.Size(), kr, Options{})
	must(b, err)
	for i := range b.N {
		if _, err := g.ReadAt(p, int64(i)*int64(piece)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileReadSequential64K(b *testing.B) { benchReadSeq(b, 64<<10) }

// The same sequential 64 KiB writes and reads, cycling over a 1 MiB file
// that stays in the CPU's cache, as the raw AEAD's buffers do: so the ratio
// to the raw AEAD is the format's own cost (nonces, AAD, chunk bookkeeping,
// the store calls), not the memory bandwidth of a store larger than the
// cache, which any encrypting store pays on top of the cipher.
const hotChunks = 16

func BenchmarkFileWriteSequential64KHot(b *testing.B) { benchWriteHot(b, DefaultAEAD) }
func BenchmarkFileReadSequential64KHot(b *testing.B)  { benchReadHot(b, DefaultAEAD) }
func BenchmarkFileXChaChaWriteSequential64KHot(b *testing.B) {
	benchWriteHot(b, XChaCha20Poly1305)
}
func BenchmarkFileXChaChaReadSequential64KHot(b *testing.B) {
	benchReadHot(b, XChaCha20Poly1305)
}

// ringBacking stores every write, at its offset modulo a 1 MiB ring: a
// store that costs the copy any store costs but stays in the CPU's cache.
// It reads back what was written last at an offset, which is all a File
// appending sequentially reads.
type ringBacking struct {
	ring [hotChunks * chunkSize]byte
	size int64
}

func (r *ringBacking) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.size {
		return 0, io.ErrUnexpectedEOF // not needed by the benchmark
	}
	for n := 0; n < len(p); {
		n += copy(p[n:], r.ring[(off+int64(n))%int64(len(r.ring)):])
	}
	return len(p), nil
}

func (r *ringBacking) WriteAt(p []byte, off int64) (int, error) {
	for n := 0; n < len(p); {
		n += copy(r.ring[(off+int64(n))%int64(len(r.ring)):], p[n:])
	}
	r.size = max(r.size, off+int64(len(p)))
	return len(p), nil
}

func (r *ringBacking) Truncate(int64) error { return nil }

func benchWriteHot(b *testing.B, aead AEAD) { benchWriteChunks(b, &ringBacking{}, aead) }

// benchWriteChunks times sequential whole-chunk writes of a new file of
// the given AEAD over store, and its Close (which writes the last chunks).
func benchWriteChunks(b *testing.B, store Backing, aead AEAD) {
	f, err := Create(store, testKeyring(b), Options{AEAD: aead})
	must(b, err)
	p := pattern(chunkSize, 2)
	b.SetBytes(chunkSize)
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.WriteAt(p, int64(i)*chunkSize); err != nil {
			b.Fatal(err)
		}
	}
	must(b, f.Close())
}

func benchReadHot(b *testing.B, aead AEAD) {
	f, m, kr := benchFileAEAD(b, aead, hotChunks, hotChunks*chunkSize)
	must(b, f.Close())
	g, err := Open(m, m.Size(), kr, Options{})
	must(b, err)
	// One core, like the raw AEAD (by default sequential reads decrypt
	// ahead on the other cores).
	g.setParallelism(parallelNone)
	p := make([]byte, chunkSize)
	b.SetBytes(chunkSize)
	b.ResetTimer()
	for i := range b.N {
		if _, err := g.ReadAt(p, int64(i%hotChunks)*chunkSize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileReadSequential32K(b *testing.B) { benchReadSeq(b, 32<<10) }

// Random 4 KiB operations over a 16 MiB file: each cache miss costs a
// whole 64 KiB chunk (the price of 64 KiB chunks).
const randomFileSize = 16 << 20

func BenchmarkFileWriteRandom4K(b *testing.B) {
	f, _, _ := benchFile(b, randomFileSize/chunkSize+1, randomFileSize)
	p := pattern(4096, 3)
	r := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(4096)
	b.ResetTimer()
	for range b.N {
		if _, err := f.WriteAt(p, r.Int64N(randomFileSize/4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
	must(b, f.Flush())
}

func BenchmarkFileReadRandom4K(b *testing.B) {
	f, _, _ := benchFile(b, randomFileSize/chunkSize+1, randomFileSize)
	p := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	b.SetBytes(4096)
	b.ResetTimer()
	for range b.N {
		if _, err := f.ReadAt(p, r.Int64N(randomFileSize/4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileWriteSFTP is the pkg/sftp pattern: 8 goroutines write 32 KiB
// pieces of a growing file, out of order within a window of 8 pieces.
func BenchmarkFileWriteSFTP(b *testing.B) {
	const piece = 32 << 10
	f, _, _ := benchFile(b, b.N*piece/chunkSize+2, 0)
	p := pattern(piece, 2)
	work := make(chan int64, 8)
	done := make(chan error, 8)
	b.SetBytes(piece)
	b.ResetTimer()
	for range 8 {
		go func() {
			for off := range work {
				if _, err := f.WriteAt(p, off); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	perm := rand.New(rand.NewPCG(3, 4)).Perm(8)
	for base := 0; base < b.N; base += 8 {
		for _, k := range perm {
			if base+k < b.N {
				work <- int64(base+k) * piece
			}
		}
	}
	close(work)
	for range 8 {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	must(b, f.Close())
}

// sinkBacking keeps the first 4 KiB (header and chunk 0) and discards every
// other write: BenchmarkFileWriteSequential64KNoStore measures the format's
// own cost without the copy into storage that any backing pays.
type sinkBacking struct{ head []byte }

func (s *sinkBacking) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, s.head[min(off, int64(len(s.head))):]), nil
}

func (s *sinkBacking) WriteAt(p []byte, off int64) (int, error) {
	if off < 4096 {
		s.head = applyWrite(s.head, p, off)
	}
	return len(p), nil
}

func (s *sinkBacking) Truncate(int64) error { return nil }

func BenchmarkFileWriteSequential64KNoStore(b *testing.B) {
	benchWriteChunks(b, &sinkBacking{}, DefaultAEAD)
}

// threadCPU is the CPU time of the calling thread, to the nanosecond
// (getrusage counts in scheduler ticks: 4 ms, 6% of a measurement).
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// BenchmarkCPUTimeRatios compares, by CPU time of the calling thread (so
// that a busy machine skews it less than wall-clock time), the raw AEAD with
// sequential File writes and reads of 3000 chunks. It reports each as
// MB/s of CPU time and as a percentage of the raw AEAD (alone, and plus the
// same copy into the in-memory store the File makes). A measurement, not a
// check: docs/PERFORMANCE.md records its results. Linux only.
// Run: go test -run '^$' -bench CPUTimeRatios -benchtime 3x ./internal/envelope/
func BenchmarkCPUTimeRatios(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("CLOCK_THREAD_CPUTIME_ID is Linux's")
	}
	// One P: the File's parallel batches run on the benchmark's thread,
	// so its CPU time is all the work.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, id := range []AEAD{XChaCha20Poly1305, XAES256GCM} {
		b.Run(id.String(), func(b *testing.B) {
			// On the sub-benchmark's goroutine: the thread clock is
			// that of the thread it stays on.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpuTimeRatios(b, id)
		})
	}
}

func cpuTimeRatios(b *testing.B, id AEAD) {
	const n = 3000
	timed := func(fn func()) time.Duration {
		c := threadCPU()
		fn()
		return threadCPU() - c
	}
	aead, _ := newChunkAEAD(byte(id), make([]byte, 32), make([]byte, 32))
	nonce := make([]byte, nonceSize)
	plain := pattern(chunkSize, 1)
	sealed := make([]byte, 0, encChunkSize)
	kr := testKeyring(b)
	store := make([]byte, CiphertextSize(n*chunkSize))
	for i := range store {
		store[i] = 1
	}
	var seal, open, write, read, noStore, sealStore, loadOpen time.Duration
	for b.Loop() {
		seal += timed(func() {
			for range n {
				sealed = aead.Seal(sealed[:0], nonce, plain, nil)
			}
		})
		open += timed(func() {
			for range n {
				_, _ = aead.Open(plain[:0], nonce, sealed, nil)
			}
		})
		m := &memBacking{data: store[:0]}
		f, err := Create(m, kr, Options{AEAD: id})
		must(b, err)
		write += timed(func() {
			for i := range n {
				_, _ = f.WriteAt(plain, int64(i)*chunkSize)
			}
			must(b, f.Close())
		})
		g, err := Open(m, m.Size(), kr, Options{})
		must(b, err)
		read += timed(func() {
			for i := range n {
				if _, err := g.ReadAt(plain, int64(i)*chunkSize); err != nil {
					b.Fatal(err)
				}
			}
		})
		must(b, g.Close())
		f, err = Create(&sinkBacking{}, kr, Options{AEAD: id})
		must(b, err)
		noStore += timed(func() {
			for i := range n {
				_, _ = f.WriteAt(plain, int64(i)*chunkSize)
			}
			must(b, f.Close())
		})
		// The raw AEAD plus the copy into (out of) the same in-memory
		// store that the File's backing makes: the ceiling of a File
		// over this backing, whatever the format does.
		m = &memBacking{data: store[:0]}
		sealStore += timed(func() {
			for i := range n {
				sealed = aead.Seal(sealed[:0], nonce, plain, nil)
				_, _ = m.WriteAt(sealed, chunkOffset(int64(i)))
			}
		})
		loadOpen += timed(func() {
			ct := sealed[:encChunkSize]
			for i := range n {
				_, _ = m.ReadAt(ct, chunkOffset(int64(i)))
				_, _ = aead.Open(plain[:0], nonce, sealed, nil) // authentic, like the File's
			}
		})
	}
	bytes := float64(b.N) * n * chunkSize
	mbps := func(d time.Duration) float64 { return bytes / d.Seconds() / 1e6 }
	pct := func(raw, got time.Duration) float64 { return 100 * raw.Seconds() / got.Seconds() }
	b.ReportMetric(mbps(seal), "seal-cpuMB/s")
	b.ReportMetric(mbps(open), "open-cpuMB/s")
	b.ReportMetric(mbps(write), "write-cpuMB/s")
	b.ReportMetric(mbps(read), "read-cpuMB/s")
	b.ReportMetric(pct(seal, write), "write/seal-%")
	b.ReportMetric(pct(open, read), "read/open-%")
	b.ReportMetric(pct(seal, noStore), "nostore/seal-%")
	b.ReportMetric(pct(sealStore, write), "write/seal+store-%")
	b.ReportMetric(pct(loadOpen, read), "read/load+open-%")
}

// The same sequential 64 KiB writes and reads through an *os.File in a
// temporary directory (page cache; no fsync): what the server sees.
func BenchmarkFileOSFileWriteSequential64K(b *testing.B) {
	fh, err := os.Create(b.TempDir() + "/f")
	must(b, err)
	defer fh.Close()
	benchWriteChunks(b, fh, DefaultAEAD)
}

func BenchmarkFileOSFileReadSequential64K(b *testing.B) {
	fh, err := os.Create(b.TempDir() + "/f")
	must(b, err)
	defer fh.Close()
	kr := testKeyring(b)
	f, err := Create(fh, kr, Options{})
	must(b, err)
	_, err = f.WriteAt(pattern(b.N*chunkSize, 2), 0)
	must(b, err)
	must(b, f.Close())
	g, err := Open(fh, CiphertextSize(int64(b.N)*chunkSize), kr, Options{})
	must(b, err)
	p := make([]byte, chunkSize)
	b.SetBytes(chunkSize)
	b.ResetTimer()
	for i := range b.N {
		if _, err := g.ReadAt(p, int64(i)*chunkSize); err != nil {
			b.Fatal(err)
		}
	}
}
