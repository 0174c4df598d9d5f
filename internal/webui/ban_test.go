package webui

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/users"
)

// TestBannedLoginLooksLikeFailure performs issue 14 item 12's probe: a
// banned sign-in must answer exactly like a wrong password (status, page,
// headers) and be paced like one, through the defender's own Sleep, so the
// ban shows neither in the answer nor in its timing.
func TestBannedLoginLooksLikeFailure(t *testing.T) {
	var mu sync.Mutex
	var sleeps []time.Duration
	f := newFixture(t, func(u *users.Options, _ *Options) {
		u.Defender.AddrThreshold = 3
		u.Defender.DelayAfter = 5 // no delays before the ban: only the pacing sleeps
		u.Defender.BanTime = time.Hour
		u.Defender.Sleep = func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			sleeps = append(sleeps, d)
			mu.Unlock()
			return ctx.Err()
		}
	})
	f.addUser("alice", "alice-password", users.PermAll, 0)
	c := f.client()
	var failure resp
	for range 3 {
		failure = c.loginResp("alice", "wrong")
	}
	if n := len(sleeps); n != 0 {
		t.Fatalf("%d sleeps before the ban", n)
	}
	if !f.db.Banned("127.0.0.1") {
		t.Fatal("address not banned after 3 failures")
	}
	banned := c.loginResp("alice", "alice-password")
	if banned.StatusCode != http.StatusUnauthorized || banned.StatusCode != failure.StatusCode {
		t.Errorf("banned status %d, failure %d", banned.StatusCode, failure.StatusCode)
	}
	if banned.body != failure.body {
		t.Errorf("banned page differs from a failure's:\n%s\n---\n%s", banned.body, failure.body)
	}
	for _, h := range []string{"Content-Type", "Set-Cookie", "Cache-Control", "Content-Length"} {
		if a, b := banned.Header.Values(h), failure.Header.Values(h); len(a) != len(b) || (len(a) > 0 && a[0] != b[0]) {
			t.Errorf("header %s: banned %q, failure %q", h, a, b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// One pacing wait: the defender's delay at the threshold (8s by
	// default) plus the average time of a real check.
	if len(sleeps) != 1 || sleeps[0] < 8*time.Second {
		t.Errorf("banned login paced by %v, want one wait of at least 8s", sleeps)
	}
}
