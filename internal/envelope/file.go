package envelope

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"slices"
	"sync"
)

// maxCached is the most chunks a File keeps in memory (dirty or clean):
// 32 x 64 KiB = 2 MiB at most per open file (with the buffers kept for
// reuse; plus 512 KiB of pending chunks of a whole-chunk upload, pendBatch,
// and one 64 KiB I/O buffer). All come from shared pools on demand and go
// back at Flush and Close: an idle (flushed) or closed File holds none. A
// sequential reader keeps about one read-ahead batch (8 chunks). The cache
// absorbs the out-of-order 32 KiB writes of SFTP clients (8 workers spread
// over ~4 chunks) and halves the decryptions of 32 KiB reads.
const maxCached = 32

// chunkBufs recycles chunk-sized plaintext buffers between Files: a server
// opens and closes many. Buffers are cleared before they are put back.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// sealedBufs recycles the one-chunk I/O buffers of Files.
var sealedBufs = sync.Pool{New: func() any { b := make([]byte, encChunkSize); return &b }}

// batchBufs recycles the buffers of batchChunks sealed chunks that a batch
// is sealed into (or read into) between Files; they are cleared before
// they are put back when they held plaintext.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, batchChunks*encChunkSize); return &b }}

// entry is a cached chunk. buf holds its plaintext, chunkLen(idx, f.size)
// bytes, followed by zeros up to chunkSize (the invariant that makes growing
// the file within a chunk free). A dirty entry differs from what is stored.
type entry struct {
	idx    int64
	buf    *[]byte
	dirty  bool
	pinned bool // being loaded by readMiss: not to be evicted

	// What the application has finished of the chunk, for settle: the
	// bytes [0, known) were written (or loaded from storage), and so were
	// the 1 KiB blocks in have (out-of-order writers fill blocks first).
	known int
	have  uint64
}

// wrote records that [lo, hi) of e was written.
func (e *entry) wrote(lo, hi int) {
	if first, end := (lo+1023)>>10, hi>>10; first < end {
		e.have |= (^uint64(0) >> (64 - (end - first))) << first
	}
	if lo <= e.known {
		e.known = max(e.known, hi)
	}
	for e.known < chunkSize && e.have&(1<<(e.known>>10)) != 0 {
		e.known = (e.known>>10 + 1) << 10
	}
}

// done reports whether every byte of e's chunk was written or loaded.
func (e *entry) done() bool { return e.known == chunkSize }

// File is an open envelope file: random-access reads and writes of the
// plaintext, stored encrypted in a Backing.
//
// A File is safe for concurrent use by multiple goroutines: ReadAt, WriteAt,
// Truncate, Flush and Close are serialized by one mutex. Writes go to a
// write-back cache of up to 32 chunks. Flush and Close seal every dirty
// chunk and write it to the Backing in the order of docs/FORMAT.md, "Write
// order", leaving a valid stored file; neither syncs the Backing. When all
// 32 cached chunks are dirty, the lower half is written (sealed as interior
// chunks, the last chunk stays cached); a growing File also writes out the
// chunks that earlier writes finished (settle), and seals whole-chunk
// appends straight from the caller's buffer, keeping the last one sealed
// and pending (appendChunk). So until the next Flush the stored file of a
// growing File may lack its final chunk. Other readers of the
// same stored file must therefore go through this File, or wait for Flush.
// The File never closes the Backing.
//
// Errors: a chunk that fails authentication fails the ReadAt (or the
// WriteAt that needs its old content) with ErrAuth, ErrTruncated or
// ErrStaleFinal, without returning any of its bytes; other chunks stay
// readable. A failed write to the Backing is sticky: the stored file may be
// partly updated, so every later call returns that error.
type File struct {
	mu      sync.Mutex
	b       Backing
	aead    AEAD
	par     Parallelism
	s       *sealer // c's sealer for the caller's goroutine
	c       *crew   // parallel batches
	fileID  [32]byte
	size    int64    // plaintext size, including cached writes
	disk    int64    // plaintext size the stored chunks cover
	noFinal bool     // the stored chunks are all interior (a partial flush of a growing file)
	lastOK  bool     // the stored final chunk was authenticated or written by us
	entries []*entry // sorted by idx
	spare   []*entry // written-out entries for reuse, buffers not cleared
	pend    *[]byte  // if pendIdx >= 0: chunks pendLo..pendIdx, unsealed, laid out as sealed (see appendChunk)
	pendLo  int64
	pendIdx int64
	// pendSealed[k]: pending slot k is sealed already (appendChunk seals
	// at once when the crew works alone), else it holds plaintext.
	pendSealed [batchChunks]bool
	rdNext     int64                 // where the last ReadAt ended (read-ahead)
	outs       [batchChunks]outChunk // chunkWriter's batch
	sealing    sealTask
	miss       missTask
	scratch    *[]byte // one sealed chunk, for I/O (from sealedBufs; see scr)
	err        error   // sticky
	closed     bool
}

