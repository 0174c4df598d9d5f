package users

import (
	"context"
	"sync"
)

// fairSem bounds concurrent Argon2id runs and hands free slots to waiting
// sources in turn (round robin), so one source address with hundreds of
// attempts queued cannot make everyone else wait behind all of them: a
// newcomer from another address gets one of the next slots. Sources are
// the defender's address keys ("" for local work such as hashing a new
// password). Safe for concurrent use.
type fairSem struct {
	mu    sync.Mutex
	free  int
	queue map[string][]*fairWaiter // per source, oldest first
	ring  []string                 // sources with waiters, in turn order
}

type fairWaiter struct {
	ready   chan struct{} // closed when the slot is handed over
	granted bool          // set with mu held
}

func newFairSem(slots int) *fairSem {
	return &fairSem{free: slots, queue: make(map[string][]*fairWaiter)}
}

// acquire waits for a slot for source, or until ctx ends.
func (s *fairSem) acquire(ctx context.Context, source string) error {
	s.mu.Lock()
	if s.free > 0 && len(s.ring) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	w := &fairWaiter{ready: make(chan struct{})}
	if len(s.queue[source]) == 0 {
		s.ring = append(s.ring, source)
	}
	s.queue[source] = append(s.queue[source], w)
	s.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		// Handed over while ctx ended: pass the slot on.
		s.releaseLocked()
		return ctx.Err()
	}
	q := s.queue[source]
	for i, x := range q {
		if x == w {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	s.setQueueLocked(source, q)
	return ctx.Err()
}

// release returns a slot: to the next source in turn if any waits.
func (s *fairSem) release() {
	s.mu.Lock()
	s.releaseLocked()
	s.mu.Unlock()
}

func (s *fairSem) releaseLocked() {
	if len(s.ring) == 0 {
		s.free++
		return
	}
	src := s.ring[0]
	s.ring = s.ring[1:]
	q := s.queue[src]
	w := q[0]
	q = q[1:]
	if len(q) > 0 {
		s.ring = append(s.ring, src) // back of the line for its next turn
		s.queue[src] = q
	} else {
		delete(s.queue, src)
	}
	w.granted = true
	close(w.ready)
}

// setQueueLocked stores q as source's queue, dropping source from the ring
// when it is empty.
func (s *fairSem) setQueueLocked(source string, q []*fairWaiter) {
	if len(q) > 0 {
		s.queue[source] = q
		return
	}
	delete(s.queue, source)
	for i, x := range s.ring {
		if x == source {
			s.ring = append(s.ring[:i:i], s.ring[i+1:]...)
			break
		}
	}
}
