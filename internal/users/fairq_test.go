package users

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestFairSemTurns: with one slot held, waiters of three sources get the
// freed slot in turn (a, b, c, a, b, a), not in arrival order.
func TestFairSemTurns(t *testing.T) {
	s := newFairSem(1)
	ctx := t.Context()
	if err := s.acquire(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queued := func(n int) func() bool {
		return func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			total := 0
			for _, q := range s.queue {
				total += len(q)
			}
			return total == n
		}
	}
	n := 0
	for _, src := range []string{"a", "a", "a", "b", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.acquire(ctx, src); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, src)
			mu.Unlock()
			s.release()
		}()
		n++
		waitUntil(t, fmt.Sprintf("%d waiters", n), queued(n)) // arrival order is fixed
	}
	s.release()
	wg.Wait()
	if got := fmt.Sprint(order); got != "[a b c a b a]" {
		t.Errorf("grant order %s, want [a b c a b a]", got)
	}
	if s.free != 1 || len(s.ring) != 0 || len(s.queue) != 0 {
		t.Errorf("after all: free %d, ring %v, queue %v", s.free, s.ring, s.queue)
	}
}

// TestFairSemCancel: waiters that give up leave the queue and never keep
// a slot, also when the slot was handed over as they gave up.
func TestFairSemCancel(t *testing.T) {
	const slots = 3
	s := newFairSem(slots)
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(t.Context())
			if i%3 == 0 {
				cancel()
			}
			err := s.acquire(ctx, fmt.Sprint(i%7))
			if err == nil {
				s.release()
			} else if !errors.Is(err, context.Canceled) {
				t.Error(err)
			}
			cancel()
		}()
	}
	wg.Wait()
	if s.free != slots || len(s.ring) != 0 || len(s.queue) != 0 {
		t.Errorf("slots leaked: free %d of %d, ring %v, queue %d", s.free, slots, s.ring, len(s.queue))
	}
}