// Create writes a new empty file (header + one empty final chunk) to b,
// with a fresh random file id and DEK wrapped by kr's active KEK. b must be
// empty. The file is unbound: CreateBound with an empty binding.
func Create(b Backing, kr *Keyring) (*File, error) {
	return CreateBound(b, kr, nil)
}

// CreateBound is Create for a file bound to the context binding (for
// securefsd's store, the owner's home; docs/FORMAT.md, section 5.5). The
// binding is not stored: it is authenticated by every key slot, so the file
// opens only through OpenBound, NewReaderBound, VerifyBound and RewrapBound
// with the same binding; any other binding is ErrAuth at the header.
func CreateBound(b Backing, kr *Keyring, binding []byte) (*File, error) {
	return CreateAEAD(b, kr, binding, DefaultAEAD)
}

// CreateAEAD is CreateBound with a chosen content AEAD instead of
// DefaultAEAD (say, XChaCha20Poly1305 on a CPU without AES instructions).
// The file keeps it for life; readers need not know it (the header says).
func CreateAEAD(b Backing, kr *Keyring, binding []byte, aead AEAD) (*File, error) {
	if !aead.known() {
		return nil, fmt.Errorf("envelope: create: %v: %w", aead, ErrVersion)
	}
	var one [1]byte
	if n, _ := b.ReadAt(one[:], 0); n != 0 {
		return nil, fmt.Errorf("envelope: create: backing is not empty: %w", fs.ErrExist)
	}
	h := &header{aeadID: byte(aead), binding: slices.Clone(binding)}
	randomBytes(h.fileID[:])
	dek := make([]byte, keySize)
	randomBytes(dek)
	defer clear(dek)
	if kr == nil {
		return nil, fmt.Errorf("envelope: create: nil keyring: %w", ErrUnknownKey)
	}
	if err := h.wrapInto(0, 1, dek, kr); err != nil {
		return nil, fmt.Errorf("envelope: create: %w", err)
	}
	f, err := newFile(b, h, dek, 0)
	if err != nil {
		return nil, err
	}
	out := append(h.marshal(), make([]byte, ChunkOverhead)...)
	f.s.seal(out[HeaderSize:], 0, true, nil)
	if _, err := b.WriteAt(out, 0); err != nil {
		return nil, fmt.Errorf("envelope: create: %w", err)
	}
	f.lastOK = true
	return f, nil
}

// Open parses and authenticates the header of the stored file whose
// ciphertext is ciphertextSize bytes long (from a stat: no chunk is read).
// Errors: ErrFormat (impossible size or malformed header), ErrVersion,
// ErrUnknownKey (no key slot uses a KEK in kr), ErrAuth (a key slot fails).
// Open is OpenBound with an empty binding: a bound file fails with ErrAuth.
func Open(b Backing, ciphertextSize int64, kr *Keyring) (*File, error) {
	return OpenBound(b, ciphertextSize, kr, nil)
}

// OpenBound is Open for a file created with CreateBound (or NewWriterBound)
// and the same binding. A different binding, like a damaged key slot, is
// ErrAuth: the header does not authenticate.
func OpenBound(b Backing, ciphertextSize int64, kr *Keyring, binding []byte) (*File, error) {
	size, err := PlaintextSize(ciphertextSize)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(b)
	if err != nil {
		return nil, err
	}
	h.binding = slices.Clone(binding)
	dek, _, err := h.unwrap(kr)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	return newFile(b, h, dek, size)
}

func newFile(b Backing, h *header, dek []byte, size int64) (*File, error) {
	aead, err := newChunkAEAD(h.aeadID, dek, h.fileID[:])
	if err != nil {
		return nil, err
	}
	c := newCrew(aead, h.fileID)
	return &File{
		b:       b,
		aead:    AEAD(h.aeadID),
		par:     DefaultParallelism,
		s:       c.one(),
		c:       c,
		fileID:  h.fileID,
		size:    size,
		disk:    size,
		pendIdx: -1,
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
	for _, e := range slices.Clone(f.entries) {
		if !e.dirty {
			f.dropEntry(e)
		}
	}
	if len(f.entries) == 0 {
		f.entries = nil
	}
	for _, e := range f.spare {
		clear(*e.buf)
		chunkBufs.Put(e.buf)
	}
	f.spare = nil
	if f.scratch != nil {
		clear(*f.scratch) // may hold plaintext (zeros sealed in place)
		sealedBufs.Put(f.scratch)
		f.scratch = nil
	}
	if f.pendIdx < 0 {
		f.putPend()
	}
}

// SetParallelism chooses which batches of chunks f splits over several
// goroutines (DefaultParallelism until then). Results and the write order
// are the same either way; only speed and CPU time differ.
func (f *File) SetParallelism(p Parallelism) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.par = p & ParallelAll
}

// parallel reports whether batches of the kind are split now.
func (f *File) parallel(kind Parallelism) bool { return f.par&kind != 0 && f.c.parallel() }

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
		return fmt.Errorf("envelope: %w", fs.ErrClosed)
	}
	return f.err
}

