// Writing a File's dirty chunks to its Backing, in the order of
// docs/FORMAT.md, section 8.1: the full flush (Flush, Close, before a
// shrink), the partial flush below a chunk (eviction, settle), and the
// chunkWriter that keeps the order while sealing a batch in parallel. Every
// write to the Backing but Create's and Truncate's goes through here.

package envelope

import (
	"fmt"
	"runtime"
	"slices"
)

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
		for k < len(f.cache.entries) && f.cache.entries[k].idx < u {
			k++
		}
		if k == len(f.cache.entries) {
			break
		}
		if e := f.cache.entries[k]; e.idx != u || !e.dirty || !e.done() {
			break
		}
	}
	if u-numChunks(f.disk) < f.settleBatch() {
		return nil // wait for a batch to seal in parallel
	}
	some := false
	for _, e := range f.cache.entries {
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
	for len(f.cache.entries) > 0 && f.cache.entries[0].idx < u {
		f.cache.release(f.cache.entries[0])
	}
	return nil
}

// settleBatch is how many finished chunks settle waits for before it
// writes them out, sealed in parallel: a batch of up to batchChunks (4 per
// CPU), or one when write batches are not split (the default, or one CPU).
func (f *File) settleBatch() int64 {
	if f.parallel(parallelWrites) {
		return int64(min(batchChunks, 4*runtime.GOMAXPROCS(0)))
	}
	return 1
}

// writeChunk seals plain as chunk i and writes it to the Backing.
func (f *File) writeChunk(i int64, plain []byte, final bool) error {
	out := f.s.seal(f.scr(), i, final, plain)
	if _, err := f.b.WriteAt(out, chunkOffset(i)); err != nil {
		return fmt.Errorf("write chunk %d: %w", i, err)
	}
	return nil
}

// flush writes, in this order (docs/FORMAT.md, section 8.1):
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
		if e := f.cache.lookup(i); e != nil {
			c.plain = (*e.buf)[:c.n]
		}
		w.add(c)
	}
	for _, e := range f.cache.entries {
		if !e.dirty || e.idx >= oldN {
			continue
		}
		n := chunkLen(e.idx, f.size)
		w.add(outChunk{idx: e.idx, n: n, plain: (*e.buf)[:n], final: e.idx == newN-1})
	}
	if err := w.done(); err != nil {
		return f.fail(err)
	}
	for _, e := range f.cache.entries {
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
	f.c.do(len(cs), &f.sealing, f.par&parallelWrites != 0)
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
		if e := f.cache.lookup(i); e != nil {
			c.plain = (*e.buf)[:chunkSize]
		}
		w.add(c)
	}
	for _, e := range f.cache.entries {
		if e.idx >= upTo || e.idx >= oldN || !e.dirty {
			continue
		}
		w.add(outChunk{idx: e.idx, n: chunkSize, plain: (*e.buf)[:chunkSize]})
	}
	if err := w.done(); err != nil {
		return f.fail(err)
	}
	for _, e := range f.cache.entries {
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

// shrink makes the file size bytes long (< f.size), in the order of
// docs/FORMAT.md, section 8.1, "Shrink": flush, re-seal the new final chunk
// in place, then truncate the Backing.
func (f *File) shrink(size int64) error {
	if err := f.flush(); err != nil {
		return err
	}
	k := numChunks(size) - 1
	nl := chunkLen(k, size)
	var e *entry
	var err error
	if e = f.cache.lookup(k); e == nil {
		if nl > 0 {
			e, err = f.load(k)
		} else {
			e, err = f.newEntry(k) // size 0: nothing to keep
		}
	}
	if err != nil {
		return err
	}
	for _, o := range slices.Clone(f.cache.entries) {
		if o.idx > k {
			f.cache.drop(o)
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
