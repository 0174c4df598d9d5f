package envelope

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync"
)

// File is an open envelope file: random-access reads and writes of the
// plaintext, stored encrypted in a Backing.
//
// A File is safe for concurrent use by multiple goroutines: ReadAt, WriteAt,
// Truncate, Flush and Close are serialized by one mutex. Writes go to a
// write-back cache of up to 32 chunks. Flush and Close seal every dirty
// chunk and write it to the Backing in the order of docs/FORMAT.md,
// section 8.1, leaving a valid stored file; neither syncs the Backing. When all
// 32 cached chunks are dirty, the lower half is written (sealed as interior
// chunks, the last chunk stays cached); a growing File also writes out the
// chunks that earlier writes finished (settle), and seals whole-chunk
// appends straight from the caller's buffer, keeping the last one sealed
// and pending (appendChunk). So until the next Flush the stored file of a
// growing File may lack its final chunk. Other readers of the same stored
// file must therefore go through this File, or wait for Flush. The File
// never closes the Backing. (Where each job lives: cache.go, read.go,
// append.go, flush.go.)
//
// Errors: a chunk that fails authentication fails the ReadAt (or the
// WriteAt that needs its old content) with ErrAuth, ErrTruncated or
// ErrStaleFinal, without returning any of its bytes; other chunks stay
// readable. A failed write to the Backing is sticky: the stored file may be
// partly updated, so every later call returns that error.
type File struct {
	mu     sync.Mutex
	b      Backing
	aead   AEAD
	par    parallelism
	s      *sealer // c's sealer for the caller's goroutine
	c      *crew   // parallel batches
	fileID [32]byte
	err    error // sticky
	closed bool

	// What is stored, and what the File holds on top of it.
	size    int64 // plaintext size, including cached writes
	disk    int64 // plaintext size the stored chunks cover
	noFinal bool  // the stored chunks are all interior (a partial flush of a growing file)
	lastOK  bool  // the stored final chunk was authenticated or written by us

	cache   chunkCache            // cache.go
	pend    pending               // append.go
	rdNext  int64                 // where the last ReadAt ended (read-ahead; read.go)
	outs    [batchChunks]outChunk // chunkWriter's batch (flush.go)
	sealing sealTask
	miss    missTask
	scratch *[]byte // one sealed chunk, for I/O (from sealedBufs; see scr)
}

// Create writes a new empty file (header + one empty final chunk) to b,
// with a fresh random file id and DEK wrapped by kr's active KEK, bound to
// o.Binding and sealed with o.AEAD. b must be empty.
func Create(b Backing, kr *Keyring, o Options) (*File, error) {
	f, err := create(b, kr, o)
	if err != nil {
		return nil, fmt.Errorf("envelope: create: %w", err)
	}
	return f, nil
}

func create(b Backing, kr *Keyring, o Options) (*File, error) {
	var one [1]byte
	if n, _ := b.ReadAt(one[:], 0); n != 0 {
		return nil, fmt.Errorf("backing is not empty: %w", fs.ErrExist)
	}
	h, dek, err := newHeader(kr, o)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	f, err := newFile(b, h, dek, 0)
	if err != nil {
		return nil, err
	}
	out := append(h.marshal(), make([]byte, ChunkOverhead)...)
	f.s.seal(out[HeaderSize:], 0, true, nil)
	if _, err := b.WriteAt(out, 0); err != nil {
		return nil, err
	}
	f.lastOK = true
	return f, nil
}

// Open parses and authenticates the header of the stored file whose
// ciphertext is ciphertextSize bytes long (from a stat: no chunk is read),
// expecting o.Binding. Errors: ErrFormat (impossible size or malformed
// header), ErrVersion, ErrUnknownKey (no key slot uses a KEK in kr), ErrAuth
// (a key slot fails, or the file has another binding).
func Open(b Backing, ciphertextSize int64, kr *Keyring, o Options) (*File, error) {
	size, h, dek, _, err := openHeader(b, ciphertextSize, kr, o)
	if err != nil {
		return nil, fmt.Errorf("envelope: open: %w", err)
	}
	defer clear(dek)
	f, err := newFile(b, h, dek, size)
	if err != nil {
		return nil, fmt.Errorf("envelope: open: %w", err)
	}
	return f, nil
}

func newFile(b Backing, h *header, dek []byte, size int64) (*File, error) {
	aead, err := newChunkAEAD(h.aeadID, dek, h.fileID[:])
	if err != nil {
		return nil, err
	}
	c := newCrew(aead, h.fileID)
	return &File{
		b:      b,
		aead:   AEAD(h.aeadID),
		par:    defaultParallelism,
		s:      c.one(),
		c:      c,
		fileID: h.fileID,
		size:   size,
		disk:   size,
		pend:   pending{idx: -1},
	}, nil
}

// scr returns the File's one-chunk I/O buffer, taken from the pool on
// first use after a Flush (which gives it back: an idle File holds no
// buffer).
func (f *File) scr() []byte {
	if f.scratch == nil {
		f.scratch = sealedBufs.Get().(*[]byte)
	}
	return *f.scratch
}

// idle gives every buffer the File holds back to the pools: the chunk
// buffers of clean cache entries and spares, the I/O buffer and, if nothing
// is pending, the pending-chunk buffer. Dirty entries (after a failed
// flush) stay.
func (f *File) idle() {
	for _, e := range slices.Clone(f.cache.entries) {
		if !e.dirty {
			f.cache.drop(e)
		}
	}
	if len(f.cache.entries) == 0 {
		f.cache.entries = nil
	}
	for _, e := range f.cache.spare {
		clear(*e.buf)
		chunkBufs.Put(e.buf)
	}
	f.cache.spare = nil
	if f.scratch != nil {
		clear(*f.scratch) // may hold plaintext (zeros sealed in place)
		sealedBufs.Put(f.scratch)
		f.scratch = nil
	}
	if f.pend.idx < 0 {
		f.pend.put()
	}
}