// ReadAt reads len(p) plaintext bytes at off. Like os.File, it returns
// io.EOF when fewer than len(p) bytes remain. Only authenticated bytes are
// returned; at the end of the file the final chunk has been authenticated
// (so a file cut at a chunk boundary reports ErrTruncated, not io.EOF).
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("envelope: read: negative offset")
	}
	if f.pendIdx >= 0 && off+int64(len(p)) > f.pendLo*chunkSize {
		if err := f.unpend(); err != nil {
			return 0, err
		}
	}
	// A read near where the last one ended is taken as sequential: its
	// misses read ahead (readMiss).
	seq := off >= f.rdNext-batchChunks*chunkSize && off <= f.rdNext+batchChunks*chunkSize
	f.rdNext = off + int64(len(p))
	n := 0
	for n < len(p) && off < f.size {
		i, lo := off/chunkSize, int(off%chunkSize)
		clen := chunkLen(i, f.size)
		want := min(len(p)-n, clen-lo)
		dst := p[n : n+want]
		switch e := f.lookup(i); {
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

// missTask opens the chunks of a readMiss batch from ct, of which the
// first m bytes were read (then the read failed with rerr, if not nil).
// With each set, ct is empty yet: every chunk's worker reads its own
// slot (concurrent ReadAt, as io.ReaderAt allows), so that the copies out
// of the Backing run in parallel too.
type missTask struct {
	f    *File
	jobs [batchChunks]missJob
	ct   []byte
	m    int
	rerr error
	each bool
}

func (t *missTask) run(s *sealer, k int) {
	j := &t.jobs[k]
	a := k * encChunkSize
	b := a + j.n + ChunkOverhead
	m, rerr := t.m, t.rerr
	if t.each {
		var n int
		n, rerr = t.f.b.ReadAt(t.ct[a:b], chunkOffset(j.idx))
		m = a + n
	}
	switch {
	case m >= b:
		j.err = s.open(j.dst, t.ct[a:b], j.idx, t.f.storedFinal(j.idx))
	case rerr == nil || rerr == io.EOF:
		// Shorter than its size said: cut behind our back.
		j.err = fmt.Errorf("envelope: chunk %d: %w", j.idx, ErrTruncated)
	default:
		j.err = fmt.Errorf("envelope: read chunk %d: %w", j.idx, rerr)
	}
}

// missJob is one chunk of a readMiss batch.
type missJob struct {
	idx   int64
	n     int    // stored plaintext length
	start int    // offset of the chunk's first byte in the request (< 0: before it)
	dst   []byte // where it is opened: the request itself, or e's buffer
	e     *entry // the cache entry (pinned) for a chunk the request does not cover whole
	err   error
}

// readMiss reads q at off, where chunk off/chunkSize is stored and not
// cached, for as far as one batch goes: that chunk and the following stored,
// uncached chunks that q covers, plus, if the read is sequential (seq) and
// the crew works in parallel, the next ones up to batchChunks (read-ahead;
// working alone, it would only add a copy out of the cache). It opens them
// in parallel: the chunks q covers whole straight into q, the others into
// new cache entries. It returns how many bytes of q it filled; only
// authenticated bytes are counted. A failing chunk beyond q is not an
// error (not cached: a read of it reports it).
func (f *File) readMiss(q []byte, off int64, seq bool) (int, error) {
	i, lo := off/chunkSize, int(off%chunkSize)
	// Read ahead only for requests within one chunk: larger ones are a
	// batch already (and need no cache).
	ahead := seq && f.parallel(ParallelReads) && lo+len(q) <= chunkSize
	stored := numChunks(f.disk)
	if seq {
		// A sequential reader does not come back (but for a few
		// requests that overtook each other): the clean chunks well
		// behind it are released first, so that it holds about a
		// read-ahead's worth of chunks, not the whole cache.
		for len(f.entries) > 0 && f.entries[0].idx < i-2 && !f.entries[0].dirty {
			f.release(f.entries[0])
		}
	}
	t := &f.miss
	t.f = f
	jobs := &t.jobs
	defer clear(jobs[:])
	n := 0
	var err error
	for k := i; n < batchChunks && k < stored; k++ {
		dl := chunkLen(k, f.disk)
		start := int(k-i)*chunkSize - lo
		if dl == 0 || k > i && (f.lookup(k) != nil || start >= len(q) && !ahead) {
			break
		}
		j := &jobs[n]
		j.idx, j.n, j.start = k, dl, start
		if start >= 0 && start+dl <= len(q) && dl == chunkLen(k, f.size) {
			j.dst = q[start : start+dl]
		} else {
			// Making room flushes if every entry is dirty; that
			// changes neither this chunk (not cached, so not dirty)
			// nor its stored length (only a cached, dirty final chunk
			// grows).
			if j.e, err = f.newEntry(k); err != nil {
				break
			}
			j.e.pinned = true
			j.dst = (*j.e.buf)[:dl]
		}
		n++
	}
	if n > 0 {
		f.openRun(i, n)
	}
	got := 0
	for k := range n {
		j := &jobs[k]
		if j.err == nil && f.storedFinal(j.idx) {
			f.lastOK = true
		}
		if j.start >= len(q) || err != nil {
			continue // read ahead, or after a failure
		}
		if j.err != nil {
			err = j.err
			continue
		}
		end := min(len(q), j.start+chunkLen(j.idx, f.size))
		if j.e != nil {
			clear((*j.e.buf)[j.n:])
			copy(q[max(j.start, 0):end], (*j.e.buf)[max(-j.start, 0):])
		}
		got = end
	}
	for k := range n {
		if e := jobs[k].e; e != nil {
			e.pinned = false
			if jobs[k].err != nil {
				f.release(e)
			} else {
				e.wrote(0, jobs[k].n)
			}
		}
	}
	return got, err
}

// openRun reads and opens the consecutive stored chunks of f.miss.jobs[:n],
// starting with chunk i, setting each job's err.
func (f *File) openRun(i int64, n int) {
	t := &f.miss
	ct, ctBuf := f.scr(), (*[]byte)(nil)
	if n > 1 {
		ctBuf = batchBufs.Get().(*[]byte)
		ct = *ctBuf
	}
	ct = ct[:(n-1)*encChunkSize+t.jobs[n-1].n+ChunkOverhead]
	if t.each = n > 1 && f.parallel(ParallelReads); !t.each {
		t.m, t.rerr = f.b.ReadAt(ct, chunkOffset(i))
	}
	t.ct = ct
	f.c.do(n, t, f.par&ParallelReads != 0)
	t.ct, t.rerr, t.each = nil, nil, false
	if ctBuf != nil {
		batchBufs.Put(ctBuf) // ciphertext only
	}
}

// verifyLast authenticates the stored final chunk once, so that reaching
// EOF proves the file was not cut.
func (f *File) verifyLast() error {
	if f.lastOK || f.size != f.disk {
		// If size != disk, the File has grown: the stored final chunk
		// was loaded (and authenticated) then, or partially flushed
		// over; the final chunk is in the cache.
		return nil
	}
	if _, err := f.load(numChunks(f.disk) - 1); err != nil {
		return err
	}
	return nil
}

// readStored reads chunk i from the Backing and decrypts it into dst, which
// must hold chunkLen(i, f.disk) bytes.
func (f *File) readStored(i int64, dst []byte) error {
	n := chunkLen(i, f.disk)
	ct := f.scr()[:n+ChunkOverhead]
	if m, err := f.b.ReadAt(ct, chunkOffset(i)); m < len(ct) {
		if err == nil || err == io.EOF {
			// Shorter than its size said: cut behind our back.
			return fmt.Errorf("envelope: chunk %d: %w", i, ErrTruncated)
		}
		return fmt.Errorf("envelope: read chunk %d: %w", i, err)
	}
	return f.s.open(dst[:n], ct, i, f.storedFinal(i))
}

// storedFinal reports whether stored chunk i is sealed as final.
func (f *File) storedFinal(i int64) bool {
	return i == numChunks(f.disk)-1 && !f.noFinal
}

// lookup returns the cached entry of chunk i, or nil.
func (f *File) lookup(i int64) *entry {
	for _, e := range f.entries {
		if e.idx == i {
			return e
		}
	}
	return nil
}

// newEntry makes room for and inserts an entry for chunk i (not cached),
// with an unspecified buffer content. Making room evicts the lowest clean
// entry, flushing first if every entry is dirty.
func (f *File) newEntry(i int64) (*entry, error) {
	var e *entry
	if len(f.entries) >= maxCached {
		victim := slices.IndexFunc(f.entries, evictable)
		if victim < 0 {
			// Every entry is dirty: write the lower half, keeping the
			// highest chunks (where out-of-order writers are still
			// filling in) and the last chunk (whose final flag is not
			// known yet) cached.
			upTo := min(f.entries[len(f.entries)/2-1].idx+1, numChunks(f.size)-1)
			if err := f.flushBelow(upTo); err != nil {
				return nil, err
			}
			if victim = slices.IndexFunc(f.entries, evictable); victim < 0 {
				// Only the last chunk and pinned ones are cached.
				if err := f.flush(); err != nil {
					return nil, err
				}
				victim = slices.IndexFunc(f.entries, evictable)
			}
		}
		e = f.entries[victim] // reused: no allocation in steady state
		f.entries = slices.Delete(f.entries, victim, victim+1)
		e.idx, e.dirty, e.known, e.have = i, false, 0, 0
	} else if k := len(f.spare); k > 0 {
		e = f.spare[k-1]
		f.spare = f.spare[:k-1]
		e.idx, e.dirty, e.known, e.have = i, false, 0, 0
	} else {
		e = &entry{idx: i, buf: chunkBufs.Get().(*[]byte)}
	}
	at, _ := slices.BinarySearchFunc(f.entries, i, func(e *entry, i int64) int { return cmp.Compare(e.idx, i) })
	f.entries = slices.Insert(f.entries, at, e)
	return e, nil
}

func evictable(e *entry) bool { return !e.dirty && !e.pinned }

func (f *File) dropEntry(e *entry) {
	if k := slices.Index(f.entries, e); k >= 0 {
		f.entries = slices.Delete(f.entries, k, k+1)
	}
	clear(*e.buf)
	chunkBufs.Put(e.buf)
}

// load caches chunk i, reading and authenticating its stored content if it
// has any, and returns the clean entry.
func (f *File) load(i int64) (*entry, error) {
	if e := f.lookup(i); e != nil {
		return e, nil
	}
	e, err := f.newEntry(i)
	if err != nil {
		return nil, err
	}
	buf := *e.buf
	dl := 0
	if i < numChunks(f.disk) {
		dl = chunkLen(i, f.disk)
		if err := f.readStored(i, buf); err != nil {
			f.dropEntry(e)
			return nil, err
		}
		if f.storedFinal(i) {
			f.lastOK = true
		}
	}
	clear(buf[dl:])
	e.wrote(0, dl)
	return e, nil
}

// WriteAt writes p at off. Writing past the end fills the gap with zeros
// (encrypted like any data). The data is cached; see Flush.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("envelope: write: negative offset")
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))
	if end > MaxPlaintextSize || end < off {
		return 0, fmt.Errorf("envelope: write: %w", ErrTooLarge)
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
	n, err := f.writeCached(p[n0:], off)
	return n0 + n, err
}

