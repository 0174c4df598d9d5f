// Package content is storage version 2's file content (docs/STORAGE.md,
// section 4, "Segments"): a file is a list of segments, each an envelope
// file (docs/FORMAT.md) stored as one write-once blob. A write touching
// segments 3 and 4 writes two new blobs (copy-on-write of those segments
// only) and Commit returns the new list for the index to publish in one
// transaction; the blobs it replaced are returned for the collector.
//
// Each segment blob is bound (FORMAT.md 5.5) to its file's inode id, the
// generation that wrote it and its index in the file, so a blob of another
// file, of another place in this file or of an older version of this
// segment put where the index points fails authentication: swaps, copies
// and rollbacks of content are detected. The caller keeps the layout and
// the generation in the index.
package content

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/envelope"
)

// publishParallel is how many of a commit's new blobs are published at
// once.
const publishParallel = 8

// DefaultSegmentChunks is the number of envelope chunks of a full segment:
// 64 chunks of 64 KiB, 4 MiB of plaintext.
const DefaultSegmentChunks = 64

// InodeIDSize is the size of an inode id.
const InodeIDSize = 16

// ErrLayout: a segment blob's size does not match the layout the index
// recorded for it (a blob cut, grown or swapped on disk).
var ErrLayout = errors.New("content: segment does not match the layout")

// Ref is one segment of a file: its blob and the generation that wrote it.
// A small blob lives in the index (InIndex) instead of the blob store: it
// is published in the same transaction as the layout naming it, so a
// small file's upload costs the index commit and no blob write.
type Ref struct {
	Blob    blob.ID
	Gen     uint64
	InIndex bool `json:",omitempty"`
	// Data is an InIndex blob's bytes from Commit until the index holds
	// them (nil once read back from the index: Inline reads them).
	Data []byte `json:"-"`
}

// Inline is a blob store that also reads the blobs kept in the index
// (Ref.InIndex).
type Inline interface {
	ReadInline(id blob.ID) ([]byte, error)
}

// InlineRewriter writes an InIndex blob's bytes back (a key rotation's
// new key slot); a blob no longer in the index is left alone.
type InlineRewriter interface {
	Inline
	RewriteInline(id blob.ID, data []byte) error
}

// Layout is a file's content as the index records it: the plaintext size
// and one Ref per segment (every segment full but the last).
type Layout struct {
	Size int64
	Segs []Ref
}

// Pending is a blob being written: an envelope backing, then published
// under its id or dropped.
type Pending interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Publish() error
	Abort()
	ID() blob.ID
}

// Blobs is the blob store a File reads and writes: blob.Dir through
// DirBlobs, an object store later.
type Blobs interface {
	Create(id blob.ID) (Pending, error)
	Open(id blob.ID) (blob.Blob, error)
}

// DirBlobs adapts a blob.Dir to Blobs.
type DirBlobs struct{ *blob.Dir }

// Create implements Blobs.
func (d DirBlobs) Create(id blob.ID) (Pending, error) { return d.Dir.Create(id) }

// CreateNew starts a blob under one of the names blob.Dir made ahead.
func (d DirBlobs) CreateNew() (Pending, error) { return d.Dir.CreateNew() }

// Options configure a File.
type Options struct {
	Keyring *envelope.Keyring
	// AEAD of new segments (zero: envelope's default).
	AEAD envelope.AEAD
	// SegmentChunks is the chunks of a full segment (zero:
	// DefaultSegmentChunks). It is part of the layout's meaning: every
	// File of one store uses the same.
	SegmentChunks int
	// Pad pads the last segment's blob with encrypted zeros to Padme of
	// its length (docs/STORAGE.md section 5), so a stored blob's size
	// says little about the file's: full segments are never padded. The
	// layout keeps the true size; reads never see the padding. Part of
	// the layout's meaning too.
	Pad bool
	// InlineMax is the largest segment blob, in stored bytes, kept in the
	// index instead of the blob store (zero: none). A segment is written
	// in memory until it grows past it.
	InlineMax int64
	// Inline reads the blobs kept in the index (nil: a layout naming one
	// fails to open it).
	Inline Inline
	// Ahead is how many full segments of a sequential write may be
	// published in the background at once while the writer goes on (a
	// segment is final once the writer moved past it), so that Commit
	// waits only for the last ones. Zero: the Blobs' PublishAhead if it
	// has one (an object store, where a publish is an upload), else none
	// (every segment is published at Commit).
	Ahead int
	// Track, if set, is told of a blob published before its Commit:
	// live true before its publish starts (a collector must not take it
	// for an orphan from then on), false once it was deleted again
	// because the File was closed without committing it or rewrote its
	// segment. A blob that a Commit returns in its layout stays live: the
	// caller takes it over with the layout.
	Track func(id blob.ID, live bool)
}

