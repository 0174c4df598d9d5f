package admin

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/users"
)

// fakeSessions is a SessionSource with fixed sessions that records kills.
type fakeSessions struct {
	mu   sync.Mutex
	live []SessionInfo
}

func (f *fakeSessions) Sessions(context.Context) ([]SessionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]SessionInfo(nil), f.live...), nil
}

func (f *fakeSessions) end(match func(SessionInfo) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	kept := f.live[:0]
	for _, s := range f.live {
		if match(s) {
			n++
			continue
		}
		kept = append(kept, s)
	}
	f.live = kept
	return n
}

func (f *fakeSessions) KillSession(_ context.Context, id string) (bool, error) {
	return f.end(func(s SessionInfo) bool { return s.ID == id }) > 0, nil
}

func (f *fakeSessions) KillUserSessions(_ context.Context, user string) (int, error) {
	return f.end(func(s SessionInfo) bool { return s.User == user }), nil
}

// TestSessionsLocalAndSocket: sessions of every source are listed oldest
// first, locally and over the socket; one is ended by id, the rest of a
// user's by name; an unknown id is ErrNotFound; without a server (no
// sources) the operations say ErrNoServer.
func TestSessionsLocalAndSocket(t *testing.T) {
	l, dir := newLocal(t)
	ctx := t.Context()
	if _, err := l.ListSessions(ctx); !errors.Is(err, ErrNoServer) {
		t.Fatalf("no sources: %v", err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ssh := &fakeSessions{live: []SessionInfo{{ID: "ssh-2", User: "alice", Proto: "ssh", Start: t0.Add(time.Minute)}, {ID: "ssh-1", User: "bob", Proto: "ssh", Start: t0}}}
	web := &fakeSessions{live: []SessionInfo{{ID: "web-1", User: "alice", Proto: "web", Start: t0.Add(2 * time.Minute)}}}
	l.Sessions = []SessionSource{ssh, web}
	c := serveSocket(t, l, dir)
	for _, m := range []SessionManager{l, c} {
		ss, err := m.ListSessions(ctx)
		if err != nil || len(ss) != 3 || ss[0].ID != "ssh-1" || ss[2].ID != "web-1" {
			t.Fatalf("%T list: %+v %v", m, ss, err)
		}
	}
	if err := c.KillSession(ctx, "ssh-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.KillSession(ctx, "ssh-1"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("kill twice: %v", err)
	}
	if n, err := c.KillUserSessions(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("kill alice: %d %v", n, err)
	}
	if ss, _ := c.ListSessions(ctx); len(ss) != 0 {
		t.Fatalf("left: %+v", ss)
	}
	if _, err := l.KillUserSessions(ctx, "../x"); !errors.Is(err, users.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
}
