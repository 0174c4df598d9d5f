package httpx

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"testing"
	"testing/iotest"
	"time"
)

// memFile is a File in memory; failAt >= 0 makes reads at or past it fail.
type memFile struct {
	data   []byte
	failAt int64
}

var errDamaged = errors.New("damaged chunk")

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if m.failAt >= 0 && off+int64(len(p)) > m.failAt {
		n := 0
		if off < m.failAt {
			n = copy(p, m.data[off:m.failAt])
		}
		return n, errDamaged
	}
	return bytes.NewReader(m.data).ReadAt(p, off)
}

func (m *memFile) Stat() (fs.FileInfo, error) { return memInfo(len(m.data)), nil }

type memInfo int64

func (i memInfo) Name() string       { return "f" }
func (i memInfo) Size() int64        { return int64(i) }
func (i memInfo) Mode() fs.FileMode  { return 0o600 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// countCorker counts Cork/Uncork pairs.
type countCorker struct{ corked, uncorked int }

func (c *countCorker) Cork()         { c.corked++ }
func (c *countCorker) Uncork() error { c.uncorked++; return nil }

// TestAheadReader checks the read-ahead against the file's content: io
// reads of every size (iotest.TestReader also seeks), Send with and without
// a limit, seeks that restart it, and Stop in any state.
func TestAheadReader(t *testing.T) {
	for _, size := range []int{0, 1, 64<<10 + 1, AheadBufSize - 1, AheadBufSize, AheadBufSize + 1, 3*AheadBufSize + 5} {
		data := make([]byte, size)
		rand.Read(data)
		f := &memFile{data: data, failAt: -1}
		t.Run(fmt.Sprintf("%d/iotest", size), func(t *testing.T) {
			a := NewAheadReader(f)
			defer a.Stop()
			if err := iotest.TestReader(a, data); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(fmt.Sprintf("%d/send", size), func(t *testing.T) {
			for _, limit := range []int64{-1, 0, 1, int64(size) / 2, int64(size), int64(size) + 10} {
				a := NewAheadReader(f)
				var b bytes.Buffer
				var c countCorker
				n, err := a.Send(&b, limit, &c)
				want := data
				if limit >= 0 && limit < int64(size) {
					want = data[:limit]
				}
				if err != nil || n != int64(len(want)) || !bytes.Equal(b.Bytes(), want) {
					t.Fatalf("limit %d: wrote %d, %v; equal %v", limit, n, err, bytes.Equal(b.Bytes(), want))
				}
				if c.corked != c.uncorked {
					t.Fatalf("limit %d: corked %d, uncorked %d", limit, c.corked, c.uncorked)
				}
				// The rest follows with Read.
				rest, err := io.ReadAll(a)
				if err != nil || !bytes.Equal(rest, data[len(want):]) {
					t.Fatalf("limit %d: rest %d bytes, %v", limit, len(rest), err)
				}
				a.Stop()
			}
		})
		t.Run(fmt.Sprintf("%d/seek", size), func(t *testing.T) {
			a := NewAheadReader(f)
			defer a.Stop()
			buf := make([]byte, 1000)
			a.Read(buf) // starts the read-ahead
			for _, off := range []int64{int64(size) / 3, 0, int64(size), int64(size) - 1} {
				if off < 0 {
					continue
				}
				if got, err := a.Seek(off, io.SeekStart); err != nil || got != off {
					t.Fatalf("Seek(%d): %d, %v", off, got, err)
				}
				rest, err := io.ReadAll(a)
				if err != nil || !bytes.Equal(rest, data[off:]) {
					t.Fatalf("after Seek(%d): %d bytes, %v", off, len(rest), err)
				}
			}
			if end, err := a.Seek(0, io.SeekEnd); err != nil || end != int64(size) {
				t.Fatalf("Seek(end): %d, %v", end, err)
			}
		})
	}
}

// TestAheadReaderError: a read error past the first buffer ends the
// stream after the bytes read before it, sticks, and is kept for the log.
func TestAheadReaderError(t *testing.T) {
	data := make([]byte, 3*AheadBufSize)
	rand.Read(data)
	bad := int64(2*AheadBufSize + 100)
	a := NewAheadReader(&memFile{data: data, failAt: bad})
	defer a.Stop()
	var b bytes.Buffer
	n, err := a.Send(&b, -1, nil)
	if !errors.Is(err, errDamaged) || n != bad || !bytes.Equal(b.Bytes(), data[:n]) {
		t.Fatalf("Send: %d bytes, %v", n, err)
	}
	if _, err := a.Read(make([]byte, 10)); !errors.Is(err, errDamaged) {
		t.Fatalf("Read after the error: %v", err)
	}
	if !errors.Is(a.Err(), errDamaged) {
		t.Fatalf("Err: %v", a.Err())
	}
}
