package davd

import (
	"context"
	"sync"
)

// nameLocks gives WebDAV requests snapshot semantics on one name: GET
// holds it shared, PUT (and COPY into it) exclusive, so a download never
// sees an upload in progress (vfs shows a replacement being written to
// every Open) and an upload never truncates a file under a running
// download (vfs truncates in place when the file is open). Each request
// holds one name, or two taken in key order (COPY), so there is no
// lock-order deadlock.
// Waiting writers go first; waits end with the request's context.
// SFTP clients are not coordinated: they expect in-place semantics.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	readers, waitingWriters, refs int
	writer                        bool
	changed                       chan struct{} // closed at every release
}

func newNameLocks() *nameLocks { return &nameLocks{m: map[string]*nameLock{}} }

func (l *nameLocks) acquire(ctx context.Context, key string, write bool) (release func(), err error) {
	l.mu.Lock()
	e := l.m[key]
	if e == nil {
		e = &nameLock{changed: make(chan struct{})}
		l.m[key] = e
	}
	e.refs++
	if write {
		e.waitingWriters++
	}
	for {
		if write && !e.writer && e.readers == 0 {
			e.waitingWriters--
			e.writer = true
			break
		}
		if !write && !e.writer && e.waitingWriters == 0 {
			e.readers++
			break
		}
		ch := e.changed
		l.mu.Unlock()
		select {
		case <-ch:
			l.mu.Lock()
		case <-ctx.Done():
			l.mu.Lock()
			if write {
				e.waitingWriters--
				l.signal(e)
			}
			l.drop(key, e)
			l.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if write {
				e.writer = false
			} else {
				e.readers--
			}
			l.signal(e)
			l.drop(key, e)
			l.mu.Unlock()
		})
	}, nil
}

// signal wakes every waiter. Caller holds l.mu.
func (l *nameLocks) signal(e *nameLock) {
	close(e.changed)
	e.changed = make(chan struct{})
}

// drop forgets e when nobody holds or waits for it. Caller holds l.mu.
func (l *nameLocks) drop(key string, e *nameLock) {
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
}

// acquirePair holds src shared and dst exclusive (COPY of one file),
// acquiring in key order.
func (l *nameLocks) acquirePair(ctx context.Context, src, dst string) (release func(), err error) {
	first, firstW, second, secondW := src, false, dst, true
	if dst < src {
		first, firstW, second, secondW = dst, true, src, false
	}
	r1, err := l.acquire(ctx, first, firstW)
	if err != nil {
		return nil, err
	}
	r2, err := l.acquire(ctx, second, secondW)
	if err != nil {
		r1()
		return nil, err
	}
	return func() { r2(); r1() }, nil
}