// setParallelism chooses which batches of chunks f splits over several
// goroutines (defaultParallelism until then). Results and the write order
// are the same either way; only speed and CPU time differ.
func (f *File) setParallelism(p parallelism) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.par = p & parallelAll
}

// parallel reports whether batches of the kind are split now.
func (f *File) parallel(kind parallelism) bool { return f.par&kind != 0 && f.c.parallel() }

// AEAD returns the file's content AEAD (from its header).
func (f *File) AEAD() AEAD { return f.aead }

// FileID returns the file's random 32-byte id (bound into every chunk).
func (f *File) FileID() [32]byte { return f.fileID }

// Size returns the plaintext size, including writes not yet flushed.
func (f *File) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.size
}

func (f *File) usable() error {
	if f.closed {
		return fs.ErrClosed
	}
	return f.err
}

// ReadAt reads len(p) plaintext bytes at off. Like os.File, it returns
// io.EOF when fewer than len(p) bytes remain. Only authenticated bytes are
// returned; at the end of the file the final chunk has been authenticated
// (so a file cut at a chunk boundary reports ErrTruncated, not io.EOF).
func (f *File) ReadAt(p []byte, off int64) (n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { err = fileErr("read", err) }()
	if err := f.usable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if f.pend.idx >= 0 && off+int64(len(p)) > f.pend.lo*chunkSize {
		if err := f.unpend(); err != nil {
			return 0, err
		}
	}
	// A read near where the last one ended is taken as sequential: its
	// misses read ahead (readMiss).
	seq := off >= f.rdNext-batchChunks*chunkSize && off <= f.rdNext+batchChunks*chunkSize
	f.rdNext = off + int64(len(p))
	for n < len(p) && off < f.size {
		i, lo := off/chunkSize, int(off%chunkSize)
		clen := chunkLen(i, f.size)
		want := min(len(p)-n, clen-lo)
		dst := p[n : n+want]
		switch e := f.cache.lookup(i); {
		case e != nil:
			copy(dst, (*e.buf)[lo:])
		case i >= numChunks(f.disk) || chunkLen(i, f.disk) == 0:
			clear(dst) // beyond the stored data: zeros written past EOF
		default:
			k, err := f.readMiss(p[n:], off, seq)
			n += k
			off += int64(k)
			if err != nil {
				return n, err
			}
			continue
		}
		n += want
		off += int64(want)
	}
	if n < len(p) {
		if err := f.verifyLast(); err != nil {
			return n, err
		}
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off. Writing past the end fills the gap with zeros
// (encrypted like any data). The data is cached; see Flush.
func (f *File) WriteAt(p []byte, off int64) (n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { err = fileErr("write", err) }()
	if err := f.usable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))
	if end > MaxPlaintextSize || end < off {
		return 0, ErrTooLarge
	}
	// Whole chunks appended at the end: the fast path (appendChunk).
	n0 := 0
	for len(p)-n0 >= chunkSize && off == f.size && off%chunkSize == 0 && off >= minStreamChunks*chunkSize {
		ok, err := f.appendChunk(p[n0:n0+chunkSize], off/chunkSize)
		if err != nil {
			return n0, err
		}
		if !ok {
			break
		}
		n0 += chunkSize
		off += chunkSize
	}
	if n0 == len(p) {
		return n0, nil
	}
	k, err := f.writeCached(p[n0:], off)
	return n0 + k, err
}

// Truncate changes the plaintext size. Growing is cached like a write past
// the end. Shrinking flushes, re-seals the new final chunk, then truncates
// the Backing (docs/FORMAT.md, section 8.1).
func (f *File) Truncate(size int64) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { err = fileErr("truncate", err) }()
	if err := f.usable(); err != nil {
		return err
	}
	switch {
	case size < 0:
		return errors.New("negative size")
	case size > MaxPlaintextSize:
		return ErrTooLarge
	}
	if err := f.unpend(); err != nil {
		return err
	}
	switch {
	case size > f.size:
		return f.grow(size)
	case size == f.size:
		return nil
	}
	return f.shrink(size)
}

// fileErr gives an error leaving a File method its one "envelope: <op>: "
// prefix; io.EOF stays as it is (callers compare it with ==).
func fileErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return fmt.Errorf("envelope: %s: %w", op, err)
}

// fail makes err (a failed write to the Backing) sticky and returns it.
func (f *File) fail(err error) error {
	f.err = err
	return f.err
}

// Flush seals the dirty cached chunks and writes them to the Backing in
// crash-safe order, then gives the cache's buffers back to the shared pools
// (an idle open File holds none; the next access takes them again). It
// does not sync the Backing.
func (f *File) Flush() (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { err = fileErr("flush", err) }()
	if err := f.usable(); err != nil {
		return err
	}
	err = f.flush()
	f.idle()
	return err
}

// Close flushes, releases the cache and the key, and makes the File
// unusable. It does not close the Backing. Closing twice is an error.
func (f *File) Close() (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { err = fileErr("close", err) }()
	if f.closed {
		return fs.ErrClosed
	}
	err = f.flush()
	for _, e := range f.cache.entries {
		e.dirty = false // lost with a failed flush: err says so
	}
	f.idle()
	f.pend.put()
	f.pend.idx = -1
	f.s, f.c = nil, nil // drop the last references to the chunk key
	f.closed = true
	return err
}
