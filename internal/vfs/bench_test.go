package vfs

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

// Benchmarks: 4 KiB sequential and random reads and writes on a 16 MiB
// file through plain os.File, envelope.File directly over an os.File, and
// the VFS. Run:
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/vfs/

const benchFileSize = 16 << 20

type benchFile interface {
	io.ReaderAt
	io.WriterAt
}

type envFile struct {
	*envelope.File
	f *os.File
}

func benchTargets(b *testing.B) map[string]func(b *testing.B) (benchFile, func()) {
	return map[string]func(b *testing.B) (benchFile, func()){
		"os": func(b *testing.B) (benchFile, func()) {
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			if err != nil {
				b.Fatal(err)
			}
			return f, func() { f.Close() }
		},
		"envelope": func(b *testing.B) (benchFile, func()) {
			kr, _ := envelope.NewKeyring()
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			if err != nil {
				b.Fatal(err)
			}
			ef, err := envelope.Create(f, kr, envelope.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return envFile{ef, f}, func() { ef.Close(); f.Close() }
		},
		"vfs": func(b *testing.B) (benchFile, func()) {
			_, fs := newFS(b)
			h, err := fs.Create("f")
			if err != nil {
				b.Fatal(err)
			}
			return h, func() { h.Close() }
		},
	}
}

func fill(b *testing.B, f benchFile) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for off := 0; off < benchFileSize; off += len(buf) {
		if _, err := f.WriteAt(buf, int64(off)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIO(b *testing.B) {
	const bs = 4096
	for _, target := range []string{"os", "envelope", "vfs"} {
		open := benchTargets(b)[target]
		for _, kind := range []string{"seq-write", "seq-read", "rand-write", "rand-read"} {
			b.Run(kind+"/"+target, func(b *testing.B) {
				f, done := open(b)
				defer done()
				fill(b, f)
				buf := make([]byte, bs)
				rng := rand.New(rand.NewPCG(1, 1))
				b.SetBytes(bs)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := int64(i*bs) % benchFileSize
					if kind[:4] == "rand" {
						off = int64(rng.IntN(benchFileSize/bs)) * bs
					}
					var err error
					if kind[len(kind)-4:] == "read" {
						_, err = f.ReadAt(buf, off)
					} else {
						_, err = f.WriteAt(buf, off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkUpload: a whole-file upload in 32 KiB writes (SFTP's packet
// size) through the VFS (replacement, hashed on the fly, published on
// Close) vs envelope directly vs os.File.
func BenchmarkUpload(b *testing.B) {
	const size, bs = 16 << 20, 32 << 10
	buf := make([]byte, bs)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.Run("os", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			f, _ := os.Create(filepath.Join(dir, "f"))
			for off := 0; off < size; off += bs {
				f.WriteAt(buf, int64(off))
			}
			f.Sync()
			f.Close()
		}
	})
	b.Run("envelope", func(b *testing.B) {
		dir := b.TempDir()
		kr, _ := envelope.NewKeyring()
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			f, _ := os.Create(filepath.Join(dir, "f"))
			ef, _ := envelope.Create(f, kr, envelope.Options{})
			for off := 0; off < size; off += bs {
				ef.WriteAt(buf, int64(off))
			}
			ef.Close()
			f.Sync()
			f.Close()
		}
	})
	for _, hashes := range []HashKind{0, HashMD5 | HashSHA1} {
		name := "vfs"
		if hashes != 0 {
			name = "vfs-md5-sha1"
		}
		b.Run(name, func(b *testing.B) { benchVFSUpload(b, hashes, buf, size) })
	}
}

// benchVFSUpload: whole-file uploads of size bytes in len(buf) writes, with
// the given Options.UploadHashes.
func benchVFSUpload(b *testing.B, hashes HashKind, buf []byte, size int) {
	bs := len(buf)
	kr, err := envelope.NewKeyring()
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewStore(filepath.Join(b.TempDir(), "store"), Options{Keyring: kr, UploadHashes: hashes})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fs, err := s.Home("bench", HomeOptions{Perm: PermAll})
	if err != nil {
		b.Fatal(err)
	}
	{
		b.SetBytes(int64(size))
		for i := 0; i < b.N; i++ {
			h, err := fs.Create("f")
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < size; off += bs {
				if _, err := h.WriteAt(buf, int64(off)); err != nil {
					b.Fatal(err)
				}
			}
			if err := h.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSmallFiles: many 1 KiB uploads into one directory, as rclone
// does them (upload to NAME.partial, rename, set mtime).
func BenchmarkSmallFiles(b *testing.B) {
	_, fs := newFS(b)
	data := make([]byte, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("f%07d", i)
		h, err := fs.Create(name + ".partial")
		if err != nil {
			b.Fatal(err)
		}
		h.Write(data)
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		if err := fs.Rename(name+".partial", name, true); err != nil {
			b.Fatal(err)
		}
		if err := fs.Chtimes(name, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStat: Stat of a nested file (the symlink policy check included).
func BenchmarkStat(b *testing.B) {
	_, fs := newFS(b)
	fs.MkdirAll("a/b/c", 0o755)
	writeFile(b, fs, "a/b/c/file", []byte("x"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fs.Stat("a/b/c/file"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadDir lists a directory of 10,000 uploaded files (each with
// cached hashes in the sidecar): ReadDir alone, ReadDirMeta (listing plus
// everyone's metadata in one pass), and ReadDir plus Meta per entry (what
// a WebDAV listing did before ReadDirMeta).
func BenchmarkReadDir(b *testing.B) {
	const entries = 10000
	_, fsys := newFS(b)
	if err := fsys.Mkdir("big", 0o755); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < entries; i++ {
		writeFile(b, fsys, fmt.Sprintf("big/f%05d", i), []byte("hello"))
	}
	check := func(b *testing.B, n int) {
		if n != entries {
			b.Fatalf("listed %d entries, want %d", n, entries)
		}
	}
	b.Run("ReadDir", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fis, err := fsys.ReadDir("big")
			if err != nil {
				b.Fatal(err)
			}
			check(b, len(fis))
		}
	})
	b.Run("ReadDirMeta", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fis, metas, err := fsys.ReadDirMeta("big")
			if err != nil {
				b.Fatal(err)
			}
			check(b, len(fis))
			if len(metas) != entries {
				b.Fatalf("metadata of %d entries, want %d", len(metas), entries)
			}
		}
	})
	b.Run("ReadDir+Meta", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fis, err := fsys.ReadDir("big")
			if err != nil {
				b.Fatal(err)
			}
			check(b, len(fis))
			for _, fi := range fis {
				if _, err := fsys.Meta("big/" + fi.Name()); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkPutFiles: new 32 KiB files into one directory, each created,
// written and closed as OpenSSH's sftp put does (no rename, no set
// times): the per-file cost of an upload without the network.
func BenchmarkPutFiles(b *testing.B) {
	_, fs := newFS(b)
	fs.Mkdir("d", 0o755)
	data := make([]byte, 32<<10)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		h, err := fs.OpenFile(fmt.Sprintf("d/f%07d", i), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.WriteAt(data, 0); err != nil {
			b.Fatal(err)
		}
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGetFiles: 32 KiB files opened, read and closed as OpenSSH's
// sftp get does (a READ of 32 KiB, a READ at the end for EOF, CLOSE): the
// per-file cost of a download without the network.
func BenchmarkGetFiles(b *testing.B) {
	const files = 1000
	_, fs := newFS(b)
	fs.Mkdir("d", 0o755)
	data := make([]byte, 32<<10)
	for i := range files {
		writeFile(b, fs, fmt.Sprintf("d/f%07d", i), data)
	}
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		h, err := fs.OpenFile(fmt.Sprintf("d/f%07d", i%files), os.O_RDONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := h.ReadAt(buf, 0); n != len(data) || (err != nil && err != io.EOF) {
			b.Fatal(n, err)
		}
		if _, err := h.ReadAt(buf, int64(len(data))); err != io.EOF {
			b.Fatal(err)
		}
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
