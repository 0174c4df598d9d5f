package davd

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the HTTP limits (Options): connections in total and per
// source address, and requests in progress per user.
const (
	DefaultMaxConns           = 4096
	DefaultMaxConnsPerSource  = 256
	DefaultMaxRequestsPerUser = 64
)

// connLimits counts open connections in total and per source (an IPv4
// address, an IPv6 /64), so that idle or stalled connections from one
// place cannot take every descriptor. A connection over a limit is closed
// as soon as it is accepted, before TLS: it costs the server nothing more.
type connLimits struct {
	max, perSource int
	onRefuse       func(src string, total bool)

	mu       sync.Mutex
	total    int
	bySource map[netip.Prefix]int
}

func newConnLimits(max, perSource int, onRefuse func(string, bool)) *connLimits {
	return &connLimits{max: max, perSource: perSource, onRefuse: onRefuse, bySource: map[netip.Prefix]int{}}
}

// sourceOf is the unit a per-source limit counts: the address, or its /64
// for IPv6 (one host holds a whole /64).
func sourceOf(addr net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// take counts a new connection from src; false: over a limit.
func (l *connLimits) take(src netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return false
	}
	if l.bySource[src] >= l.perSource {
		return false
	}
	l.total++
	l.bySource[src]++
	return true
}

func (l *connLimits) release(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

// limitListener closes connections over the limits at once and counts the
// others until they close.
type limitListener struct {
	net.Listener
	l *connLimits
}

func (ln limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if !ln.l.take(src) {
			c.Close()
			if ln.l.onRefuse != nil {
				ln.l.mu.Lock()
				full := ln.l.total >= ln.l.max
				ln.l.mu.Unlock()
				ln.l.onRefuse(src.String(), full)
			}
			continue
		}
		return &limitedConn{Conn: c, release: func() { ln.l.release(src) }}, nil
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// userRequests bounds the requests one user has in progress at once (each
// may hold an upload buffer), so one account cannot take the server's
// memory with stalled uploads.
type userRequests struct {
	max int

	mu     sync.Mutex
	byUser map[string]int
}

func newUserRequests(max int) *userRequests {
	return &userRequests{max: max, byUser: map[string]int{}}
}

// take counts a request of user; false: the user is at the limit.
func (u *userRequests) take(user string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byUser[user] >= u.max {
		return false
	}
	u.byUser[user]++
	return true
}

func (u *userRequests) release(user string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byUser[user]--; u.byUser[user] <= 0 {
		delete(u.byUser, user)
	}
}

// refusalLog rate-limits the warning about refused connections: at most
// one a minute at warn level, the rest at debug level.
type refusalLog struct {
	mu   sync.Mutex
	last time.Time
}

func (r *refusalLog) loud(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.last) < time.Minute {
		return false
	}
	r.last = now
	return true
}