// Ahead is what a Blobs that publishes by uploading offers: how many
// segments a File publishes ahead of Commit (Options.Ahead).
type Ahead interface {
	PublishAhead() int
}

// Streamer is what a Blobs offers that can take the segments of a
// sequential stream without a local copy: CreateStream starts such a blob.
// A File asks for one for each new segment that follows a segment it
// published ahead (Options.Ahead), so never for a file's first segment
// (a small file stays on the Create path). The store may keep it in memory
// and leave it out of a read cache, which a large upload would only empty
// of what readers use.
type Streamer interface {
	CreateStream(id blob.ID) (Pending, error)
}

// Deleter is what a Blobs that can delete offers: a blob published ahead
// and then not committed is deleted at once (without it, it is left for
// the collector's orphan pass).
type Deleter interface {
	Delete(id blob.ID) error
}

// DefaultInlineMax is the InlineMax of a store whose index is local: a
// segment of up to 64 KiB of plaintext (one chunk, padded or not) and its
// envelope header.
const DefaultInlineMax = 64<<10 + 1024

// Padme returns L rounded up as the Padme scheme does (Nikitin et al.,
// "Reducing Metadata Leakage from Encrypted Files and Communication with
// PURBs", PETS 2019): only the top floor(log2(log2 L))+1 bits of L's
// mantissa are kept, so a padded length leaks O(log log L) bits, at a cost
// of at most 12% (less for larger L). Powers of two are kept as they are.
func Padme(l int64) int64 {
	if l < 2 {
		return l
	}
	e := bits.Len64(uint64(l)) - 1 // floor(log2 l)
	s := bits.Len64(uint64(e))     // floor(log2 e) + 1
	if e < s {
		return l
	}
	mask := int64(1)<<(e-s) - 1
	return (l + mask) &^ mask
}

// stored is the plaintext length segment i's blob holds in a file of size
// bytes: the segment's length, padded if it is the last one.
func (f *File) stored(i int, size int64) int64 {
	n := f.segLen(i, size)
	if f.o.Pad && i == f.segCount(size)-1 {
		return min(Padme(n), f.ss)
	}
	return n
}

func (o Options) segmentSize() int64 {
	n := o.SegmentChunks
	if n <= 0 {
		n = DefaultSegmentChunks
	}
	return int64(n) * envelope.DefaultChunkSize
}

// Binding is the binding context of segment index of the file inode
// written at generation gen: "securefsd v2 blob " || inode || u64 gen ||
// u32 index.
func Binding(inode [InodeIDSize]byte, gen uint64, index int) []byte {
	b := append([]byte("securefsd v2 blob "), inode[:]...)
	b = binary.BigEndian.AppendUint64(b, gen)
	return binary.BigEndian.AppendUint32(b, uint32(index))
}

// File is one version of a file's content open for reading and, at
// generation gen, writing. Not safe for concurrent use (the store's open
// file state serializes its callers).
type File struct {
	blobs Blobs
	o     Options
	ss    int64
	inode [InodeIDSize]byte
	gen   uint64
	size  int64
	old   Layout // the layout opened (its segments are garbage once replaced)
	segs  []*segment
	// ahead: tokens of the publishes running in the background (nil:
	// none are made); next: where the last write ended, to tell a
	// sequential writer.
	ahead chan struct{}
	next  int64
	// failed gets the error of a publish ahead that failed; the next
	// write reports it, sticky in aheadErr: the upload cannot commit,
	// so there is no use in receiving the rest of it.
	failed   chan error
	aheadErr error
}

