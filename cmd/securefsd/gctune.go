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
// fixed limit. It does nothing when limitMiB is 0 or the operator set GOGC
// or GOMEMLIMIT. It returns when ctx is done.
func tuneGC(ctx context.Context, limitMiB int, log *slog.Logger) {
	if limitMiB <= 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	base := int64(limitMiB) << 20
	debug.SetMemoryLimit(base)
	debug.SetGCPercent(-1)
	log.Debug("gc tuned", "gogc", "off", "soft_limit_mib", limitMiB)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	cur := base
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			continue
		}
		want := max(base, 2*int64(sample[0].Value.Uint64()))
		if want != cur {
			debug.SetMemoryLimit(want)
			cur = want
		}
	}
}
