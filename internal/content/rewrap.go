package content

import (
	"fmt"
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
func Rewrap(blobs Blobs, inode [InodeIDSize]byte, layout Layout, kr *envelope.Keyring) (int, error) {
	rw, ok := blobs.(Rewriter)
	if !ok {
		return 0, fmt.Errorf("content: rewrap: the blob store cannot rewrite headers")
	}
	changed := 0
	for i, r := range layout.Segs {
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
func KeyIDs(blobs Blobs, layout Layout, ids map[uint32]int) error {
	for i, r := range layout.Segs {
		b, err := blobs.Open(r.Blob)
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
