// The chunk cache of a File (docs/FORMAT.md, section 8.1): the chunks it
// holds in plaintext, which of them are dirty, and how room is made. Writes
// through the cache (writeCached) land here; flush.go writes dirty chunks
// out.

package envelope

import (
	"cmp"
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

// chunkCache holds the cached chunks of a File: entries, sorted by chunk
// index, at most maxCached, and spare entries whose buffers are kept for
// reuse. It only keeps the books; the File decides what to load, write out
// and evict.
type chunkCache struct {
	entries []*entry // sorted by idx
	spare   []*entry // written-out entries for reuse, buffers not cleared
}

// lookup returns the cached entry of chunk i, or nil.
func (c *chunkCache) lookup(i int64) *entry {
	for _, e := range c.entries {
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
	if len(f.cache.entries) >= maxCached {
		victim := slices.IndexFunc(f.cache.entries, evictable)
		if victim < 0 {
			// Every entry is dirty: write the lower half, keeping the
			// highest chunks (where out-of-order writers are still
			// filling in) and the last chunk (whose final flag is not
			// known yet) cached.
			upTo := min(f.cache.entries[len(f.cache.entries)/2-1].idx+1, numChunks(f.size)-1)
			if err := f.flushBelow(upTo); err != nil {
				return nil, err
			}
			if victim = slices.IndexFunc(f.cache.entries, evictable); victim < 0 {
				// Only the last chunk and pinned ones are cached.
				if err := f.flush(); err != nil {
					return nil, err
				}
				victim = slices.IndexFunc(f.cache.entries, evictable)
			}
		}
		e = f.cache.entries[victim] // reused: no allocation in steady state
		f.cache.entries = slices.Delete(f.cache.entries, victim, victim+1)
		e.idx, e.dirty, e.known, e.have = i, false, 0, 0
	} else if k := len(f.cache.spare); k > 0 {
		e = f.cache.spare[k-1]
		f.cache.spare = f.cache.spare[:k-1]
		e.idx, e.dirty, e.known, e.have = i, false, 0, 0
	} else {
		e = &entry{idx: i, buf: chunkBufs.Get().(*[]byte)}
	}
	at, _ := slices.BinarySearchFunc(f.cache.entries, i, func(e *entry, i int64) int { return cmp.Compare(e.idx, i) })
	f.cache.entries = slices.Insert(f.cache.entries, at, e)
	return e, nil
}

func evictable(e *entry) bool { return !e.dirty && !e.pinned }

// WriteBehind writes out one dirty cached chunk when the cache is full and
// holds no clean chunk, so that the next write to a chunk not cached finds
// an entry to reuse instead of waiting for write-outs (newEntry). It is
// the write-out the next such write would start, done earlier: a server
// calls it while it waits for the next request, so the sealing and the
// write overlap the round trip. It only takes a chunk before the stored
// final chunk, whose write-out changes nothing but that chunk. An error is
// sticky, like that of any write-out.
func (f *File) WriteBehind() (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() { err = fileErr("write behind", err) }()
	if err := f.usable(); err != nil {
		return err
	}
	if f.pend.idx >= 0 || len(f.cache.entries) < maxCached || slices.ContainsFunc(f.cache.entries, evictable) {
		return nil
	}
	k := slices.IndexFunc(f.cache.entries, func(e *entry) bool { return e.dirty })
	if k < 0 {
		return nil
	}
	e := f.cache.entries[k]
	if e.pinned || e.idx+1 >= numChunks(f.disk) || !e.done() {
		return nil
	}
	return f.flushBelow(e.idx + 1)
}

// drop removes e from the cache and gives its buffer back, cleared.
func (c *chunkCache) drop(e *entry) {
	if k := slices.Index(c.entries, e); k >= 0 {
		c.entries = slices.Delete(c.entries, k, k+1)
	}
	clear(*e.buf)
	chunkBufs.Put(e.buf)
}

// load caches chunk i, reading and authenticating its stored content if it
// has any, and returns the clean entry.
func (f *File) load(i int64) (*entry, error) {
	if e := f.cache.lookup(i); e != nil {
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
			f.cache.drop(e)
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
		e := f.cache.lookup(i)
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

// release drops a clean entry from the cache, keeping its buffer (not
// cleared) for reuse while entries and spares stay within maxCached.
func (c *chunkCache) release(e *entry) {
	if k := slices.Index(c.entries, e); k >= 0 {
		c.entries = slices.Delete(c.entries, k, k+1)
	}
	if len(c.entries)+len(c.spare) < maxCached && len(c.spare) < batchChunks {
		c.spare = append(c.spare, e)
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
