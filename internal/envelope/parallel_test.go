package envelope

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// TestSplitterWorkers pins the split: a pure function of the CPUs, the
// batch size and whether the owner wants the batch split.
func TestSplitterWorkers(t *testing.T) {
	for _, tc := range []struct {
		procs, n int
		want     bool
		workers  int
	}{
		{procs: 1, n: 8, want: true, workers: 1},  // one CPU
		{procs: 2, n: 0, want: true, workers: 1},  // nothing to do
		{procs: 2, n: 1, want: true, workers: 1},  // a single chunk stays
		{procs: 2, n: 2, want: true, workers: 2},  // minSplit
		{procs: 2, n: 8, want: true, workers: 2},  // one per CPU
		{procs: 2, n: 8, want: false, workers: 1}, // owner does not want it split
		{procs: 8, n: 3, want: true, workers: 3},  // at most one per chunk
		{procs: 8, n: 8, want: true, workers: 8},
		{procs: 16, n: 8, want: true, workers: 8},
	} {
		t.Run(fmt.Sprintf("procs=%d/n=%d/want=%v", tc.procs, tc.n, tc.want), func(t *testing.T) {
			s := splitter{procs: tc.procs}
			if got := s.workers(tc.n, tc.want); got != tc.workers {
				t.Fatalf("workers = %d, want %d", got, tc.workers)
			}
			// Deterministic: the same question, the same answer.
			for range 100 {
				if got := s.workers(tc.n, tc.want); got != tc.workers {
					t.Fatalf("workers changed to %d", got)
				}
			}
			if s.parallel() != (tc.procs > 1) {
				t.Fatalf("parallel = %v", s.parallel())
			}
		})
	}
}

// countTask counts the runs of each chunk and the sealers they ran with.
type countTask struct {
	runs []atomic.Int32
}

func (c *countTask) run(s *sealer, k int) { c.runs[k].Add(1) }

// TestCrewRunsEachChunkOnce: whatever the number of goroutines, every chunk
// of a batch runs exactly once and do returns after the last.
func TestCrewRunsEachChunkOnce(t *testing.T) {
	kr := testKeyring(t)
	f, err := Create(newMem(nil), kr, Options{})
	must(t, err)
	c := f.c
	for _, nw := range []int{1, 2, 3, batchChunks} {
		for _, n := range []int{0, 1, 2, batchChunks} {
			t.Run(fmt.Sprintf("workers=%d/n=%d", nw, n), func(t *testing.T) {
				task := &countTask{runs: make([]atomic.Int32, n)}
				c.run(nw, n, task)
				for k := range n {
					if got := task.runs[k].Load(); got != 1 {
						t.Fatalf("chunk %d ran %d times", k, got)
					}
				}
				if nw > 1 && len(c.ss) < min(nw, n) {
					t.Fatalf("%d sealers for %d workers", len(c.ss), nw)
				}
			})
		}
	}
}
