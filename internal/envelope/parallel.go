package envelope

import (
	"crypto/cipher"
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelism says which batches of chunks a File splits over several
// goroutines (on several CPUs). Reads are split by default; writes are not,
// as their batches need an extra copy into the batch buffer
// (docs/PERFORMANCE.md has the measurements behind this choice).
type parallelism uint8

const (
	// parallelReads: the chunks of a read miss, with its read-ahead.
	parallelReads parallelism = 1 << iota
	// parallelWrites: the write-out of the cache and the batches of the
	// whole-chunk append path (whose chunks are then copied into the batch
	// buffer and sealed there, instead of sealed from the caller's buffer).
	parallelWrites

	parallelNone       parallelism = 0
	parallelAll                    = parallelReads | parallelWrites
	defaultParallelism             = parallelReads
)

// batchChunks is the most chunks one batch seals or opens at once (512 KiB
// of plaintext): the write-out of the write-back cache, the append fast
// path's pending chunks, the read-ahead, the streams' buffers.
const batchChunks = 8

// crew seals and opens the chunks of one file, a batch at a time split over
// the number of goroutines its splitter picks (the caller's among them), as
// gocryptfs does for large requests. Each worker has its own sealer (their
// AAD scratch differs; the AEAD itself is safe for concurrent use). A crew
// is not safe for concurrent use: its owner (a File under its mutex, a
// stream) calls it from one goroutine at a time.
type crew struct {
	ss []*sealer // ss[0] works on the caller's goroutine
}

func newCrew(aead cipher.AEAD, fileID [32]byte) *crew {
	return &crew{ss: []*sealer{newSealer(aead, fileID)}}
}

// splitter decides how many goroutines a batch of chunks runs on, from the
// batch's size and the number of CPUs alone (never from timings), so that
// a given request on a given machine always takes the same code path.
type splitter struct {
	procs int // CPUs Go may use at once (GOMAXPROCS)
}

// minSplit is the smallest batch that is split: 2 chunks (128 KiB), like
// gocryptfs's 32 blocks of 4 KiB. A single chunk stays on the caller's
// goroutine: handing it over would only add a switch.
const minSplit = 2

// currentSplitter reads GOMAXPROCS now: it may change while a File is
// open (Go adjusts it to the container's CPU limit).
func currentSplitter() splitter { return splitter{procs: runtime.GOMAXPROCS(0)} }

// parallel reports whether batches may run on several goroutines at all.
// Owners batch work (read ahead, collect chunks) only when they may.
func (s splitter) parallel() bool { return s.procs > 1 }

// workers returns how many goroutines a batch of n chunks runs on: one if
// the owner does not want this kind of batch split (!want), on one CPU, or
// for fewer than minSplit chunks; else one per CPU, at most one per chunk.
func (s splitter) workers(n int, want bool) int {
	if !want || !s.parallel() || n < minSplit {
		return 1
	}
	return min(s.procs, n)
}

// parallel reports whether batches are split over several goroutines.
func (c *crew) parallel() bool { return currentSplitter().parallel() }

// one returns the caller's sealer, for single chunks.
func (c *crew) one() *sealer { return c.ss[0] }

// task is a batch of chunks to seal or open: run handles chunk k with
// the sealer s of the worker it runs on. Tasks are long-lived values (a
// field of a File, a stream) so that handing one to do allocates nothing.
type task interface {
	run(s *sealer, k int)
}

// do runs t.run(s, k) for every k in [0, n), each on some worker with that
// worker's sealer s, on as many goroutines as the splitter says for n
// chunks and par (the owner wants this kind of batch split). Chunks are
// handed out one at a time, so a worker slowed down by a busy machine does
// not hold up the others. do returns when every run has returned; t
// collects the results.
func (c *crew) do(n int, t task, par bool) {
	c.run(currentSplitter().workers(n, par), n, t)
}

// run is do on nw goroutines.
func (c *crew) run(nw, n int, t task) {
	if nw <= 1 {
		for k := range n {
			t.run(c.ss[0], k)
		}
		return
	}
	for len(c.ss) < nw {
		c.ss = append(c.ss, newSealer(c.ss[0].aead, c.ss[0].fileID()))
	}
	var next atomic.Int32
	work := func(s *sealer) {
		for {
			k := int(next.Add(1)) - 1
			if k >= n {
				return
			}
			t.run(s, k)
		}
	}
	var wg sync.WaitGroup
	for _, s := range c.ss[1:nw] {
		wg.Go(func() { work(s) })
	}
	work(c.ss[0])
	wg.Wait()
}

// sealTask seals chunks into slots of encChunkSize bytes of buf: chunk k
// of the batch into buf[k*encChunkSize:]. Its plaintext is cs[k].plain,
// which may be the slot's own plaintext position (sealed in place), or n
// zero bytes if nil.
type sealTask struct {
	cs  []outChunk
	buf []byte
}

func (t *sealTask) run(s *sealer, k int) {
	c := &t.cs[k]
	out := t.buf[k*encChunkSize:]
	plain := c.plain
	if plain == nil {
		plain = out[nonceSize : nonceSize+c.n]
		clear(plain)
	}
	s.seal(out, c.idx, c.final, plain)
}

// outChunk is a chunk to seal: chunk idx, from plain, or from n zero bytes
// if plain is nil.
type outChunk struct {
	idx   int64
	n     int
	plain []byte
	final bool
}
