package users

import (
	"context"
	"fmt"
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
	known   map[string][]string  // user name -> address keys of recent successful logins, newest last
	changed chan struct{}        // closed (and replaced) whenever a budget may have freed up or a ban begun
	waiters int                  // attempts parked in begin (tests watch it)
	onLogin func(LoginEvent)     // SetLoginHook: told when a ban begins (under mu: it must not call back)
	share   banShare             // nil: this process's bans are its own
}

// banShare carries this node's bans to the other nodes sharing the
// database (the etcd engine: etcdbans.go); their bans come back through
// remoteBan. It is called with mu held, so it must not block or call
// back: it queues.
type banShare interface {
	banned(key string, until time.Time) // a ban began here
	lifted(key string)                  // an operator lifted a ban here
}

type defEntry struct {
	fails    []time.Time // failure times within the window, oldest first (one per score point)
	banned   time.Time   // banned until (zero: not banned)
	last     time.Time
	inflight int // password checks admitted and not yet settled (see begin)
}

// knownPerUser is how many addresses of successful logins are remembered
// per user (in memory only) to exempt them from a ban of the user's name.
const knownPerUser = 4

func newDefender(opts DefenderOptions, now func() time.Time, log *slog.Logger) *defender {
	return &defender{opts: opts.withDefaults(), now: now, log: log, entries: make(map[string]*defEntry),
		known: make(map[string][]string), changed: make(chan struct{})}
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

// attempt is one admitted password check: it holds a slot of the
// address's and the name's budget until end settles it.
type attempt struct {
	ak, uk string    // keys ("" = not scored on that dimension)
	src    string    // the address key even when safelisted: whose turn it is for Argon2id
	ea, eu *defEntry // the reserved entries (nil = none), released by end (never evicted while reserved)
	exempt bool      // the name's ban, budget and delay do not apply (known or safelisted address)
}

// begin admits one password check for name from remote, or refuses it.
//
// Attempts in flight count against the thresholds before any Argon2id
// runs: while failures plus admitted attempts of the address (or of the
// name) reach its threshold, a new attempt waits for one of them to settle
// and then looks again. So however many attempts run in parallel, at most
// AddrThreshold failed checks happen per address and UserThreshold per
// name before the ban, and any attempt still waiting when the ban begins
// gets ErrBanned without a check. Honest parallel logins (a WebDAV client's
// first burst) only wait for the first ones to succeed, then hit the cache.
//
// A name's ban, budget and delay do not apply from an address the user
// logged in from successfully before, nor from a safelisted address.
// It returns the delay to serve before checking; the caller must call end.
func (d *defender) begin(ctx context.Context, remote, name string) (*attempt, time.Duration, error) {
	return d.beginKeyed(ctx, remote, name, userKey(name))
}

// beginKeyed is begin with the second key given (a share link's, see
// VerifySecret) instead of derived from a user name.
func (d *defender) beginKeyed(ctx context.Context, remote, name, uk string) (*attempt, time.Duration, error) {
	a := &attempt{ak: d.addrKeyFor(remote), uk: uk, src: addrKey(remote)}
	if d.opts.Disabled {
		return a, 0, nil
	}
	waited := false
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		now := d.now()
		a.exempt = a.ak == "" || slices.Contains(d.known[name], a.ak)
		if d.bannedLocked(a.ak, now) || (!a.exempt && d.bannedLocked(a.uk, now)) {
			return nil, 0, ErrBanned
		}
		ea, eu := d.entryLocked(a.ak, now), (*defEntry)(nil)
		if !a.exempt {
			eu = d.entryLocked(a.uk, now)
		}
		if roomFor(ea, d.opts.AddrThreshold) && roomFor(eu, d.opts.UserThreshold) {
			score := 0
			for _, e := range []*defEntry{ea, eu} {
				if e != nil {
					e.inflight++
					e.last = now
					score = max(score, len(e.fails))
				}
			}
			a.ea, a.eu = ea, eu
			return a, d.delayFor(score), nil
		}
		if !waited {
			waited = true
			d.log.Debug("users: login waits for attempts in flight", "remote", remote, "user", logName(name))
		}
		ch := d.changed
		d.waiters++
		d.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		d.mu.Lock()
		d.waiters--
		if err != nil {
			return nil, 0, err
		}
	}
}

