// Reading a File: cache misses, opened a batch at a time, with read-ahead.

package envelope

import (
	"fmt"
	"io"
)

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
		j.err = fmt.Errorf("chunk %d: %w", j.idx, ErrTruncated)
	default:
		j.err = fmt.Errorf("read chunk %d: %w", j.idx, rerr)
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
// read batches are split over several CPUs, the next ones up to
// batchChunks (read-ahead; on one CPU it would only add a copy out of the
// cache). It opens them
// in parallel: the chunks q covers whole straight into q, the others into
// new cache entries. It returns how many bytes of q it filled; only
// authenticated bytes are counted. A failing chunk beyond q is not an
// error (not cached: a read of it reports it).
func (f *File) readMiss(q []byte, off int64, seq bool) (int, error) {
	i, lo := off/chunkSize, int(off%chunkSize)
	// Read ahead only for requests within one chunk: larger ones are a
	// batch already (and need no cache).
	ahead := seq && f.parallel(parallelReads) && lo+len(q) <= chunkSize
	stored := numChunks(f.disk)
	if seq {
		// A sequential reader does not come back (but for a few
		// requests that overtook each other): the clean chunks well
		// behind it are released first, so that it holds about a
		// read-ahead's worth of chunks, not the whole cache.
		for len(f.cache.entries) > 0 && f.cache.entries[0].idx < i-2 && !f.cache.entries[0].dirty {
			f.cache.release(f.cache.entries[0])
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
		if dl == 0 || k > i && (f.cache.lookup(k) != nil || start >= len(q) && !ahead) {
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
				f.cache.release(e)
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
	if t.each = n > 1 && f.parallel(parallelReads); !t.each {
		t.m, t.rerr = f.b.ReadAt(ct, chunkOffset(i))
	}
	t.ct = ct
	f.c.do(n, t, f.par&parallelReads != 0)
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
			return fmt.Errorf("chunk %d: %w", i, ErrTruncated)
		}
		return fmt.Errorf("read chunk %d: %w", i, err)
	}
	return f.s.open(dst[:n], ct, i, f.storedFinal(i))
}

// storedFinal reports whether stored chunk i is sealed as final.
func (f *File) storedFinal(i int64) bool {
	return i == numChunks(f.disk)-1 && !f.noFinal
}