// segment is one segment of the open file: its published version (ref,
// zero for a segment new in this generation) and, once touched, the
// pending blob that replaces it.
type segment struct {
	ref  Ref
	rd   *envelope.File // the published blob, opened on first read
	blob blob.Blob
	pend Pending
	wr   *envelope.File // the pending blob's content
	// early: pend's publish, started in the background when the writer
	// moved past this full segment (wr closed then). Until it is
	// committed the File owns the blob and deletes it if it closes
	// without committing it.
	early *early
}

// early is a publish running in the background: done is closed when it
// ended, with err.
type early struct {
	id   blob.ID
	done chan struct{}
	err  error
}

// Open opens the content layout of the file inode for reading and, at
// generation gen (higher than every generation in layout), writing.
func Open(blobs Blobs, inode [InodeIDSize]byte, layout Layout, gen uint64, o Options) (*File, error) {
	f := &File{blobs: blobs, o: o, ss: o.segmentSize(), inode: inode, gen: gen, size: layout.Size, old: layout}
	n := o.Ahead
	if a, ok := blobs.(Ahead); ok && n == 0 {
		n = a.PublishAhead()
	}
	if n > 0 {
		f.ahead, f.failed = make(chan struct{}, n), make(chan error, 1)
	}
	if want := f.segCount(layout.Size); want != len(layout.Segs) {
		return nil, fmt.Errorf("content: %d segments for %d bytes, want %d: %w", len(layout.Segs), layout.Size, want, ErrLayout)
	}
	for _, r := range layout.Segs {
		if r.Gen >= gen {
			return nil, fmt.Errorf("content: segment of generation %d opened to write generation %d", r.Gen, gen)
		}
		f.segs = append(f.segs, &segment{ref: r})
	}
	return f, nil
}

func (f *File) segCount(size int64) int { return int((size + f.ss - 1) / f.ss) }

// segLen is the plaintext length of segment i in a file of size bytes.
func (f *File) segLen(i int, size int64) int64 { return min(f.ss, size-int64(i)*f.ss) }

// Size is the plaintext size.
func (f *File) Size() int64 { return f.size }

// reader returns segment i's readable content.
func (f *File) reader(i int) (io.ReaderAt, error) {
	s := f.segs[i]
	if s.wr != nil {
		return s.wr, nil
	}
	if s.early != nil {
		return f.earlyReader(i)
	}
	if s.rd == nil {
		b, ef, err := f.openSegment(i, s.ref)
		if err != nil && (errors.Is(err, envelope.ErrAuth) || errors.Is(err, envelope.ErrUnknownKey)) {
			// A key rotation rewrites a blob's key slot in place
			// (Rewrap): a read of the header during that write sees a
			// torn slot. Once more after it: real damage fails again.
			time.Sleep(time.Millisecond)
			b, ef, err = f.openSegment(i, s.ref)
		}
		if err != nil {
			return nil, fmt.Errorf("content: segment %d: %w", i, err)
		}
		if want := f.stored(i, f.old.Size); ef.Size() != want {
			ef.Close()
			b.Close()
			return nil, fmt.Errorf("content: segment %d holds %d bytes, layout %d: %w", i, ef.Size(), want, ErrLayout)
		}
		s.rd, s.blob = ef, b
	}
	return s.rd, nil
}

// earlyReader waits for segment i's publish ahead and opens the blob it
// published (a full segment of this generation).
func (f *File) earlyReader(i int) (io.ReaderAt, error) {
	s := f.segs[i]
	<-s.early.done
	if s.early.err != nil {
		return nil, fmt.Errorf("content: segment %d: %w", i, s.early.err)
	}
	if s.rd == nil {
		b, ef, err := f.openSegment(i, Ref{Blob: s.early.id, Gen: f.gen})
		if err != nil {
			return nil, fmt.Errorf("content: segment %d: %w", i, err)
		}
		if ef.Size() != f.ss {
			ef.Close()
			b.Close()
			return nil, fmt.Errorf("content: segment %d holds %d bytes, published %d: %w", i, ef.Size(), f.ss, ErrLayout)
		}
		s.rd, s.blob = ef, b
	}
	return s.rd, nil
}