// roomFor reports whether e's budget admits one more check.
func roomFor(e *defEntry, threshold int) bool {
	return e == nil || len(e.fails)+e.inflight < threshold
}

// entryLocked returns key's entry, created if need be; nil for key "" or
// when the table is full of live entries (then that dimension is not
// reserved, as failures are not scored then either: the table stays
// bounded). Call with mu held.
func (d *defender) entryLocked(key string, now time.Time) *defEntry {
	if key == "" {
		return nil
	}
	if e := d.entries[key]; e != nil {
		d.prune(e, now)
		return e
	}
	if len(d.entries) >= d.opts.MaxEntries {
		d.evictLocked(now)
		if len(d.entries) >= d.opts.MaxEntries {
			return nil
		}
	}
	e := &defEntry{last: now}
	d.entries[key] = e
	return e
}

// recheck is ErrBanned if a ban began while a waited (delay, queue).
func (d *defender) recheck(a *attempt) error {
	if d.opts.Disabled {
		return nil
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bannedLocked(a.ak, now) || (!a.exempt && d.bannedLocked(a.uk, now)) {
		return ErrBanned
	}
	return nil
}

// end settles an admitted attempt: its slot is freed and, if failed, the
// failure is scored. Waiting attempts are woken to look again.
func (d *defender) end(a *attempt, proto, name string, failed bool) {
	if d.opts.Disabled {
		return
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range []*defEntry{a.ea, a.eu} {
		if e != nil && e.inflight > 0 {
			e.inflight--
		}
	}
	a.ea, a.eu = nil, nil
	if failed {
		d.scoreLocked(proto, a.ak, a.uk, name, scorePassword, now)
	}
	d.wakeLocked()
}

func (d *defender) wakeLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// remember records a successful login of name from remote, so a later ban
// of the name does not lock the user out from there.
func (d *defender) remember(name, remote string) {
	ak := d.addrKeyFor(remote)
	if d.opts.Disabled || ak == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := d.known[name]
	if i := slices.Index(k, ak); i >= 0 {
		k = slices.Delete(k, i, i+1)
	} else if _, ok := d.known[name]; !ok && len(d.known) >= d.opts.MaxEntries {
		for n := range d.known { // bounded: forget some user's addresses
			delete(d.known, n)
			break
		}
	}
	k = append(k, ak)
	if len(k) > knownPerUser {
		k = k[len(k)-knownPerUser:]
	}
	d.known[name] = k
}

// bannedFor reports whether remote is banned for a login as name: by
// address, or by name unless remote is exempt from the name's ban.
func (d *defender) bannedFor(remote, name string) bool {
	if d.opts.Disabled {
		return false
	}
	ak, uk := d.addrKeyFor(remote), userKey(name)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	exempt := ak == "" || slices.Contains(d.known[name], ak)
	return d.bannedLocked(ak, now) || (!exempt && d.bannedLocked(uk, now))
}

// refusalDelay is the defender delay a failing attempt would be served at
// the threshold: what a banned attempt waits so it looks like a failure.
func (d *defender) refusalDelay() time.Duration {
	return d.delayFor(max(d.opts.AddrThreshold, d.opts.UserThreshold))
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
	d.scoreLocked(proto, ak, uk, name, score, now)
	d.wakeLocked()
}

func (d *defender) scoreLocked(proto, ak, uk, name string, score int, now time.Time) {
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
		if d.share != nil {
			d.share.banned(key, e.banned)
		}
		d.log.Warn("users: login banned after repeated failures", "event", EventBanned,
			kind, who, "proto", proto, "failures", threshold,
			"window", d.opts.Window, "until", e.banned.UTC().Format(time.RFC3339))
		if d.onLogin != nil {
			ev := LoginEvent{Proto: proto, Ban: kind}
			if kind == "user" {
				ev.User = who
			} else {
				ev.Remote = who
			}
			d.onLogin(ev)
		}
	}
}

// evictLocked drops entries with no live failures and no ban; if none, the
// least recently touched entry that is not banned.
func (d *defender) evictLocked(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, e := range d.entries {
		d.prune(e, now)
		if len(e.fails) == 0 && e.banned.IsZero() && e.inflight == 0 {
			delete(d.entries, k)
			continue
		}
		if e.banned.IsZero() && e.inflight == 0 && (oldestKey == "" || e.last.Before(oldest)) {
			oldestKey, oldest = k, e.last
		}
	}
	if len(d.entries) >= d.opts.MaxEntries && oldestKey != "" {
		delete(d.entries, oldestKey)
	}
}

// Ban is one active ban, as listed by DB.Bans.
type Ban struct {
	Kind  string    `json:"kind"` // "address", "user" or "link"
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
		} else if strings.HasPrefix(k, "l:") {
			b.Kind = "link" // a share link's password (VerifySecret)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Ban) int { return strings.Compare(a.Kind+" "+a.Who, b.Kind+" "+b.Who) })
	return out
}

// unban lifts the ban on and forgets the failures of an address (any form
// addrKey accepts: "ip", "ip:port", an IPv6 address standing for its /64)
// or, written "user:NAME", a user name. It is ErrInvalid for anything else
// and ErrNotFound when no ban was active (recent failures are forgotten
// all the same).
func (d *defender) unban(who string) error {
	var key string
	if name, ok := strings.CutPrefix(who, "user:"); ok {
		if key = userKey(name); key == "" {
			return fmt.Errorf("users: unban %q: not a valid user name: %w", name, ErrInvalid)
		}
	} else {
		host := who
		if h, _, err := net.SplitHostPort(who); err == nil {
			host = h
		}
		if p, err := netip.ParsePrefix(host); err == nil && p.Addr().Is6() && p.Bits() == 64 {
			host = p.Addr().String() // as listed: the /64 of an IPv6 address
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("users: unban %q: want an IP address or user:NAME: %w", who, ErrInvalid)
		}
		key = addrKey(host)
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[key]
	lifted := false
	if e != nil {
		d.prune(e, now)
		lifted = !e.banned.IsZero()
		e.banned, e.fails = time.Time{}, nil // the entry may hold attempts in flight: keep it
	}
	if d.share != nil {
		// Lifted on every node, even if this one had not heard of it yet.
		d.share.lifted(key)
	}
	d.wakeLocked()
	if !lifted {
		return fmt.Errorf("users: unban %s: no active ban: %w", who, ErrNotFound)
	}
	d.log.Info("users: ban lifted", "event", EventBanLifted, "who", who)
	return nil
}

// remoteBan applies another node's ban of key until until, or, with until
// zero, its lifting of one. Attempts waiting in begin look again.
func (d *defender) remoteBan(key string, until time.Time) {
	if d.opts.Disabled {
		return
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[key]
	if until.IsZero() {
		if e != nil {
			d.prune(e, now)
			if !e.banned.IsZero() {
				e.banned, e.fails = time.Time{}, nil
				d.log.Info("users: ban lifted on another node", "event", EventBanLifted, "kind", banKind(key), "who", key[2:])
			}
		}
		d.wakeLocked()
		return
	}
	if !until.After(now) {
		return
	}
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
	if e.banned.Before(until) {
		e.banned, e.fails = until, nil
		d.log.Info("users: login banned on another node", "event", EventBanned, "kind", banKind(key), "who", key[2:],
			"until", until.UTC().Format(time.RFC3339))
	}
	d.wakeLocked()
}

// banKind names the kind of a defender key, as Ban.Kind does.
func banKind(key string) string {
	switch {
	case strings.HasPrefix(key, "u:"):
		return "user"
	case strings.HasPrefix(key, "l:"):
		return "link"
	}
	return "address"
}