// writeCached is WriteAt through the cache.
func (f *File) writeCached(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if err := f.unpend(); err != nil {
		return 0, err
	}
	if end > f.size {
		if err := f.grow(end); err != nil {
			return 0, err
		}
	}
	first := off / chunkSize
	n := 0
	for n < len(p) {
		i, lo := off/chunkSize, int(off%chunkSize)
		hi := min(chunkSize, lo+len(p)-n)
		e := f.lookup(i)
		if e == nil {
			var err error
			if dl := chunkLen(i, f.disk); dl > 0 && (lo > 0 || hi < dl) {
				e, err = f.load(i) // partial overwrite of stored data
			} else if e, err = f.newEntry(i); err == nil {
				// Nothing stored survives in this chunk.
				clear((*e.buf)[:lo])
				clear((*e.buf)[hi:])
			}
			if err != nil {
				return n, err
			}
		}
		copy((*e.buf)[lo:hi], p[n:])
		e.dirty = true
		e.wrote(lo, hi)
		n += hi - lo
		off += int64(hi - lo)
	}
	if f.size > f.disk {
		if err := f.settle(first); err != nil {
			return n, err
		}
	}
	return n, nil
}

// settle writes out early, by a partial flush (docs/FORMAT.md, "Write
// order"), the chunks of a growing file that earlier writes finished: every
// chunk from the stored end up to (not including) the first one that is not
// cached, not dirty, not entirely written or not below before (the first
// chunk of the current write, whose data stays cached like any write's), and
// never the last chunk; and only if every dirty chunk below that is entirely
// written too. Each chunk of a
// sequential upload is so sealed once, one write after it is filled, and
// its buffer is reused for the next: the writer's working set stays a few
// chunks instead of the whole cache. Out-of-order writers are not slowed:
// chunks they are still filling block the run.
func (f *File) settle(before int64) error {
	last := min(numChunks(f.size)-1, before)
	u := numChunks(f.disk)
	if u > last {
		return nil // growing within the stored final chunk
	}
	for k := 0; u < last; u++ {
		for k < len(f.entries) && f.entries[k].idx < u {
			k++
		}
		if k == len(f.entries) {
			break
		}
		if e := f.entries[k]; e.idx != u || !e.dirty || !e.done() {
			break
		}
	}
	if u-numChunks(f.disk) < f.settleBatch() {
		return nil // wait for a batch to seal in parallel
	}
	some := false
	for _, e := range f.entries {
		if e.idx >= u {
			break
		}
		if e.dirty {
			if !e.done() {
				return nil
			}
			some = true
		}
	}
	if !some {
		return nil
	}
	if err := f.flushBelow(u); err != nil {
		return err
	}
	// Recycling the same few buffers keeps a sequential writer's working
	// set in the CPU cache.
	for len(f.entries) > 0 && f.entries[0].idx < u {
		f.release(f.entries[0])
	}
	return nil
}