// publishAhead starts the publish of segment i, full and written, in the
// background, once Ahead allows one more (else it waits: a writer faster
// than the uploads is held back, so at most Ahead segments wait in the
// cache directory besides the ones being written).
func (f *File) publishAhead(i int) error {
	s := f.segs[i]
	err := s.wr.Close()
	s.wr = nil
	if err != nil {
		s.pend.Abort()
		s.pend = nil
		return fmt.Errorf("content: segment %d: %w", i, err)
	}
	if s.rd != nil {
		// The version it replaces is read no more.
		s.rd.Close()
		s.blob.Close()
		s.rd, s.blob = nil, nil
	}
	e := &early{id: s.pend.ID(), done: make(chan struct{})}
	if f.o.Track != nil {
		f.o.Track(e.id, true)
	}
	s.early = e
	f.ahead <- struct{}{}
	go func(p Pending) {
		e.err = p.Publish()
		if e.err != nil {
			if f.o.Track != nil {
				f.o.Track(e.id, false) // a failed publish dropped it
			}
			select {
			case f.failed <- e.err:
			default: // one is enough
			}
		}
		<-f.ahead
		close(e.done)
	}(s.pend)
	s.pend = nil
	return nil
}

// dropEarly waits for segment s's publish ahead and deletes the blob it
// published: the File closes without committing it, or rewrites it.
func (f *File) dropEarly(s *segment) {
	e := s.early
	s.early = nil
	<-e.done
	if e.err != nil {
		return
	}
	if d, ok := f.blobs.(Deleter); ok && d.Delete(e.id) == nil && f.o.Track != nil {
		f.o.Track(e.id, false)
	}
	// Not deleted: an orphan, still tracked (kept) until this process
	// ends; the collector's orphan pass takes it after a restart.
}

// openSegment opens the published blob of segment i.
func (f *File) openSegment(i int, r Ref) (blob.Blob, *envelope.File, error) {
	b, err := openBlob(f.blobs, f.o.Inline, r)
	if err != nil {
		return nil, nil, err
	}
	ef, err := envelope.Open(readOnly{b}, b.Size(), f.o.Keyring, envelope.Options{Binding: Binding(f.inode, r.Gen, i)})
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return b, ef, nil
}

// openBlob opens r's blob, in the blob store or in the index (in).
func openBlob(blobs Blobs, in Inline, r Ref) (blob.Blob, error) {
	if !r.InIndex {
		return blobs.Open(r.Blob)
	}
	data := r.Data
	if data == nil {
		if in == nil {
			return nil, fmt.Errorf("content: blob %s is in the index, and no index was given", r.Blob)
		}
		var err error
		if data, err = in.ReadInline(r.Blob); err != nil {
			return nil, err
		}
	}
	return memBlob{bytes.NewReader(data)}, nil
}

// memBlob is an InIndex blob read into memory (at most InlineMax bytes).
type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

// SetKeyring replaces the keyring of the segments opened from now on and
// of new ones (a key rotation re-wraps published segments in place, so a
// File open across it must read them with the new keyring).
func (f *File) SetKeyring(kr *envelope.Keyring) { f.o.Keyring = kr }

