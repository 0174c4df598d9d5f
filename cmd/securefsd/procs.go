package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"
)

// tuneProcs sets how many CPUs Go runs the server's goroutines on at once
// (GOMAXPROCS), from serve --procs:
//
//   - "auto" (the default): adapt to the load, between 1 and what Go chose
//     at start (the CPUs, or the container's CPU limit). A client that moves
//     small files, or reads and writes 4 KiB at a time, waits for every
//     answer: the server is busy in short bursts and idle in between. With
//     more than one processor Go wakes a second thread for nearly every
//     goroutine a request passes through (x/crypto's packet reader, its
//     connection loop, the SFTP server, the connection writer); it finds
//     nothing to do and sleeps again. On this project's 2-CPU machine that
//     was about half of the server's context switches and a third of its
//     CPU per small download, taken from the clients' CPU
//     (docs/PERFORMANCE.md, "One processor while the load is light";
//     golang/go#49679 describes the same for net/http). So while the server
//     would fit on fewer processors it runs on fewer (after a second), and
//     as soon as goroutines wait for a processor while it is busy, it gets
//     all of them back (within procsSample). See procsPolicy.
//   - "0": leave Go's own setting alone.
//   - N: exactly N.
//
// It does nothing when the operator set GOMAXPROCS, and, for "auto", on a
// single CPU or where the process's CPU time cannot be read (cpuTime). With
// "auto" it returns when ctx is done, with GOMAXPROCS back at Go's choice.
func tuneProcs(ctx context.Context, set procsSetting, log *slog.Logger) {
	if set.mode == procsGo || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	initial := runtime.GOMAXPROCS(0)
	if set.mode == procsFixed {
		runtime.GOMAXPROCS(set.n)
		log.Debug("gomaxprocs fixed", "procs", set.n)
		return
	}
	lastCPU, ok := cpuTime()
	if initial < 2 || !ok {
		return
	}
	defer runtime.GOMAXPROCS(initial)
	log.Debug("gomaxprocs adapts to the load", "max", initial)
	p := procsPolicy{max: initial, cur: initial}
	var waits schedWaits
	waits.read()
	tick := time.NewTicker(procsSample)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			cpu, ok := cpuTime()
			wall := now.Sub(last)
			if !ok || wall <= 0 {
				continue
			}
			busy := float64(cpu-lastCPU) / float64(wall)
			waited := waits.read()
			lastCPU, last = cpu, now
			old := p.cur
			if n := p.observe(busy, waited); n != old {
				runtime.GOMAXPROCS(n)
				log.Debug("gomaxprocs adapted", "procs", n, "was", old, "cpus_busy", fmt.Sprintf("%.2f", busy), "waited", fmt.Sprintf("%.2f", waited))
			}
		}
	}
}

// procsSetting is a parsed --procs.
type procsSetting struct {
	mode procsMode
	n    int // procsFixed: the number
}

type procsMode int

const (
	procsAuto procsMode = iota
	procsGo
	procsFixed
)

// parseProcs parses --procs: auto, 0 or a number of CPUs.
func parseProcs(s string) (procsSetting, error) {
	if s == "auto" {
		return procsSetting{mode: procsAuto}, nil
	}
	n, err := strconv.Atoi(s)
	switch {
	case err != nil || n < 0:
		return procsSetting{}, fmt.Errorf("--procs %q: want auto, 0 (Go's default) or a number of CPUs", s)
	case n == 0:
		return procsSetting{mode: procsGo}, nil
	}
	return procsSetting{mode: procsFixed, n: n}, nil
}

const (
	// procsSample is how often the load is read: a transfer that needs
	// more processors waits at most about this long for them.
	procsSample = 100 * time.Millisecond
	// Up: goroutines waited for a processor (waitedShare of the window's
	// scheduling delays were longWait or more) while the process used at
	// least upBusy of a CPU per processor it has: it gets all of them
	// back. Short bursts of a light load (a login, a commit) use as much
	// CPU but nothing waits long; on one processor a saturated transfer
	// shows waits of milliseconds in most samples.
	upBusy      = 0.8
	longWait    = time.Millisecond
	waitedShare = 0.1
	// Down: the process used less than downBusy of a CPU per processor it
	// would keep for downSamples samples in a row (a second). A single
	// client moving small files or 4 KiB blocks used 0.5-0.85 of a CPU
	// with two processors and 0.4-0.75 with one, with nothing waiting, so
	// it settles on one.
	downBusy    = 0.9
	downSamples = 10
)

// procsPolicy picks GOMAXPROCS from each sample of the load: the CPU the
// process used (user and system time over wall time, in CPUs) and the
// share of scheduling delays that were long (schedWaits).
type procsPolicy struct {
	max, cur int
	low      int // samples in a row that wanted fewer than cur
	lowWant  int // the most any of them wanted
}

// observe records one sample and returns the GOMAXPROCS to run with.
func (p *procsPolicy) observe(busy, waited float64) int {
	if p.cur < p.max && busy >= upBusy*float64(p.cur) && waited >= waitedShare {
		p.cur, p.low = p.max, 0
		return p.cur
	}
	want := min(p.max, max(1, int(math.Ceil(busy/downBusy))))
	if want >= p.cur {
		p.low = 0
		return p.cur
	}
	if p.low == 0 || want > p.lowWant {
		p.lowWant = want
	}
	p.low++
	if p.low >= downSamples {
		p.cur, p.low = p.lowWant, 0
	}
	return p.cur
}

// schedWaits reads how long runnable goroutines waited for a processor
// (runtime/metrics /sched/latencies:seconds, a histogram the runtime
// samples).
type schedWaits struct {
	s    [1]metrics.Sample
	prev []uint64
}

// read returns the share of the delays recorded since the previous read
// that were longWait or more (0 if none were recorded).
func (w *schedWaits) read() float64 {
	w.s[0].Name = "/sched/latencies:seconds"
	metrics.Read(w.s[:])
	if w.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := w.s[0].Value.Float64Histogram()
	var all, long uint64
	for i, c := range h.Counts {
		if i < len(w.prev) {
			c -= w.prev[i]
		}
		all += c
		if h.Buckets[i] >= longWait.Seconds() {
			long += c
		}
	}
	w.prev = append(w.prev[:0], h.Counts...)
	if all == 0 {
		return 0
	}
	return float64(long) / float64(all)
}
