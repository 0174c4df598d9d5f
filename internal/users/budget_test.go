package users

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// waitUntil polls cond until it holds, failing the test after 30s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// inflight is the number of admitted, unsettled checks of key, and the
// number of attempts parked in begin.
func (d *defender) inflightOf(key string) (inflight, waiters int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.entries[key]; e != nil {
		inflight = e.inflight
	}
	return inflight, d.waiters
}

// verifyCounter is an onVerify hook that counts verifications per host
// and holds each one until the gate opens.
type verifyCounter struct {
	gate  chan struct{}
	mu    sync.Mutex
	n     map[string]int
	order []string
}

func newVerifyCounter() *verifyCounter {
	return &verifyCounter{gate: make(chan struct{}), n: map[string]int{}}
}

func (v *verifyCounter) hook(remote string) {
	<-v.gate
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	v.mu.Lock()
	v.n[host]++
	v.order = append(v.order, host)
	v.mu.Unlock()
}

func (v *verifyCounter) count(host string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n[host]
}

// TestParallelGuessesBudget performs the attack of issue 14 item 1: 100
// parallel password guesses from one address, the right password among
// them, sent while the address's budget is taken by guesses in flight.
// Exactly AddrThreshold (10) Argon2id checks may run for that address; the
// right password, arriving after the budget was taken, is refused with
// ErrBanned once the ten wrong ones have failed. The old code checked all
// 100 and accepted the right one.
func TestParallelGuessesBudget(t *testing.T) {
	db, _ := openTest(t, Options{MaxConcurrentHashes: 4, Defender: DefenderOptions{
		AddrThreshold: 10, UserThreshold: 30, Sleep: (&sleepRecorder{}).Sleep,
	}})
	mustAdd(t, db, User{Name: "alice"}, "right-pw")
	vc := newVerifyCounter()
	db.onVerify = vc.hook
	ctx := t.Context()

	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	try := func(i int, pw string) {
		defer wg.Done()
		_, err := db.AuthPassword(ctx, "dav", fmt.Sprintf("10.0.0.1:%d", 1000+i), "alice", []byte(pw))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			results["ok"]++
		case errors.Is(err, ErrBanned):
			results["banned"]++
		case errors.Is(err, ErrAuthFailed):
			results["failed"]++
		default:
			results[err.Error()]++
		}
	}
	for i := range 99 {
		wg.Add(1)
		go try(i, fmt.Sprintf("wrong-%d", i))
	}
	waitUntil(t, "10 checks admitted and 89 attempts waiting", func() bool {
		in, w := db.def.inflightOf("a:10.0.0.1")
		return in == 10 && w == 89
	})
	wg.Add(1)
	go try(99, "right-pw")
	waitUntil(t, "the right password waiting too", func() bool {
		_, w := db.def.inflightOf("a:10.0.0.1")
		return w == 90
	})
	close(vc.gate)
	wg.Wait()
	if got := vc.count("10.0.0.1"); got != 10 {
		t.Errorf("%d Argon2id checks for the attacking address, want 10", got)
	}
	if results["ok"] != 0 || results["failed"] != 10 || results["banned"] != 90 {
		t.Errorf("results %v, want 10 failed, 90 banned, none accepted", results)
	}
	if !db.Banned("10.0.0.1") {
		t.Error("address not banned")
	}
}

// TestParallelGuessesNameBudget: 100 parallel guesses for one name from
// 100 addresses run at most UserThreshold (30) checks.
func TestParallelGuessesNameBudget(t *testing.T) {
	db, _ := openTest(t, Options{MaxConcurrentHashes: 4, Defender: DefenderOptions{
		AddrThreshold: 10, UserThreshold: 30, Sleep: (&sleepRecorder{}).Sleep,
	}})
	mustAdd(t, db, User{Name: "carol"}, "right-pw")
	vc := newVerifyCounter()
	db.onVerify = vc.hook
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db.AuthPassword(t.Context(), "ssh", fmt.Sprintf("10.1.%d.%d:22", i/200, i%200), "carol", []byte("wrong"))
		}()
	}
	waitUntil(t, "30 checks admitted and 70 waiting", func() bool {
		in, w := db.def.inflightOf("u:carol")
		return in == 30 && w == 70
	})
	close(vc.gate)
	wg.Wait()
	if n := db.verifies.Load(); n != 30 {
		t.Errorf("%d Argon2id checks for one name, want 30", n)
	}
	if _, err := db.AuthPassword(t.Context(), "ssh", "10.2.0.1:22", "carol", []byte("right-pw")); !errors.Is(err, ErrBanned) {
		t.Errorf("right password after the name ban: %v, want ErrBanned", err)
	}
}

// TestParallelHonestBurst: a client's parallel first requests with the
// right password all succeed; those that waited hit the cache.
func TestParallelHonestBurst(t *testing.T) {
	db, _ := openTest(t, Options{Defender: DefenderOptions{AddrThreshold: 4, Sleep: (&sleepRecorder{}).Sleep}})
	mustAdd(t, db, User{Name: "alice"}, "pw")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.AuthPassword(t.Context(), "dav", fmt.Sprintf("10.0.0.1:%d", i), "alice", []byte("pw"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("honest parallel login: %v", err)
		}
	}
	if n := db.verifies.Load(); n > 16 {
		t.Errorf("%d verifications", n)
	}
}