// ReadAt reads len(p) bytes at off (io.EOF at the end).
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("content: negative offset")
	}
	n := 0
	for n < len(p) && off < f.size {
		i := int(off / f.ss)
		r, err := f.reader(i)
		if err != nil {
			return n, err
		}
		in := off - int64(i)*f.ss
		want := min(int64(len(p)-n), f.segLen(i, f.size)-in)
		k, err := r.ReadAt(p[n:n+int(want)], in)
		n, off = n+k, off+int64(k)
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == want) {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// writable makes segment i a pending blob of this generation holding its
// current content (copied from the published blob: the copy-on-write).
func (f *File) writable(i int) (*envelope.File, error) {
	for len(f.segs) <= i {
		f.segs = append(f.segs, &segment{})
	}
	s := f.segs[i]
	if s.wr != nil {
		return s.wr, nil
	}
	// The current content: the published version's first n bytes, or all
	// of the blob this segment published ahead (a write went back to it).
	var src io.ReaderAt
	var n int64
	if s.early != nil {
		r, err := f.earlyReader(i)
		if err != nil {
			return nil, err
		}
		src, n = r, f.ss
	} else if s.ref.Blob != (blob.ID{}) {
		r, err := f.reader(i)
		if err != nil {
			return nil, err
		}
		src, n = r, f.segLen(i, min(f.size, f.old.Size))
	}
	// A new segment right after one published ahead is the next piece of
	// a sequential stream: a store that can may take it without a local
	// copy (Streamer).
	stream := src == nil && i > 0 && f.segs[i-1].early != nil
	var p Pending
	var err error
	if f.o.InlineMax > 0 {
		p = &small{blobs: f.blobs, max: f.o.InlineMax, id: blob.NewID(), stream: stream}
	} else if p, err = newPending(f.blobs, stream); err != nil {
		return nil, fmt.Errorf("content: segment %d: %w", i, err)
	}
	wr, err := envelope.Create(p, f.o.Keyring, envelope.Options{Binding: Binding(f.inode, f.gen, i), AEAD: f.o.AEAD})
	if err != nil {
		p.Abort()
		return nil, fmt.Errorf("content: segment %d: %w", i, err)
	}
	if src != nil {
		// The current content of the segment, streamed a chunk at a time.
		if _, err := io.CopyBuffer(&offsetWriter{w: wr}, io.NewSectionReader(src, 0, n), make([]byte, envelope.DefaultChunkSize)); err != nil {
			wr.Close()
			p.Abort()
			return nil, err
		}
	}
	if s.early != nil {
		// Rewritten: the blob published ahead is not this segment's any
		// more.
		s.rd.Close()
		s.blob.Close()
		s.rd, s.blob = nil, nil
		f.dropEarly(s)
	}
	s.pend, s.wr = p, wr
	return wr, nil
}

type offsetWriter struct {
	w   io.WriterAt
	off int64
}

func (o *offsetWriter) Write(p []byte) (int, error) {
	n, err := o.w.WriteAt(p, o.off)
	o.off += int64(n)
	return n, err
}

// WriteAt writes p at off; writing past the end fills the gap with zeros.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("content: negative offset")
	}
	if off > f.size {
		if err := f.Truncate(off); err != nil {
			return 0, err
		}
	}
	if f.aheadErr == nil && f.failed != nil {
		select {
		case err := <-f.failed:
			f.aheadErr = fmt.Errorf("content: a segment published ahead: %w", err)
		default:
		}
	}
	if f.aheadErr != nil {
		return 0, f.aheadErr
	}
	n := 0
	seq := off == f.next
	for n < len(p) {
		i := int(off / f.ss)
		in := off - int64(i)*f.ss
		if f.ahead != nil && seq && i > 0 && f.segs[i-1].wr != nil && f.segLen(i-1, f.size) == f.ss {
			// A sequential writer moved past segment i-1, full: it is
			// final unless the writer comes back, so it goes now.
			if err := f.publishAhead(i - 1); err != nil {
				return n, err
			}
		}
		wr, err := f.writable(i)
		if err != nil {
			return n, err
		}
		k := int(min(int64(len(p)-n), f.ss-in))
		if _, err := wr.WriteAt(p[n:n+k], in); err != nil {
			return n, fmt.Errorf("content: segment %d: %w", i, err)
		}
		n, off = n+k, off+int64(k)
		f.size = max(f.size, off)
		f.next, seq = off, true
	}
	return n, nil
}

// WriteBehind lets the segment written last write out a chunk early
// (envelope.File.WriteBehind): a server calls it while it waits for the
// next request.
func (f *File) WriteBehind() error {
	if f.next <= 0 {
		return nil
	}
	i := int((f.next - 1) / f.ss)
	if i >= len(f.segs) || f.segs[i].wr == nil {
		return nil
	}
	if err := f.segs[i].wr.WriteBehind(); err != nil {
		return fmt.Errorf("content: segment %d: %w", i, err)
	}
	return nil
}

