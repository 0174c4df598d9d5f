package content

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/envelope"
)

// Rewriter is a blob store whose published blobs' headers can be
// rewritten in place for a key rotation (blob.Dir through DirBlobs).
type Rewriter interface {
	OpenRewrite(id blob.ID) (*os.File, error)
}

// Rewrap re-wraps the data key of every segment of layout (the content of
// inode) under kr's active KEK, in place, and reports how many segments
// changed. The content and the segments' bindings stay as they are.
func Rewrap(blobs Blobs, inl InlineRewriter, inode [InodeIDSize]byte, layout Layout, kr *envelope.Keyring) (int, error) {
	changed := 0
	for i, r := range layout.Segs {
		if r.InIndex {
			c, err := rewrapInline(inl, inode, i, r, kr)
			if err != nil {
				return changed, fmt.Errorf("content: rewrap segment %d: %w", i, err)
			}
			if c {
				changed++
			}
			continue
		}
		rw, ok := blobs.(Rewriter)
		if !ok {
			return changed, fmt.Errorf("content: rewrap: the blob store cannot rewrite headers")
		}
		f, err := rw.OpenRewrite(r.Blob)
		if err != nil {
			return changed, fmt.Errorf("content: rewrap segment %d: %w", i, err)
		}
		st, err := f.Stat()
		var c bool
		if err == nil {
			c, err = envelope.Rewrap(f, st.Size(), kr, envelope.Options{Binding: Binding(inode, r.Gen, i)})
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return changed, fmt.Errorf("content: rewrap segment %d: %w", i, err)
		}
		if c {
			changed++
		}
	}
	return changed, nil
}

// KeyIDs adds to ids the KEK ids the segments of layout are wrapped
// under (reading headers only, decrypting nothing).
func KeyIDs(blobs Blobs, inl Inline, layout Layout, ids map[uint32]int) error {
	for i, r := range layout.Segs {
		b, err := openBlob(blobs, inl, r)
		if err != nil {
			return fmt.Errorf("content: key ids of segment %d: %w", i, err)
		}
		got, err := envelope.KeyIDs(b)
		b.Close()
		if err != nil {
			return fmt.Errorf("content: key ids of segment %d: %w", i, err)
		}
		for _, id := range got {
			ids[id]++
		}
	}
	return nil
}

// rewrapInline re-wraps an InIndex segment: in memory, then written back
// whole, so the index holds the old header or the new one, never a torn
// one (what the fsync between the two steps of FORMAT.md 8.3 gives a
// file is the index transaction's atomicity here).
func rewrapInline(rw InlineRewriter, inode [InodeIDSize]byte, i int, r Ref, kr *envelope.Keyring) (bool, error) {
	if rw == nil {
		return false, fmt.Errorf("content: blob %s is in the index, and no index was given", r.Blob)
	}
	data, err := rw.ReadInline(r.Blob)
	if err != nil {
		return false, err
	}
	m := &memBacking{b: bytes.Clone(data)}
	c, err := envelope.Rewrap(m, int64(len(m.b)), kr, envelope.Options{Binding: Binding(inode, r.Gen, i)})
	if err != nil || !c {
		return false, err
	}
	return true, rw.RewriteInline(r.Blob, m.b)
}

// memBacking is an envelope.SyncBacking over a fixed-size byte slice.
type memBacking struct{ b []byte }

func (m *memBacking) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memBacking) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("content: write past an inline blob's end")
	}
	return copy(m.b[off:], p), nil
}

func (m *memBacking) Sync() error { return nil }
