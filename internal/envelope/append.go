// The sequential-append fast path of a File: whole chunks appended at the
// end are collected, sealed and written a batch at a time, the last one kept
// pending (docs/FORMAT.md, section 8.1, "Partial flush").

package envelope

import (
	"fmt"
	"slices"
)

// pending is the state of the append fast path (appendChunk): if idx >= 0,
// chunks lo..idx are appended but not yet stored, laid out in buf as sealed
// chunks of encChunkSize bytes (nonce, plaintext, room for the tag); slot k
// holds chunk lo+k, sealed already if sealed[k] (appendChunk seals at once
// when the batch would not be split over several CPUs), else in plaintext.
type pending struct {
	buf    *[]byte
	lo     int64
	idx    int64
	sealed [batchChunks]bool
}

// minStreamChunks is how long a file must be before appendChunk takes
// over its whole-chunk appends: its saving is one copy per chunk, its cost
// one extra open and seal of the last chunk at the next Flush.
const minStreamChunks = 8

// pendBatch is how many chunks appendChunk collects (512 KiB) before it
// seals them (in parallel) and writes them to the Backing in one WriteAt.
const pendBatch = batchChunks

// appendChunk is the fast path of a sequential upload in whole chunks: p is
// exactly chunk i, appended at the end of the file. It seals p into the
// batch buffer pend.buf as an interior chunk (or, when write batches are
// split over CPUs, copies it there, to be sealed in place with the rest of
// the batch, in parallel), a bet that the file grows further; meanwhile the
// chunk is pending as the last chunk. Entering this mode, the previous last
// chunk (dirty in the cache and entirely written) is written out first, as
// a partial flush below i (docs/FORMAT.md, section 8.1); then the pending
// chunks pend.lo..pend.idx are collected in pend.buf and, pendBatch at a
// time, written in one WriteAt at the stored end: the same partial flush,
// fewer calls to the Backing. If the bet is lost (a Flush, a read of a pending chunk or
// any other write comes first), unpend writes the pending chunks but the
// last, and opens the last back into the cache, as if it had been written
// there.
//
// It reports false, having changed nothing, when the state does not allow
// it. In a pending state, f.size == (pend.idx+1)*chunkSize, the stored
// chunks are 0..pend.lo-1, all interior (noFinal), and no cached chunk is
// dirty.
func (f *File) appendChunk(p []byte, i int64) (bool, error) {
	if f.err != nil {
		return false, f.err
	}
	if f.pend.idx >= 0 {
		if f.pend.idx != i-1 {
			return false, nil
		}
		if i-f.pend.lo == pendBatch {
			if err := f.writePending(i); err != nil {
				return false, err
			}
		}
	} else {
		prev := f.cache.lookup(i - 1)
		if prev == nil || !prev.dirty || !prev.done() {
			return false, nil
		}
		for _, e := range f.cache.entries {
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
		for _, e := range slices.Clone(f.cache.entries) {
			f.cache.release(e)
		}
		if f.pend.buf == nil {
			f.pend.buf = batchBufs.Get().(*[]byte)
		}
		f.pend.lo = i
	}
	k := int(i - f.pend.lo)
	slot := (*f.pend.buf)[k*encChunkSize : (k+1)*encChunkSize]
	if f.pend.sealed[k] = !f.parallel(parallelWrites); f.pend.sealed[k] {
		// Alone, a copy would be the only difference: seal p now.
		f.s.seal(slot, i, false, p)
	} else {
		copy(slot[nonceSize:nonceSize+chunkSize], p)
	}
	f.pend.idx, f.size = i, (i+1)*chunkSize
	return true, nil
}

// writePending seals the pending chunks pend.lo..end-1 (end <= pend.idx+1)
// in place, in parallel, as interior chunks, writes them at the stored end
// in one WriteAt, and keeps the others pending.
func (f *File) writePending(end int64) error {
	c := int(end - f.pend.lo)
	if c == 0 {
		return nil
	}
	pend := *f.pend.buf
	for k := 0; k < c; {
		// Seal each run of unsealed slots in place, in parallel.
		if f.pend.sealed[k] {
			k++
			continue
		}
		r := 0
		for k+r < c && !f.pend.sealed[k+r] {
			o := (k+r)*encChunkSize + nonceSize
			f.outs[r] = outChunk{idx: f.pend.lo + int64(k+r), n: chunkSize, plain: pend[o : o+chunkSize]}
			r++
		}
		f.sealing = sealTask{cs: f.outs[:r], buf: pend[k*encChunkSize:]}
		f.c.do(r, &f.sealing, f.par&parallelWrites != 0)
		f.sealing = sealTask{}
		clear(f.outs[:])
		k += r
	}
	if _, err := f.b.WriteAt(pend[:c*encChunkSize], chunkOffset(f.pend.lo)); err != nil {
		return f.fail(fmt.Errorf("write chunks %d-%d: %w", f.pend.lo, end-1, err))
	}
	rest := int(f.pend.idx + 1 - end)
	copy(pend, pend[c*encChunkSize:(c+rest)*encChunkSize])
	copy(f.pend.sealed[:], f.pend.sealed[c:c+rest])
	f.pend.lo, f.disk, f.noFinal = end, end*chunkSize, true
	return nil
}

// unpend turns the last pending chunk (appendChunk) back into a dirty,
// entirely written cache entry, the normal state of a growing file, after
// writing the others.
func (f *File) unpend() error {
	if f.pend.idx < 0 {
		return nil
	}
	i := f.pend.idx
	if err := f.writePending(i); err != nil {
		return err
	}
	e, err := f.newEntry(i)
	if err != nil {
		return err
	}
	if f.pend.sealed[0] {
		if err := f.s.open((*e.buf)[:chunkSize], (*f.pend.buf)[:encChunkSize], i, false); err != nil {
			f.cache.drop(e)
			return f.fail(fmt.Errorf("pending chunk %d: %w", i, err))
		}
	} else {
		copy(*e.buf, (*f.pend.buf)[nonceSize:nonceSize+chunkSize])
	}
	e.dirty = true
	e.wrote(0, chunkSize)
	f.pend.idx = -1
	f.pend.put()
	return nil
}

// put gives the pending-chunk buffer back to the pool, cleared (it held
// plaintext), once nothing is pending.
func (p *pending) put() {
	if p.buf != nil {
		clear(*p.buf)
		batchBufs.Put(p.buf)
		p.buf = nil
	}
}