// settleBatch is how many finished chunks settle waits for before it
// writes them out, sealed in parallel: a batch of up to batchChunks (4 per
// CPU), or one when the crew works alone (a single CPU, a busy machine).
func (f *File) settleBatch() int64 {
	if f.parallel(ParallelWrites) {
		return int64(min(batchChunks, 4*runtime.GOMAXPROCS(0)))
	}
	return 1
}

// minStreamChunks is how long a file must be before appendChunk takes
// over its whole-chunk appends: its saving is one copy per chunk, its cost
// one extra open and seal of the last chunk at the next Flush.
const minStreamChunks = 8

// pendBatch is how many chunks appendChunk collects (512 KiB) before it
// seals them (in parallel) and writes them to the Backing in one WriteAt.
const pendBatch = batchChunks

// appendChunk is the fast path of a sequential upload in whole chunks: p is
// exactly chunk i, appended at the end of the file. It copies p into the
// batch buffer pend, where it is later sealed in place (with the rest of
// the batch, in parallel) as an interior chunk, a bet that the file grows
// further; meanwhile the chunk is pending as the last chunk. Entering this mode, the previous last chunk (dirty in the
// cache and entirely written) is written out first, as a partial flush
// below i (docs/FORMAT.md, "Write order"); then the pending chunks
// pendLo..pendIdx are collected in pend and, pendBatch at a time, written
// in one WriteAt at the stored end: the same partial flush, fewer calls to
// the Backing. If the bet is lost (a Flush, a read of a pending chunk or
// any other write comes first), unpend writes the pending chunks but the
// last, and opens the last back into the cache, as if it had been written
// there.
//
// It reports false, having changed nothing, when the state does not allow
// it. In a pending state, f.size == (pendIdx+1)*chunkSize, the stored
// chunks are 0..pendLo-1, all interior (noFinal), and no cached chunk is
// dirty.
func (f *File) appendChunk(p []byte, i int64) (bool, error) {
	if f.err != nil {
		return false, f.err
	}
	if f.pendIdx >= 0 {
		if f.pendIdx != i-1 {
			return false, nil
		}
		if i-f.pendLo == pendBatch {
			if err := f.writePending(i); err != nil {
				return false, err
			}
		}
	} else {
		prev := f.lookup(i - 1)
		if prev == nil || !prev.dirty || !prev.done() {
			return false, nil
		}
		for _, e := range f.entries {
			if e.dirty && !e.done() || e.idx >= i {
				return false, nil
			}
		}
		if err := f.grow(f.size + chunkSize); err != nil {
			return false, err
		}
		if err := f.flushBelow(i); err != nil {
			return false, err
		}
		for _, e := range slices.Clone(f.entries) {
			f.release(e)
		}
		if f.pend == nil {
			f.pend = batchBufs.Get().(*[]byte)
		}
		f.pendLo = i
	}
	k := int(i - f.pendLo)
	slot := (*f.pend)[k*encChunkSize : (k+1)*encChunkSize]
	if f.pendSealed[k] = !f.parallel(ParallelWrites); f.pendSealed[k] {
		// Alone, a copy would be the only difference: seal p now.
		f.s.seal(slot, i, false, p)
	} else {
		copy(slot[nonceSize:nonceSize+chunkSize], p)
	}
	f.pendIdx, f.size = i, (i+1)*chunkSize
	return true, nil
}

