package s3blob

import (
	"fmt"
	"io"
	"io/fs"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
)

// DefaultStreamMemory bounds Config.StreamMemory when it is zero: room for
// the segments of about three large uploads at once (each holds the one
// being written and Ahead being uploaded).
const DefaultStreamMemory = 64 << 20

// streamBlock is the unit in which a streamed blob takes memory: small
// enough that a segment wastes little of its last one, large enough that
// a 4 MiB segment is a few allocations and never a copy to grow.
const streamBlock = 256 << 10

// CreateStream implements content.Streamer: blob id, a segment of a
// sequential upload past its first, is written in memory while the
// Store's StreamMemory has room, uploaded from there by Publish and not
// kept in the cache. It saves writing every byte of a large upload to the
// cache directory and reading it back to send it, and it leaves the cache
// to what readers use (a read downloads such a blob once, like any blob
// not cached). When the memory is taken, the blob moves to a file of the
// cache directory (Create's path) and is published from there.
func (s *Store) CreateStream(id blob.ID) (content.Pending, error) {
	return &streamed{s: s, id: id}, nil
}

// streamed is a blob being written in memory, in blocks of streamBlock
// reserved from the Store's StreamMemory, until that has no room: then it
// is a *Pending (file).
type streamed struct {
	s      *Store
	id     blob.ID
	blocks [][]byte
	size   int64
	file   *Pending // once spilled
	done   bool
}

// reserve takes n bytes of stream memory, if there is room.
func (s *Store) reserve(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streamUsed+n > s.streamLimit {
		return false
	}
	s.streamUsed += n
	return true
}

func (s *Store) release(n int64) {
	s.mu.Lock()
	s.streamUsed -= n
	s.mu.Unlock()
}

// StreamMemory is the memory streamed blobs hold now.
func (s *Store) StreamMemory() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streamUsed
}

func (b *streamed) ID() blob.ID { return b.id }

// free gives the blocks' memory back.
func (b *streamed) free() {
	for _, p := range b.blocks {
		b.s.blocks.Put(&p)
	}
	b.s.release(int64(len(b.blocks)) * streamBlock)
	b.blocks = nil
}

// newBlock is a zeroed block, one given back if there is one: a new one
// costs the kernel a fault per page, and a large upload goes through
// thousands.
func (s *Store) newBlock() []byte {
	if p, ok := s.blocks.Get().(*[]byte); ok {
		clear(*p)
		return *p
	}
	return make([]byte, streamBlock)
}

// grow makes the blocks cover end bytes, or spills the blob to a file.
func (b *streamed) grow(end int64) error {
	for int64(len(b.blocks))*streamBlock < end {
		if !b.s.reserve(streamBlock) {
			return b.spill()
		}
		b.blocks = append(b.blocks, b.s.newBlock())
	}
	return nil
}

// spill moves the blob to a file of the cache directory.
func (b *streamed) spill() error {
	p, err := b.s.Create(b.id)
	if err != nil {
		return err
	}
	f := p.(*Pending)
	for i, off := 0, int64(0); off < b.size; i, off = i+1, off+streamBlock {
		if _, err := f.WriteAt(b.blocks[i][:min(streamBlock, b.size-off)], off); err != nil {
			f.Abort()
			return fmt.Errorf("s3blob: spill %s: %w", b.id, err)
		}
	}
	b.free()
	b.file = f
	return nil
}

func (b *streamed) WriteAt(p []byte, off int64) (int, error) {
	if b.done {
		return 0, fmt.Errorf("s3blob: blob %s: %w", b.id, fs.ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("s3blob: blob %s: negative offset", b.id)
	}
	if len(p) == 0 {
		return 0, nil // as a file: an empty write does not extend it
	}
	if b.file == nil {
		if err := b.grow(off + int64(len(p))); err != nil {
			return 0, err
		}
	}
	if b.file != nil {
		return b.file.WriteAt(p, off)
	}
	for n := 0; n < len(p); {
		i, in := int(off/streamBlock), off%streamBlock
		k := copy(b.blocks[i][in:], p[n:])
		n, off = n+k, off+int64(k)
	}
	b.size = max(b.size, off)
	return len(p), nil
}

func (b *streamed) ReadAt(p []byte, off int64) (int, error) {
	if b.file != nil {
		return b.file.ReadAt(p, off)
	}
	if off < 0 {
		return 0, fmt.Errorf("s3blob: blob %s: negative offset", b.id)
	}
	n := 0
	for n < len(p) && off < b.size {
		i, in := int(off/streamBlock), off%streamBlock
		k := copy(p[n:], b.blocks[i][in:min(streamBlock, b.size-int64(i)*streamBlock)])
		n, off = n+k, off+int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *streamed) Truncate(size int64) error {
	if b.file != nil {
		return b.file.Truncate(size)
	}
	if size < b.size {
		// What comes back into view must read as zeros, as in a file.
		for off := size; off < b.size; {
			i, in := int(off/streamBlock), off%streamBlock
			k := min(streamBlock-in, b.size-off)
			clear(b.blocks[i][in : in+k])
			off += k
		}
		b.size = size
		return nil
	}
	if err := b.grow(size); err != nil {
		return err
	}
	if b.file != nil {
		return b.file.Truncate(size)
	}
	b.size = size
	return nil
}

// Publish uploads the blob from memory (or from its file, once spilled).
// Not cached: see CreateStream.
func (b *streamed) Publish() error {
	if b.file != nil {
		return b.file.Publish()
	}
	if b.done {
		return fmt.Errorf("s3blob: blob %s: %w", b.id, fs.ErrClosed)
	}
	b.done = true
	defer b.free()
	return b.s.put(b.id, b, b.size)
}

func (b *streamed) Abort() {
	if b.file != nil {
		b.file.Abort()
		return
	}
	if !b.done {
		b.done = true
		b.free()
	}
}
