package envelope

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
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

// benchFile returns a File over an in-memory backing with room for n
// chunks, holding size plaintext bytes.
func benchFile(b *testing.B, n int, size int) (*File, *memBacking, *Keyring) {
	b.Helper()
	kr := testKeyring(b)
	// Touch the backing memory first: page faults are not the format's.
	buf := make([]byte, CiphertextSize(int64(n)*chunkSize))
	for i := range buf {
		buf[i] = 1
	}
	m := &memBacking{data: buf[:0]}
	f, err := Create(m, kr)
	must(b, err)
	if size > 0 {
		_, err = f.WriteAt(pattern(size, 1), 0)
		must(b, err)
		must(b, f.Flush())
	}
	return f, m, kr
}

func benchWriteSeq(b *testing.B, piece int) {
	f, _, _ := benchFile(b, b.N*piece/chunkSize+2, 0)
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

func benchReadSeq(b *testing.B, piece int) {
	size := b.N * piece
	f, m, kr := benchFile(b, size/chunkSize+2, size)
	// Reopen so that nothing is cached.
	must(b, f.Close())
	p := make([]byte, piece)
	b.SetBytes(int64(piece))
	b.ResetTimer()
	g, err := Open(m, m.Size(), kr)
	must(b, err)
	for i := range b.N {
		if _, err := g.ReadAt(p, int64(i)*int64(piece)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFileReadSequential64K(b *testing.B) { benchReadSeq(b, 64<<10) }
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