// writePending seals the pending chunks pendLo..end-1 (end <= pendIdx+1)
// in place, in parallel, as interior chunks, writes them at the stored end
// in one WriteAt, and keeps the others pending.
func (f *File) writePending(end int64) error {
	c := int(end - f.pendLo)
	if c == 0 {
		return nil
	}
	pend := *f.pend
	for k := 0; k < c; {
		// Seal each run of unsealed slots in place, in parallel.
		if f.pendSealed[k] {
			k++
			continue
		}
		r := 0
		for k+r < c && !f.pendSealed[k+r] {
			o := (k+r)*encChunkSize + nonceSize
			f.outs[r] = outChunk{idx: f.pendLo + int64(k+r), n: chunkSize, plain: pend[o : o+chunkSize]}
			r++
		}
		f.sealing = sealTask{cs: f.outs[:r], buf: pend[k*encChunkSize:]}
		f.c.do(r, &f.sealing, f.par&ParallelWrites != 0)
		f.sealing = sealTask{}
		clear(f.outs[:])
		k += r
	}
	if _, err := f.b.WriteAt(pend[:c*encChunkSize], chunkOffset(f.pendLo)); err != nil {
		return f.fail(fmt.Errorf("write chunks %d-%d: %w", f.pendLo, end-1, err))
	}
	rest := int(f.pendIdx + 1 - end)
	copy(pend, pend[c*encChunkSize:(c+rest)*encChunkSize])
	copy(f.pendSealed[:], f.pendSealed[c:c+rest])
	f.pendLo, f.disk, f.noFinal = end, end*chunkSize, true
	return nil
}