// Truncate changes the size: segments past the new end are dropped, the
// new last one is cut or grown, new ones are zeros.
func (f *File) Truncate(size int64) error {
	if size < 0 {
		return errors.New("content: negative size")
	}
	if size == f.size {
		return nil
	}
	keep := f.segCount(size)
	for _, s := range f.segs[min(keep, len(f.segs)):] {
		f.closeSegment(s)
	}
	f.segs = f.segs[:min(keep, len(f.segs))]
	if size < f.size {
		if keep > 0 && f.segLen(keep-1, size) != f.segLen(keep-1, f.size) {
			wr, err := f.writable(keep - 1)
			if err != nil {
				return err
			}
			if err := wr.Truncate(f.segLen(keep-1, size)); err != nil {
				return fmt.Errorf("content: segment %d: %w", keep-1, err)
			}
		}
		f.size = size
		return nil
	}
	// Grow: the last segment up to full, then new segments of zeros.
	for i := f.segCount(f.size) - 1; i < keep; i++ {
		if i < 0 {
			continue
		}
		if want := f.segLen(i, size); i >= len(f.segs) || want != f.segLen(i, f.size) {
			wr, err := f.writable(i)
			if err != nil {
				return err
			}
			if err := wr.Truncate(want); err != nil {
				return fmt.Errorf("content: segment %d: %w", i, err)
			}
		}
	}
	f.size = size
	return nil
}

// Commit publishes every segment written (each pending blob flushed, made
// durable and published) and returns the new layout and the blobs it no
// longer references (the replaced and the dropped segments), for the index
// to record in one transaction. The File is done after Commit: Close it.
func (f *File) Commit() (Layout, []blob.ID, error) {
	nl := Layout{Size: f.size, Segs: make([]Ref, len(f.segs))}
	if f.o.Pad && len(f.segs) > 0 {
		// The last segment's padding: its blob is rewritten if its
		// padded length changes (a segment that stops being the last
		// was rewritten to full already).
		last := len(f.segs) - 1
		want := f.stored(last, f.size)
		if s := f.segs[last]; s.wr == nil && s.ref.Blob != (blob.ID{}) && want != f.stored(last, f.old.Size) || s.wr != nil {
			wr, err := f.writable(last)
			if err != nil {
				return Layout{}, nil, err
			}
			if err := wr.Truncate(want); err != nil {
				return Layout{}, nil, fmt.Errorf("content: segment %d: %w", last, err)
			}
		}
	}
	var touched []int
	for i, s := range f.segs {
		nl.Segs[i] = s.ref
		if s.early != nil {
			// Published ahead: only waited for.
			<-s.early.done
			if err := s.early.err; err != nil {
				return Layout{}, nil, fmt.Errorf("content: segment %d: %w", i, err)
			}
			nl.Segs[i] = Ref{Blob: s.early.id, Gen: f.gen}
			continue
		}
		if s.wr == nil {
			continue
		}
		err := s.wr.Close()
		s.wr = nil
		if err != nil {
			s.pend.Abort()
			s.pend = nil
			return Layout{}, nil, fmt.Errorf("content: segment %d: %w", i, err)
		}
		touched = append(touched, i)
	}
	// The new blobs are published side by side: a large upload's
	// segments fsync together (the file system joins them in few journal
	// commits) or, in an object store, upload in parallel.
	errs := make([]error, len(touched))
	sem := make(chan struct{}, publishParallel)
	var wg sync.WaitGroup
	for k, i := range touched {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			errs[k] = f.segs[i].pend.Publish()
			<-sem
		}()
	}
	wg.Wait()
	for k, i := range touched {
		s := f.segs[i]
		if errs[k] != nil {
			return Layout{}, nil, fmt.Errorf("content: segment %d: %w", i, errs[k])
		}
		nl.Segs[i] = Ref{Blob: s.pend.ID(), Gen: f.gen}
		if m, ok := s.pend.(*small); ok && m.real == nil {
			nl.Segs[i].InIndex, nl.Segs[i].Data = true, m.buf
		}
		s.pend = nil
	}
	for _, s := range f.segs {
		s.early = nil // committed: the caller's now
	}
	used := map[blob.ID]bool{}
	for _, r := range nl.Segs {
		used[r.Blob] = true
	}
	var garbage []blob.ID
	for _, r := range f.old.Segs {
		if !used[r.Blob] {
			garbage = append(garbage, r.Blob)
		}
	}
	return nl, garbage, nil
}

