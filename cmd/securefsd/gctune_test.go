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

// TestIdleFree drives the idle decision through a burst, a quiet period
// and a second burst, counting the frees.
func TestIdleFree(t *testing.T) {
	const floor = 200 << 20
	busy, quiet := uint64(50<<20), uint64(4<<10)
	type step struct {
		alloc, held uint64
		want        bool
	}
	steps := []step{
		{busy, 1 << 30, false}, {busy, 1 << 30, false}, // burst
		{quiet, 1 << 30, false}, {quiet, 1 << 30, false}, {quiet, 1 << 30, false}, {quiet, 1 << 30, false},
		{quiet, 1 << 30, true},                             // fifth quiet second: free
		{quiet, 1 << 30, false}, {quiet, 900 << 20, false}, // once per quiet period
		{busy, 1 << 30, false}, // activity re-arms
		{quiet, 1 << 30, false}, {quiet, 1 << 30, false}, {quiet, 1 << 30, false}, {quiet, 1 << 30, false},
		{quiet, 1 << 30, true},
		{busy, 100 << 20, false}, // below the floor: nothing to return
		{quiet, 100 << 20, false}, {quiet, 100 << 20, false}, {quiet, 100 << 20, false}, {quiet, 100 << 20, false},
		{quiet, 100 << 20, false}, {quiet, 100 << 20, false},
		{quiet, 300 << 20, true}, // grew while quiet (a slow trickle): free
	}
	var s idleFree
	frees := 0
	for i, st := range steps {
		got := s.observe(st.alloc, st.held, floor)
		if got != st.want {
			t.Errorf("step %d (alloc %d, held %d MiB): free = %v, want %v", i, st.alloc, st.held>>20, got, st.want)
		}
		if got {
			frees++
		}
	}
	if frees != 3 {
		t.Errorf("%d frees, want 3", frees)
	}
}
