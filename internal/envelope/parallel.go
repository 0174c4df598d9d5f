package envelope

import (
	"crypto/cipher"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Parallelism says which batches of chunks a File splits over several
// goroutines (on several CPUs). Measured on a 2-CPU machine (AMD EPYC,
// XAES-256-GCM, in-memory backing), splitting reads of 32 KiB and 512 KiB
// gained 10-35% of wall-clock throughput for about 40% more CPU time,
// while splitting writes lost 15-30% (the extra copy into the batch
// buffer and the fork/join cost more than the second CPU brings), hence
// the default.
type Parallelism uint8

const (
	// ParallelReads: the chunks of a read miss, with its read-ahead.
	ParallelReads Parallelism = 1 << iota
	// ParallelWrites: the write-out of the cache and the batches of the
	// whole-chunk append path (whose chunks are then copied into the batch
	// buffer and sealed there, instead of sealed from the caller's buffer).
	ParallelWrites

	ParallelNone       Parallelism = 0
	ParallelAll                    = ParallelReads | ParallelWrites
	DefaultParallelism             = ParallelReads
)

// batchChunks is the most chunks one batch seals or opens at once (512 KiB
// of plaintext): the write-out of the write-back cache, the append fast
// path's pending chunks, the read-ahead, the streams' buffers.
const batchChunks = 8

// crew seals and opens the chunks of one file, a batch at a time split over
// min(GOMAXPROCS, n) goroutines (the caller's among them), as gocryptfs does
// for large requests. Each worker has its own sealer (their AAD scratch
// differs; the AEAD itself is safe for concurrent use). A crew is not safe
// for concurrent use: its owner (a File under its mutex, a stream) calls it
// from one goroutine at a time.
type crew struct {
	ss []*sealer // ss[0] works on the caller's goroutine

	// On a busy machine a worker's thread can lose its CPU in the middle
	// of a chunk, and the batch then waits a scheduler time slice (ms)
	// for it: slower than no help at all. After such a batch the crew
	// works alone until alone, backoff doubling while it recurs; and its
	// owner takes the paths that suit one CPU (parallel).
	alone   time.Time
	backoff time.Duration
}

// Bounds of the time a crew works alone after a held-up worker.
const (
	minAlone = 20 * time.Millisecond
	maxAlone = 2 * time.Second
)

// parallel reports whether batches are split over several goroutines now:
// more than one CPU, and no held-up worker lately. Owners batch work (read
// ahead, collect chunks) only when it is.
func (c *crew) parallel() bool {
	return runtime.GOMAXPROCS(0) > 1 && (c.alone.IsZero() || time.Now().After(c.alone))
}

func newCrew(aead cipher.AEAD, fileID [32]byte) *crew {
	return &crew{ss: []*sealer{newSealer(aead, fileID)}}
}

// one returns the caller's sealer, for single chunks.
func (c *crew) one() *sealer { return c.ss[0] }

// task is a batch of chunks to seal or open: run handles chunk k with
// the sealer s of the worker it runs on. Tasks are long-lived values (a
// field of a File, a stream) so that handing one to do allocates nothing.
type task interface {
	run(s *sealer, k int)
}

// do runs t.run(s, k) for every k in [0, n), each on some worker with that
// worker's sealer s. A single chunk, GOMAXPROCS 1, !par (the owner does not
// want this kind of batch split) or a recently held-up worker keep it on
// the caller's goroutine; otherwise chunks are handed out one at a time, so a worker
// slowed down by a busy machine does not hold up the batch. do returns when
// every run has returned; t collects the results.
func (c *crew) do(n int, t task, par bool) {
	nw := min(runtime.GOMAXPROCS(0), n)
	if nw > 1 && (!par || !c.parallel()) {
		nw = 1
	}
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
	start := time.Now()
	work(c.ss[0])
	mine := time.Since(start)
	wg.Wait()
	// The caller ran chunks until none was left; a worker still busy then
	// should finish within about one chunk. Waiting longer than half the
	// caller's own share means a worker was held up.
	if waited := time.Since(start) - mine; waited > mine/2 {
		c.backoff = min(max(2*c.backoff, minAlone), maxAlone)
		c.alone = time.Now().Add(c.backoff)
	} else {
		c.backoff, c.alone = c.backoff/2, time.Time{}
	}
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
