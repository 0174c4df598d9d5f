package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// tuneGC trades memory for CPU while the heap is small. x/crypto/ssh
// allocates every incoming packet (32 KiB for SFTP writes), so with the
// default GOGC=100 a 1 GiB upload spends 0.3-0.5 s of CPU collecting them
// (docs/PERFORMANCE.md). Instead the collector runs only near a soft limit
// of max(limitMiB, 2 x live heap) (GOGC=off plus GOMEMLIMIT, re-read every
// second): a small heap is collected rarely, and a large one still at
// GOGC=100's 2x, so a busy server never collects continuously against a
// fixed limit.
//
// With GOGC off nothing collects an idle heap: after a burst the process
// kept what the burst used (1.3 GB RSS, issue 14.12). So once the server
// has been quiet for a few seconds (see idleFree) and holds more than the
// soft limit, the memory goes back to the OS (debug.FreeOSMemory).
//
// It does nothing when limitMiB is 0 or the operator set GOGC or
// GOMEMLIMIT. It returns when ctx is done.
func tuneGC(ctx context.Context, limitMiB int, log *slog.Logger) {
	if limitMiB <= 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	base := int64(limitMiB) << 20
	debug.SetMemoryLimit(base)
	debug.SetGCPercent(-1)
	log.Debug("gc tuned", "gogc", "off", "soft_limit_mib", limitMiB)
	sample := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	cur := base
	var idle idleFree
	var lastAllocs uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(sample)
		if !allUint64(sample) {
			continue
		}
		live, allocs := sample[0].Value.Uint64(), sample[1].Value.Uint64()
		held := sample[2].Value.Uint64() - sample[3].Value.Uint64()
		if idle.observe(allocs-lastAllocs, held, uint64(base)) {
			debug.FreeOSMemory()
			metrics.Read(sample)
			log.Debug("gc: idle, memory returned to the OS", "held_before_mib", held>>20, "live_mib", sample[0].Value.Uint64()>>20)
			live = sample[0].Value.Uint64()
			allocs = sample[1].Value.Uint64()
		}
		lastAllocs = allocs
		want := max(base, 2*int64(live))
		if want != cur {
			debug.SetMemoryLimit(want)
			cur = want
		}
	}
}

func allUint64(s []metrics.Sample) bool {
	for _, x := range s {
		if x.Value.Kind() != metrics.KindUint64 {
			return false
		}
	}
	return true
}

// idleFree decides when an idle server returns memory to the OS. It sees
// one sample a second: the bytes allocated since the previous sample, and
// the bytes the runtime holds from the OS. "Idle" is an allocation rate
// below quietAllocBytes a second for idleSamples samples in a row: every
// transfer allocates (an SSH packet per 32 KiB), so no transfer of note
// runs then, and the forced collection costs nobody. It frees once per
// quiet period, and only when more than floor (the soft limit) is held:
// below that the memory is within the budget the operator gave.
type idleFree struct {
	quiet int  // samples in a row below quietAllocBytes
	freed bool // freed in this quiet period
}

const (
	idleSamples     = 5
	quietAllocBytes = 1 << 20
)

// observe records one sample and reports whether to free now.
func (s *idleFree) observe(allocated, held, floor uint64) bool {
	if allocated >= quietAllocBytes {
		s.quiet, s.freed = 0, false
		return false
	}
	s.quiet++
	if s.freed || s.quiet < idleSamples || held <= floor {
		return false
	}
	s.freed = true
	return true
}
