package users

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTimingUnknownVsWrong checks statistically that a login for an unknown
// (or disabled, or key-only) user costs the same as a wrong password for an
// existing one, so names cannot be probed by timing. The classes are sampled
// interleaved in random order (so load spikes hit all of them) and their
// medians must agree within 25% of each other: a ratio, never a wall-clock
// threshold.
func TestTimingUnknownVsWrong(t *testing.T) {
	if testing.Short() {
		t.Skip("statistical timing test; skipped under -short")
	}
	// Big enough that Argon2id dominates the bbolt lookup, small enough to
	// run a few hundred times.
	db, _ := openTest(t, Options{Argon2: Argon2Params{Time: 2, Memory: 1024, Threads: 1}, Defender: DefenderOptions{Disabled: true}, CacheTTL: -1})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "right password")
	mustAdd(t, db, User{Name: "dis", Perms: PermAll, Disabled: true}, "right password")
	mustAdd(t, db, User{Name: "keyonly", Perms: PermAll}, "")

	classes := []struct{ name, user string }{
		{"wrong password", "alice"},
		{"unknown user", "nobody"},
		{"disabled user", "dis"},
		{"key-only user", "keyonly"},
	}
	// One attempt samples every class n times, interleaved in random order.
	// A machine shared with other jobs can skew one attempt, so up to three
	// are made; a real difference (e.g. skipping Argon2id for unknown
	// names, a ratio near 0) fails all three.
	const n, attempts, tol = 150, 3, 1.25
	median := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	for attempt := 1; ; attempt++ {
		samples := make([][]time.Duration, len(classes))
		order := make([]int, 0, n*len(classes))
		for i := range n * len(classes) {
			order = append(order, i%len(classes))
		}
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, c := range order {
			start := time.Now()
			_, err := db.AuthPassword(ctx, "ssh", "127.0.0.1", classes[c].user, []byte("wrong password"))
			samples[c] = append(samples[c], time.Since(start))
			if err != ErrAuthFailed {
				t.Fatalf("%s: %v", classes[c].name, err)
			}
		}
		ref := median(samples[0])
		var bad []string
		for i, c := range classes[1:] {
			m := median(samples[i+1])
			ratio := float64(m) / float64(ref)
			t.Logf("attempt %d: %s median %v, %s median %v, ratio %.3f", attempt, classes[0].name, ref, c.name, m, ratio)
			if ratio < 1/tol || ratio > tol {
				bad = append(bad, fmt.Sprintf("%s takes %.2f× a wrong password (medians %v vs %v)", c.name, ratio, m, ref))
			}
		}
		if len(bad) == 0 {
			return
		}
		if attempt == attempts {
			t.Fatalf("names can be probed by timing: %s", strings.Join(bad, "; "))
		}
	}
}
