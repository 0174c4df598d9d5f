package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: GOGC=off under a soft limit, unless the operator set GOGC
// (or GOMEMLIMIT) or the limit is 0. Not parallel: GC settings are the
// process's.
func TestTuneGC(t *testing.T) {
	restore := func() { debug.SetGCPercent(100); debug.SetMemoryLimit(math.MaxInt64) }
	t.Cleanup(restore)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	tuneGC(done, 200, log)
	if old := debug.SetGCPercent(100); old != -1 {
		t.Errorf("GOGC %d, want off (-1)", old)
	}
	if lim := debug.SetMemoryLimit(-1); lim != 200<<20 {
		t.Errorf("memory limit %d, want %d", lim, 200<<20)
	}
	restore()
	for _, env := range [][2]string{{"GOGC", "150"}, {"GOMEMLIMIT", "1GiB"}} {
		t.Setenv(env[0], env[1])
		tuneGC(done, 200, log)
		if old := debug.SetGCPercent(100); old != 100 {
			t.Errorf("%s=%s: GOGC changed to %d", env[0], env[1], old)
		}
		t.Setenv(env[0], "")
	}
	tuneGC(done, 0, log)
	if old := debug.SetGCPercent(100); old != 100 {
		t.Errorf("--memory-limit 0: GOGC changed to %d", old)
	}
}