// unpend turns the last pending chunk (appendChunk) back into a dirty,
// entirely written cache entry, the normal state of a growing file, after
// writing the others.
func (f *File) unpend() error {
	if f.pendIdx < 0 {
		return nil
	}
	i := f.pendIdx
	if err := f.writePending(i); err != nil {
		return err
	}
	e, err := f.newEntry(i)
	if err != nil {
		return err
	}
	if f.pendSealed[0] {
		if err := f.s.open((*e.buf)[:chunkSize], (*f.pend)[:encChunkSize], i, false); err != nil {
			f.dropEntry(e)
			return f.fail(fmt.Errorf("pending chunk %d: %w", i, err))
		}
	} else {
		copy(*e.buf, (*f.pend)[nonceSize:nonceSize+chunkSize])
	}
	e.dirty = true
	e.wrote(0, chunkSize)
	f.pendIdx = -1
	f.putPend()
	return nil
}

// putPend gives the pending-chunk buffer back to the pool, cleared (it held
// plaintext), once nothing is pending.
func (f *File) putPend() {
	if f.pend != nil {
		clear(*f.pend)
		batchBufs.Put(f.pend)
		f.pend = nil
	}
}

// release drops a clean entry from the cache, keeping its buffer (not
// cleared) for reuse while entries and spares stay within maxCached.
func (f *File) release(e *entry) {
	if k := slices.Index(f.entries, e); k >= 0 {
		f.entries = slices.Delete(f.entries, k, k+1)
	}
	if len(f.entries)+len(f.spare) < maxCached && len(f.spare) < batchChunks {
		f.spare = append(f.spare, e)
		return
	}
	clear(*e.buf)
	chunkBufs.Put(e.buf)
}

// grow raises the plaintext size to size (> f.size). When the file first
// grows past its stored size, the stored final chunk is loaded and marked
// dirty: it must be re-sealed (as interior, or longer) at the next flush.
// Loading it now also reports its damage to this call, not to a later Flush.
func (f *File) grow(size int64) error {
	if f.size == f.disk {
		last := numChunks(f.disk) - 1
		e, err := f.load(last)
		if err != nil {
			return err
		}
		e.dirty = true
	}
	f.size = size
	return nil
}

// Truncate changes the plaintext size. Growing is cached like a write past
// the end. Shrinking flushes, re-seals the new final chunk, then truncates
// the Backing (docs/FORMAT.md, "Write order").
func (f *File) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	switch {
	case size < 0:
		return errors.New("envelope: truncate: negative size")
	case size > MaxPlaintextSize:
		return fmt.Errorf("envelope: truncate: %w", ErrTooLarge)
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
	if err := f.flush(); err != nil {
		return err
	}
	k := numChunks(size) - 1
	nl := chunkLen(k, size)
	var e *entry
	var err error
	if e = f.lookup(k); e == nil {
		if nl > 0 {
			e, err = f.load(k)
		} else {
			e, err = f.newEntry(k) // size 0: nothing to keep
		}
	}
	if err != nil {
		return err
	}
	for _, o := range slices.Clone(f.entries) {
		if o.idx > k {
			f.dropEntry(o)
		}
	}
	clear((*e.buf)[nl:])
	if err := f.writeChunk(k, (*e.buf)[:nl], true); err != nil {
		return f.fail(err)
	}
	if err := f.b.Truncate(CiphertextSize(size)); err != nil {
		return f.fail(err)
	}
	e.dirty = false
	f.size, f.disk, f.noFinal, f.lastOK = size, size, false, true
	return nil
}

// writeChunk seals plain as chunk i and writes it to the Backing.
func (f *File) writeChunk(i int64, plain []byte, final bool) error {
	out := f.s.seal(f.scr(), i, final, plain)
	if _, err := f.b.WriteAt(out, chunkOffset(i)); err != nil {
		return fmt.Errorf("write chunk %d: %w", i, err)
	}
	return nil
}

func (f *File) fail(err error) error {
	f.err = fmt.Errorf("envelope: %w", err)
	return f.err
}

// Flush seals the dirty cached chunks and writes them to the Backing in
// crash-safe order, then gives the cache's buffers back to the shared pools
// (an idle open File holds none; the next access takes them again). It
// does not sync the Backing.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable(); err != nil {
		return err
	}
	err := f.flush()
	f.idle()
	return err
}

// flush writes, in this order (docs/FORMAT.md, "Write order"):
//  1. the chunks beyond the stored final chunk, ascending, ending with the
//     new final chunk; chunks never written hold zeros;
//  2. the dirty chunks at or before the stored final chunk, ascending,
//     which re-seals the old final chunk as interior.
func (f *File) flush() error {
	if f.err != nil {
		return f.err
	}
	if err := f.unpend(); err != nil {
		return err
	}
	oldN, newN := numChunks(f.disk), numChunks(f.size)
	w := chunkWriter{f: f}
	for i := oldN; i < newN; i++ {
		c := outChunk{idx: i, n: chunkLen(i, f.size), final: i == newN-1}
		if e := f.lookup(i); e != nil {
			c.plain = (*e.buf)[:c.n]
		}
		w.add(c)
	}
	for _, e := range f.entries {
		if !e.dirty || e.idx >= oldN {
			continue
		}
		n := chunkLen(e.idx, f.size)
		w.add(outChunk{idx: e.idx, n: n, plain: (*e.buf)[:n], final: e.idx == newN-1})
	}
	if err := w.done(); err != nil {
		return f.fail(err)
	}
	for _, e := range f.entries {
		e.dirty = false
	}
	f.disk, f.noFinal, f.lastOK = f.size, false, true
	return nil
}

