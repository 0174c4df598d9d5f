package users

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Failure weights. A wrong password (or a connection that failed overall,
// see DB.Failed) is one failure. A rejected public key is a probe, not a
// failure: SSH clients offer every key in their agent, so counting each
// would ban honest users with many keys. sftpd reports a connection that
// never authenticated through DB.Failed instead.
const (
	scorePassword = 1
	scoreFailed   = 1
)

func (o DefenderOptions) withDefaults() DefenderOptions {
	if o.Window <= 0 {
		o.Window = 5 * time.Minute
	}
	if o.AddrThreshold <= 0 {
		o.AddrThreshold = 10
	}
	if o.UserThreshold <= 0 {
		o.UserThreshold = 30
	}
	if o.BanTime <= 0 {
		o.BanTime = 15 * time.Minute
	}
	if o.DelayAfter <= 0 {
		o.DelayAfter = 3
	}
	if o.Delay <= 0 {
		o.Delay = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 8 * time.Second
	}
	if o.MaxDelay < o.Delay {
		o.MaxDelay = o.Delay
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 65536
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	return o
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// defender scores failures per address and per user name in a sliding
// window, delays further attempts once the score passes DelayAfter and bans
// at the threshold. It is safe for concurrent use.
type defender struct {
	opts DefenderOptions
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex
	entries map[string]*defEntry // "a:" + address key, "u:" + name
}

type defEntry struct {
	fails  []time.Time // failure times within the window, oldest first (one per score point)
	banned time.Time   // banned until (zero: not banned)
	last   time.Time
}

func newDefender(opts DefenderOptions, now func() time.Time, log *slog.Logger) *defender {
	return &defender{opts: opts.withDefaults(), now: now, log: log, entries: make(map[string]*defEntry)}
}

// addrKey reduces "ip:port" or "ip" to the key a ban applies to: the IPv4
// address, or the /64 of an IPv6 address (one host usually owns a whole
// /64, so per-address bans would be trivially dodged). IPv4-mapped IPv6 is
// unmapped; zones are dropped. Anything unparsable is used verbatim.
func addrKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if len(host) > 100 {
			host = host[:100]
		}
		return "a:" + host
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "a:" + p.String()
	}
	return "a:" + a.String()
}

// addrKeyFor is addrKey, or "" for a safelisted address.
func (d *defender) addrKeyFor(remote string) string {
	if len(d.opts.Safelist) > 0 {
		host := remote
		if h, _, err := net.SplitHostPort(remote); err == nil {
			host = h
		}
		if a, err := netip.ParseAddr(host); err == nil {
			a = a.Unmap().WithZone("")
			for _, p := range d.opts.Safelist {
				if p.Contains(a) {
					return ""
				}
			}
		}
	}
	return addrKey(remote)
}

func userKey(name string) string {
	if !validName(name) {
		return "" // cannot be a user (and may be a mistyped password): scored by address only
	}
	return "u:" + name
}

// prune drops failures older than the window. Call with mu held.
func (d *defender) prune(e *defEntry, now time.Time) {
	cut := now.Add(-d.opts.Window)
	i := 0
	for i < len(e.fails) && !e.fails[i].After(cut) {
		i++
	}
	e.fails = e.fails[i:]
	if !e.banned.IsZero() && !now.Before(e.banned) {
		e.banned = time.Time{}
	}
}

func (d *defender) bannedLocked(key string, now time.Time) bool {
	if key == "" {
		return false
	}
	e := d.entries[key]
	if e == nil {
		return false
	}
	d.prune(e, now)
	return !e.banned.IsZero()
}

// check returns ErrBanned if the address or the name is banned, else the
// delay to apply before checking credentials.
func (d *defender) check(remote, name string) (time.Duration, error) {
	if d.opts.Disabled {
		return 0, nil
	}
	now := d.now()
	ak, uk := d.addrKeyFor(remote), userKey(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bannedLocked(ak, now) || d.bannedLocked(uk, now) {
		return 0, ErrBanned
	}
	score := 0
	for _, k := range []string{ak, uk} {
		if e := d.entries[k]; k != "" && e != nil {
			score = max(score, len(e.fails))
		}
	}
	return d.delayFor(score), nil
}

// delayFor is 0 below DelayAfter failures, then Delay doubling per further
// failure, capped at MaxDelay.
func (d *defender) delayFor(score int) time.Duration {
	if score < d.opts.DelayAfter {
		return 0
	}
	delay := d.opts.Delay
	for i := d.opts.DelayAfter; i < score && delay < d.opts.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, d.opts.MaxDelay)
}

func (d *defender) banned(remote string) bool {
	if d.opts.Disabled {
		return false
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bannedLocked(d.addrKeyFor(remote), now)
}

// fail adds score points for the address and the name and bans either one
// that reaches its threshold.
func (d *defender) fail(proto, remote, name string, score int) {
	if d.opts.Disabled || score <= 0 {
		return
	}
	now := d.now()
	ak, uk := d.addrKeyFor(remote), userKey(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if ak != "" {
		d.failLocked(ak, score, d.opts.AddrThreshold, now, proto, "address", ak[len("a:"):])
	}
	if uk != "" {
		d.failLocked(uk, score, d.opts.UserThreshold, now, proto, "user", name)
	}
}

func (d *defender) failLocked(key string, score, threshold int, now time.Time, proto, kind, who string) {
	e := d.entries[key]
	if e == nil {
		if len(d.entries) >= d.opts.MaxEntries {
			d.evictLocked(now)
		}
		if len(d.entries) >= d.opts.MaxEntries {
			return // every slot holds a live ban or fresh failures; stay bounded
		}
		e = &defEntry{}
		d.entries[key] = e
	}
	d.prune(e, now)
	e.last = now
	if !e.banned.IsZero() {
		return
	}
	for range score {
		e.fails = append(e.fails, now)
	}
	if len(e.fails) >= threshold {
		e.banned = now.Add(d.opts.BanTime)
		e.fails = nil
		d.log.Warn("users: login banned after repeated failures",
			kind, who, "proto", proto, "failures", threshold,
			"window", d.opts.Window, "until", e.banned.UTC().Format(time.RFC3339))
	}
}

// evictLocked drops entries with no live failures and no ban; if none, the
// least recently touched entry that is not banned.
func (d *defender) evictLocked(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, e := range d.entries {
		d.prune(e, now)
		if len(e.fails) == 0 && e.banned.IsZero() {
			delete(d.entries, k)
			continue
		}
		if e.banned.IsZero() && (oldestKey == "" || e.last.Before(oldest)) {
			oldestKey, oldest = k, e.last
		}
	}
	if len(d.entries) >= d.opts.MaxEntries && oldestKey != "" {
		delete(d.entries, oldestKey)
	}
}

// Ban is one active ban, as listed by DB.Bans.
type Ban struct {
	Kind  string    `json:"kind"` // "address" or "user"
	Who   string    `json:"who"`  // IPv4 address, IPv6 /64, or user name
	Until time.Time `json:"until"`
}

func (d *defender) bans() []Ban {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Ban
	for k, e := range d.entries {
		d.prune(e, now)
		if e.banned.IsZero() {
			continue
		}
		b := Ban{Kind: "address", Who: k[2:], Until: e.banned}
		if strings.HasPrefix(k, "u:") {
			b.Kind = "user"
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Ban) int { return strings.Compare(a.Kind+" "+a.Who, b.Kind+" "+b.Who) })
	return out
}

// unban lifts the ban on and forgets the failures of an address (any form
// addrKey accepts) or a user name.
func (d *defender) unban(who string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	lifted := false
	for _, k := range []string{addrKey(who), userKey(who)} {
		if e := d.entries[k]; k != "" && e != nil {
			lifted = lifted || !e.banned.IsZero()
			delete(d.entries, k)
		}
	}
	if lifted {
		d.log.Info("users: ban lifted", "who", who)
	}
	return lifted
}