// TestFloodFairness: 300 parallel bogus logins (unknown names) from one
// address that is never banned (safelisted, so nothing caps it) queue for
// Argon2id; a login from another address gets the second free slot, not
// the 301st. The old code's FIFO semaphore served the flood first.
func TestFloodFairness(t *testing.T) {
	db, _ := openTest(t, Options{MaxConcurrentHashes: 1, Defender: DefenderOptions{
		Sleep:    (&sleepRecorder{}).Sleep,
		Safelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")},
	}})
	mustAdd(t, db, User{Name: "bob"}, "bob-pw")
	vc := newVerifyCounter()
	db.onVerify = vc.hook
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db.AuthPassword(ctx, "dav", fmt.Sprintf("192.0.2.1:%d", 1000+i), fmt.Sprintf("ghost%d", i), []byte("x"))
		}()
	}
	queued := func(src string) int {
		db.sem.mu.Lock()
		defer db.sem.mu.Unlock()
		return len(db.sem.queue[src])
	}
	// One flood attempt holds the slot (in the gated hook), 299 queue.
	waitUntil(t, "the flood queued", func() bool { return queued("a:192.0.2.1") == 299 })
	done := make(chan error, 1)
	go func() {
		_, err := db.AuthPassword(t.Context(), "dav", "10.0.0.2:5", "bob", []byte("bob-pw"))
		done <- err
	}()
	waitUntil(t, "bob queued", func() bool { return queued("a:10.0.0.2") == 1 })
	close(vc.gate)
	if err := <-done; err != nil {
		t.Fatalf("bob during the flood: %v", err)
	}
	cancel() // the rest of the flood gives up
	wg.Wait()
	pos := slices.Index(vc.order, "10.0.0.2")
	// bob's check is the third at most: the one holding the slot, the
	// flood's next turn, then bob's.
	if pos > 2 {
		t.Errorf("bob's check ran after %d flood checks, want at most 2", pos)
	}
	t.Logf("bob verified as check #%d of the flood's %d", pos+1, vc.count("192.0.2.1"))
}

// TestUnknownNamesScore: failures with names that do not exist, or are not
// even valid names, ban the address like any other.
func TestUnknownNamesScore(t *testing.T) {
	db, _ := openTest(t, Options{Defender: DefenderOptions{AddrThreshold: 4, Sleep: (&sleepRecorder{}).Sleep}})
	for i, name := range []string{"ghost1", "Not A Name", "ghost2", "x y"} {
		if _, err := db.AuthPassword(t.Context(), "ssh", fmt.Sprintf("10.0.0.8:%d", i), name, []byte("pw")); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("%q: %v", name, err)
		}
	}
	if !db.Banned("10.0.0.8") {
		t.Error("unknown-name failures did not ban the address")
	}
}

// TestNameBanLockout performs issue 14 item 3: guesses from anywhere ban
// alice's name, but her key logins and her password logins from an
// address she logged in from before still work; others are refused.
func TestNameBanLockout(t *testing.T) {
	db, _ := openTest(t, Options{Defender: DefenderOptions{AddrThreshold: 100, UserThreshold: 5, Sleep: (&sleepRecorder{}).Sleep}})
	ctx := t.Context()
	pk, line := newKey(t, "")
	mustAdd(t, db, User{Name: "alice", Keys: []Key{{Line: line}}}, "alice-pw")
	if _, err := db.AuthPassword(ctx, "dav", "198.51.100.7:1", "alice", []byte("alice-pw")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		db.AuthPassword(ctx, "dav", fmt.Sprintf("203.0.113.%d:1", i), "alice", []byte("guess"))
	}
	if bans := db.Bans(); len(bans) != 1 || bans[0].Kind != "user" {
		t.Fatalf("bans = %v, want alice's name", bans)
	}
	if _, err := db.AuthPassword(ctx, "dav", "203.0.113.50:1", "alice", []byte("alice-pw")); !errors.Is(err, ErrBanned) {
		t.Errorf("right password from a new address = %v, want ErrBanned", err)
	}
	db.cache = nil // a fresh check, not the cache
	if _, err := db.AuthPassword(ctx, "dav", "198.51.100.7:2", "alice", []byte("alice-pw")); err != nil {
		t.Errorf("right password from alice's known address = %v, want success", err)
	}
	if _, err := db.AuthKey(ctx, "ssh", "203.0.113.60:1", "alice", pk); err != nil {
		t.Errorf("key login from a new address during the name ban = %v, want success", err)
	}
	// Only a few addresses are remembered: the oldest is forgotten.
	for i := range knownPerUser {
		db.AuthKey(ctx, "ssh", fmt.Sprintf("192.0.2.%d:1", i), "alice", pk)
	}
	if _, err := db.AuthPassword(ctx, "dav", "198.51.100.7:3", "alice", []byte("alice-pw")); !errors.Is(err, ErrBanned) {
		t.Errorf("forgotten address = %v, want ErrBanned", err)
	}
}

// TestPaceRefusal: a refusal is paced like a failure at the threshold, by
// the same Sleep the defender's delays use, without an Argon2id check.
func TestPaceRefusal(t *testing.T) {
	sl := &sleepRecorder{}
	db, _ := openTest(t, Options{Defender: DefenderOptions{Delay: time.Second, MaxDelay: 8 * time.Second, Sleep: sl.Sleep}})
	if err := db.PaceRefusal(t.Context()); err != nil {
		t.Fatal(err)
	}
	d := sl.take()
	if len(d) != 1 || d[0] <= 8*time.Second || time.Duration(db.verifyCost.Load()) != d[0]-8*time.Second {
		t.Errorf("paced %v, want 8s + the average check time %v", d, time.Duration(db.verifyCost.Load()))
	}
	if db.verifies.Load() != 0 {
		t.Error("PaceRefusal counted as a password check")
	}
}