// chunkWriter seals and writes chunks in the order they are added, a batch
// at a time: a batch is sealed in parallel (crew), then written in order,
// each run of consecutive chunks in one WriteAt. So the order of the writes
// to the Backing, the crash-safety argument of docs/FORMAT.md, "Write
// order", is that of the calls to add; a batch buffer is held only while a
// batch is written.
type chunkWriter struct {
	f   *File
	n   int // chunks in f.outs
	err error
}

func (w *chunkWriter) add(c outChunk) {
	if w.err != nil {
		return
	}
	w.f.outs[w.n] = c
	w.n++
	if w.n == batchChunks {
		w.err = w.f.writeChunks(w.f.outs[:w.n])
		w.n = 0
	}
}

func (w *chunkWriter) done() error {
	if w.err == nil && w.n > 0 {
		w.err = w.f.writeChunks(w.f.outs[:w.n])
	}
	clear(w.f.outs[:]) // drop the references to cache buffers
	w.n = 0
	return w.err
}

// writeChunks seals cs (at most batchChunks) and writes them in order.
func (f *File) writeChunks(cs []outChunk) error {
	if len(cs) == 1 {
		c := &cs[0]
		if c.plain == nil {
			c.plain = f.scr()[nonceSize : nonceSize+c.n]
			clear(c.plain) // sealed in place
		}
		return f.writeChunk(c.idx, c.plain, c.final)
	}
	bp := batchBufs.Get().(*[]byte)
	defer batchBufs.Put(bp) // sealed chunks only
	buf := *bp
	f.sealing = sealTask{cs: cs, buf: buf}
	f.c.do(len(cs), &f.sealing, f.par&ParallelWrites != 0)
	f.sealing = sealTask{}
	for a := 0; a < len(cs); {
		b := a + 1
		for b < len(cs) && cs[b].idx == cs[b-1].idx+1 && cs[b-1].n == chunkSize {
			b++
		}
		lo, hi := a*encChunkSize, (b-1)*encChunkSize+cs[b-1].n+ChunkOverhead
		if _, err := f.b.WriteAt(buf[lo:hi], chunkOffset(cs[a].idx)); err != nil {
			if b-a == 1 {
				return fmt.Errorf("write chunk %d: %w", cs[a].idx, err)
			}
			return fmt.Errorf("write chunks %d-%d: %w", cs[a].idx, cs[b-1].idx, err)
		}
		a = b
	}
	return nil
}

// flushBelow writes the dirty chunks below upTo, which must not exceed the
// last chunk's index, all sealed as interior: first the chunks from the
// stored end up to upTo (zeros where never written), then the dirty chunks
// at or before the stored end, ascending. If that extends the stored
// chunks, the stored file has no final chunk until the next flush (it reads
// as ErrTruncated if the writer crashes before): docs/FORMAT.md, "Write
// order". It never re-seals the last chunk, so a growing file's last chunk
// is sealed once, not at every eviction.
func (f *File) flushBelow(upTo int64) error {
	if f.err != nil {
		return f.err
	}
	if upTo > numChunks(f.size)-1 {
		panic("envelope: internal error: partial flush of the last chunk")
	}
	oldN := numChunks(f.disk)
	w := chunkWriter{f: f}
	for i := oldN; i < upTo; i++ {
		c := outChunk{idx: i, n: chunkSize}
		if e := f.lookup(i); e != nil {
			c.plain = (*e.buf)[:chunkSize]
		}
		w.add(c)
	}
	for _, e := range f.entries {
		if e.idx >= upTo || e.idx >= oldN || !e.dirty {
			continue
		}
		w.add(outChunk{idx: e.idx, n: chunkSize, plain: (*e.buf)[:chunkSize]})
	}
	if err := w.done(); err != nil {
		return f.fail(err)
	}
	for _, e := range f.entries {
		if e.idx < upTo {
			e.dirty = false
		}
	}
	if upTo >= oldN {
		// The stored chunks now end at upTo, all interior (the old
		// final chunk, oldN-1 < upTo, was pinned dirty and re-sealed).
		f.disk, f.noFinal = upTo*chunkSize, true
	}
	return nil
}

// Close flushes, releases the cache and the key, and makes the File
// unusable. It does not close the Backing. Closing twice is an error.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("envelope: %w", fs.ErrClosed)
	}
	err := f.flush()
	for _, e := range f.entries {
		e.dirty = false // lost with a failed flush: err says so
	}
	f.idle()
	f.putPend()
	f.pendIdx = -1
	f.s, f.c = nil, nil // drop the last references to the chunk key
	f.closed = true
	return err
}
