package users

import (
	"context"
	"errors"
	"fmt"
	"github.com/securefsd/securefsd/internal/testutil"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = testutil.SyncBuffer

func TestDefender(t *testing.T) {
	clk := newClock()
	sl := &sleepRecorder{}
	logs := &syncBuffer{}
	rec := testutil.NewLogs().Tee(slog.NewTextHandler(logs, nil))
	db, _ := openTest(t, Options{
		Now:    clk.Now,
		Logger: rec.Logger(),
		Defender: DefenderOptions{
			AddrThreshold: 5, UserThreshold: 8, BanTime: 10 * time.Minute, Window: 5 * time.Minute,
			DelayAfter: 2, Delay: time.Second, MaxDelay: 4 * time.Second, Sleep: sl.Sleep,
		},
	})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice"}, "secret-pw")
	mustAdd(t, db, User{Name: "bob"}, "bobpw")
	auth := func(remote, name, pw string) error {
		_, err := db.AuthPassword(ctx, "ssh", remote, name, []byte(pw))
		return err
	}

	// Failures 1..5 from one address: no delay for the first two, then
	// 1s, 2s, 4s; the fifth failure bans.
	var delays []time.Duration
	for i := range 5 {
		if err := auth(fmt.Sprintf("10.0.0.1:%d", 4000+i), "alice", "wrong"); err != ErrAuthFailed {
			t.Fatalf("failure %d: %v", i+1, err)
		}
		delays = append(delays, sl.take()...)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Errorf("delays = %v, want %v", delays, want)
	}
	if !db.Banned("10.0.0.1:9999") || !db.Banned("10.0.0.1") || db.Banned("10.0.0.2") {
		t.Error("Banned does not reflect the address ban")
	}
	before := db.verifies.Load()
	if err := auth("10.0.0.1:1", "alice", "secret-pw"); !errors.Is(err, ErrBanned) {
		t.Errorf("banned address, right password = %v, want ErrBanned", err)
	}
	if err := auth("10.0.0.1:1", "bob", "bobpw"); !errors.Is(err, ErrBanned) {
		t.Errorf("banned address, other user = %v, want ErrBanned", err)
	}
	pk, line := newKey(t, "")
	db.AddKey(ctx, "bob", line)
	if _, err := db.AuthKey(ctx, "ssh", "10.0.0.1:1", "bob", pk); !errors.Is(err, ErrBanned) {
		t.Errorf("banned address, key = %v, want ErrBanned", err)
	}
	if db.verifies.Load() != before {
		t.Error("credentials were checked for a banned address")
	}
	if bans := rec.Match(func(r testutil.Record) bool { return r.Attr("event") == EventBanned }); len(bans) != 1 ||
		bans[0].Attr("address") != "10.0.0.1" || bans[0].Level != slog.LevelWarn {
		t.Errorf("ban not logged once, as a warning, with its address: %s", rec.Dump())
	}
	if rec.AnyText("secret-pw") || rec.AnyText("wrong") {
		t.Errorf("log contains a password: %s", rec.Dump())
	}

	// Another address: alice has 5 user failures (< 8), bob none.
	if err := auth("10.0.0.2:1", "bob", "bobpw"); err != nil {
		t.Errorf("other address, other user: %v", err)
	}
	if err := auth("10.0.0.3:1", "alice", "secret-pw"); err != nil {
		t.Errorf("other address, same user: %v", err)
	}
	sl.take()

	// The ban ends after BanTime; successes did not lift it earlier.
	clk.Advance(10*time.Minute - time.Second)
	if !db.Banned("10.0.0.1") {
		t.Error("ban lifted early")
	}
	clk.Advance(time.Second)
	if db.Banned("10.0.0.1") {
		t.Error("ban not lifted after BanTime")
	}
	if err := auth("10.0.0.1:1", "alice", "secret-pw"); err != nil {
		t.Errorf("after ban: %v", err)
	}
	if d := sl.take(); len(d) != 0 {
		t.Errorf("delays after ban ended (failures expired): %v", d)
	}
}

func TestDefenderUserBan(t *testing.T) {
	clk := newClock()
	sl := &sleepRecorder{}
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{AddrThreshold: 5, UserThreshold: 8, Sleep: sl.Sleep}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice"}, "pw")
	mustAdd(t, db, User{Name: "bob"}, "pw")
	// A distributed guess: 8 addresses, one failure each, bans the name.
	for i := range 8 {
		db.AuthPassword(ctx, "dav", fmt.Sprintf("192.0.2.%d:80", i), "alice", []byte("x"))
	}
	if _, err := db.AuthPassword(ctx, "dav", "198.51.100.1:80", "alice", []byte("pw")); !errors.Is(err, ErrBanned) {
		t.Errorf("banned name from a fresh address = %v, want ErrBanned", err)
	}
	if _, err := db.AuthPassword(ctx, "dav", "198.51.100.1:80", "bob", []byte("pw")); err != nil {
		t.Errorf("other user: %v", err)
	}
	if db.Banned("192.0.2.1") {
		t.Error("a name ban banned an address")
	}
	// Unknown names are scored too (same behaviour as existing ones, so a
	// ban does not reveal which names exist).
	for i := range 8 {
		db.AuthPassword(ctx, "dav", fmt.Sprintf("203.0.113.%d:80", i), "ghost", []byte("x"))
	}
	if _, err := db.AuthPassword(ctx, "dav", "198.51.100.1:80", "ghost", []byte("x")); !errors.Is(err, ErrBanned) {
		t.Errorf("unknown name = %v, want ErrBanned", err)
	}
}

func TestDefenderWindow(t *testing.T) {
	clk := newClock()
	sl := &sleepRecorder{}
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{AddrThreshold: 3, Window: time.Minute, Sleep: sl.Sleep}})
	mustAdd(t, db, User{Name: "alice"}, "pw")
	// Two failures a minute apart never reach three within the window.
	for range 10 {
		db.AuthPassword(t.Context(), "ssh", "10.0.0.9", "alice", []byte("x"))
		clk.Advance(31 * time.Second)
	}
	if db.Banned("10.0.0.9") {
		t.Error("failures spread over time banned the address")
	}
	for range 3 {
		db.AuthPassword(t.Context(), "ssh", "10.0.0.9", "alice", []byte("x"))
	}
	if !db.Banned("10.0.0.9") {
		t.Error("3 failures within the window did not ban")
	}
}

