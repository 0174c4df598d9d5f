package main

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// TestProcsPolicy: a light load settles on fewer processors after a second
// of samples; a busy one whose goroutines wait gets all of them back at the
// first sample; a busy one whose goroutines do not wait keeps what it has.
func TestProcsPolicy(t *testing.T) {
	feed := func(p *procsPolicy, busy, waited float64, n int) int {
		var cur int
		for range n {
			cur = p.observe(busy, waited)
		}
		return cur
	}
	p := procsPolicy{max: 2, cur: 2}
	if got := feed(&p, 0.5, 0, downSamples-1); got != 2 {
		t.Fatalf("after %d light samples: %d processors, want 2 (not yet)", downSamples-1, got)
	}
	if got := feed(&p, 0.5, 0, 1); got != 1 {
		t.Fatalf("after %d light samples: %d processors, want 1", downSamples, got)
	}
	if got := feed(&p, 0.95, 0, 5); got != 1 {
		t.Fatalf("busy on one processor, nothing waiting: %d, want 1", got)
	}
	if got := feed(&p, 0.5, 0.5, 1); got != 1 {
		t.Fatalf("waits but half a CPU busy: %d, want 1", got)
	}
	if got := feed(&p, 0.95, 0.3, 1); got != 2 {
		t.Fatalf("saturated on one processor: %d, want 2 at once", got)
	}
	// A busy sample in a light streak starts the streak again.
	feed(&p, 0.2, 0, downSamples-1)
	feed(&p, 1.9, 0, 1)
	if got := feed(&p, 0.2, 0, downSamples-1); got != 2 {
		t.Fatalf("light streak interrupted by a busy sample: %d, want 2", got)
	}

	// Eight CPUs: 2.5 busy wants ceil(2.5/downBusy) = 3; the most any
	// sample of the streak wanted wins.
	p = procsPolicy{max: 8, cur: 8}
	feed(&p, 1.0, 0, downSamples-1)
	if got := feed(&p, 2.5, 0, 1); got != 3 {
		t.Fatalf("8 CPUs, streak wanting up to 3: %d", got)
	}
	if got := feed(&p, 2.9, 0.2, 1); got != 8 {
		t.Fatalf("2.9 busy on 3 processors, goroutines waiting: %d, want all 8", got)
	}
}

func TestParseProcs(t *testing.T) {
	for in, want := range map[string]procsSetting{
		"auto": {mode: procsAuto},
		"0":    {mode: procsGo},
		"3":    {mode: procsFixed, n: 3},
	} {
		got, err := parseProcs(in)
		if err != nil || got != want {
			t.Errorf("parseProcs(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "many", "1.5"} {
		if _, err := parseProcs(in); err == nil {
			t.Errorf("parseProcs(%q): no error", in)
		}
	}
}

// TestTuneProcsIdle: an idle process running tuneProcs auto drops to one
// processor within a few seconds and gets its setting back when ctx ends.
func TestTuneProcsIdle(t *testing.T) {
	if _, ok := cpuTime(); !ok {
		t.Skip("CPU time not readable on this system")
	}
	t.Setenv("GOMAXPROCS", "") // tuneProcs leaves an operator's GOMAXPROCS alone
	old := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(old)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tuneProcs(ctx, procsSetting{mode: procsAuto}, slog.New(slog.DiscardHandler))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("idle for 10 s: GOMAXPROCS still 2")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if n := runtime.GOMAXPROCS(0); n != 2 {
		t.Fatalf("after ctx ended: GOMAXPROCS %d, want 2 back", n)
	}
}