// Close drops every pending blob not committed and closes what is open.
func (f *File) Close() error {
	for _, s := range f.segs {
		f.closeSegment(s)
	}
	f.segs = nil
	return nil
}

// closeSegment drops segment s's pending or ahead-published blob and
// closes what is open.
func (f *File) closeSegment(s *segment) {
	if s.early != nil {
		f.dropEarly(s)
	}
	if s.wr != nil {
		s.wr.Close()
		s.wr = nil
	}
	if s.pend != nil {
		s.pend.Abort()
		s.pend = nil
	}
	if s.rd != nil {
		s.rd.Close()
		s.blob.Close()
		s.rd, s.blob = nil, nil
	}
}

// readOnly adapts a published blob to envelope.Backing: blobs are
// write-once.
type readOnly struct{ blob.Blob }

func (readOnly) WriteAt([]byte, int64) (int, error) { return 0, errors.ErrUnsupported }
func (readOnly) Truncate(int64) error               { return errors.ErrUnsupported }

// newPending starts a blob in the blob store; stream: a segment of a
// sequential writer past its first (Streamer).
func newPending(blobs Blobs, stream bool) (Pending, error) {
	if st, ok := blobs.(Streamer); ok && stream {
		return st.CreateStream(blob.NewID())
	}
	if m, ok := blobs.(interface{ CreateNew() (Pending, error) }); ok {
		return m.CreateNew() // an id cheaper to publish (blob.Dir's names made ahead)
	}
	return blobs.Create(blob.NewID())
}

// small is a segment blob written in memory while it is at most max
// bytes: published, it goes into the index with the layout (Ref.InIndex)
// and costs no blob write. Past max it moves to a blob of the store
// (real) and is one from then on.
type small struct {
	blobs Blobs
	max   int64
	id    blob.ID
	buf   []byte
	real  Pending
	// stream: a segment of a sequential stream (newPending).
	stream bool
}

// spill moves the blob to the store once it is to hold end bytes.
func (m *small) spill(end int64) error {
	if m.real != nil || end <= m.max {
		return nil
	}
	p, err := newPending(m.blobs, m.stream)
	if err != nil {
		return err
	}
	if _, err := p.WriteAt(m.buf, 0); err != nil {
		p.Abort()
		return err
	}
	m.real, m.buf = p, nil
	return nil
}

func (m *small) WriteAt(p []byte, off int64) (int, error) {
	if err := m.spill(off + int64(len(p))); err != nil {
		return 0, err
	}
	if m.real != nil {
		return m.real.WriteAt(p, off)
	}
	if end := off + int64(len(p)); end > int64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, end-int64(len(m.buf)))...)
	}
	return copy(m.buf[off:], p), nil
}

func (m *small) ReadAt(p []byte, off int64) (int, error) {
	if m.real != nil {
		return m.real.ReadAt(p, off)
	}
	if off >= int64(len(m.buf)) {
		return 0, io.EOF
	}
	n := copy(p, m.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *small) Truncate(size int64) error {
	if err := m.spill(size); err != nil {
		return err
	}
	if m.real != nil {
		return m.real.Truncate(size)
	}
	if size <= int64(len(m.buf)) {
		m.buf = m.buf[:size]
	} else {
		m.buf = append(m.buf, make([]byte, size-int64(len(m.buf)))...)
	}
	return nil
}

// Publish publishes a spilled blob; one still in memory is published by
// the index transaction that takes the layout.
func (m *small) Publish() error {
	if m.real != nil {
		return m.real.Publish()
	}
	return nil
}

func (m *small) Abort() {
	if m.real != nil {
		m.real.Abort()
	}
	m.buf = nil
}

func (m *small) ID() blob.ID {
	if m.real != nil {
		return m.real.ID()
	}
	return m.id
}