func TestDefenderKeysAndFailed(t *testing.T) {
	db, _ := openTest(t, Options{Defender: DefenderOptions{AddrThreshold: 3, Sleep: (&sleepRecorder{}).Sleep}})
	ctx := t.Context()
	_, line := newKey(t, "")
	other, _ := newKey(t, "")
	mustAdd(t, db, User{Name: "alice", Keys: []Key{{Line: line}}}, "")
	for range 20 {
		if _, err := db.AuthKey(ctx, "ssh", "10.0.0.5:22", "alice", other); err != ErrAuthFailed {
			t.Fatal(err)
		}
	}
	if db.Banned("10.0.0.5") {
		t.Error("key probes banned the address")
	}
	for range 3 {
		db.Failed("ssh", "10.0.0.5:22", "alice")
	}
	if !db.Banned("10.0.0.5") {
		t.Error("3 failed connections did not ban")
	}
}

func TestDefenderDelayHonoursContext(t *testing.T) {
	entered := make(chan struct{})
	sleep := func(ctx context.Context, d time.Duration) error {
		close(entered)
		return sleepCtx(ctx, d) // the real timer: an hour unless ctx ends
	}
	db, _ := openTest(t, Options{Defender: DefenderOptions{DelayAfter: 1, Delay: time.Hour, MaxDelay: time.Hour, Sleep: sleep}})
	mustAdd(t, db, User{Name: "alice"}, "pw")
	// The first failure is free; the second attempt must wait an hour.
	db.def.fail("ssh", "10.0.0.7", "alice", 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := db.AuthPassword(ctx, "ssh", "10.0.0.7", "alice", []byte("pw"))
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if db.verifies.Load() != 0 {
		t.Error("credentials checked although the delay was cut short")
	}
}

func TestAddrKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1:22", "a:192.0.2.1"},
		{"192.0.2.1", "a:192.0.2.1"},
		{"[::ffff:192.0.2.1]:22", "a:192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:22", "a:2001:db8:1:2::/64"},
		{"2001:db8:1:2::9", "a:2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:22", "a:fe80::/64"},
		{"@", "a:@"},
	}
	for _, tt := range tests {
		if got := addrKey(tt.in); got != tt.want {
			t.Errorf("addrKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDefenderBounded(t *testing.T) {
	clk := newClock()
	d := newDefender(DefenderOptions{MaxEntries: 10, AddrThreshold: 2, UserThreshold: 100}, clk.Now, slog.New(slog.DiscardHandler))
	for i := range 100 {
		d.fail("ssh", fmt.Sprintf("10.1.%d.%d", i/256, i%256), "", 1)
		if len(d.entries) > 10 {
			t.Fatalf("%d entries, bound 10", len(d.entries))
		}
	}
	// Bans survive eviction pressure.
	d.fail("ssh", "10.9.9.9", "", 2)
	for i := range 50 {
		d.fail("ssh", fmt.Sprintf("10.2.0.%d", i), "", 1)
	}
	if !d.banned("10.9.9.9") {
		t.Error("a ban was evicted by fresh failures")
	}
}

func TestBansUnbanSafelist(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{
		AddrThreshold: 2, UserThreshold: 4, Sleep: (&sleepRecorder{}).Sleep,
		Safelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
	}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice"}, "pw")
	mustAdd(t, db, User{Name: "bob"}, "pw")
	for range 2 {
		db.AuthPassword(ctx, "ssh", "10.0.0.1:1", "bob", []byte("x"))
	}
	// A safelisted address is never banned by address, but its failures
	// still count against the name.
	for range 4 {
		db.AuthPassword(ctx, "ssh", "192.0.2.7:1", "alice", []byte("x"))
	}
	if db.Banned("192.0.2.7") {
		t.Error("safelisted address banned")
	}
	bans := db.Bans()
	want := []Ban{{"address", "10.0.0.1", clk.Now().Add(15 * time.Minute)}, {"user", "alice", clk.Now().Add(15 * time.Minute)}}
	if fmt.Sprint(bans) != fmt.Sprint(want) {
		t.Errorf("Bans = %v, want %v", bans, want)
	}
	// The name's ban does not apply from a safelisted address; from others it does.
	if _, err := db.AuthPassword(ctx, "ssh", "192.0.2.7:1", "alice", []byte("pw")); err != nil {
		t.Errorf("banned name from a safelisted address = %v, want success", err)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "10.0.0.9:1", "alice", []byte("pw")); !errors.Is(err, ErrBanned) {
		t.Errorf("banned name from another address = %v, want ErrBanned", err)
	}
	if err := db.Unban("user:alice"); err != nil {
		t.Errorf("Unban(user:alice) = %v", err)
	}
	if err := db.Unban("10.0.0.1:5"); err != nil {
		t.Errorf("Unban(10.0.0.1:5) = %v", err)
	}
	if err := db.Unban("10.0.0.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Unban(10.0.0.1) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"alice", "user:Not Valid", "10.0.0.300", ""} {
		if err := db.Unban(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unban(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if len(db.Bans()) != 0 {
		t.Errorf("Bans after Unban = %v", db.Bans())
	}
	if _, err := db.AuthPassword(ctx, "ssh", "10.0.0.1:1", "alice", []byte("pw")); err != nil {
		t.Errorf("after Unban: %v", err)
	}
}
