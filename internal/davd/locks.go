package davd

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebDAV class 2 locks (RFC 4918 section 6-7), shared and exclusive write
// locks of depth 0 or infinity. On one node locks live in memory: a restart
// drops them, which clients survive (they re-lock when a refresh fails with
// 412). In a cluster they live in etcd (Options.Locks, etcdlocks.go),
// under the node's lease.
//
// Locks are keyed by home, so users sharing a home tree see each other's
// locks; a lock token counts only for the user who created it.

var (
	errLocked      = errors.New("davd: resource is locked")
	errNoSuchLock  = errors.New("davd: no such lock")
	errLockForeign = errors.New("davd: lock belongs to another user")
)

const (
	// maxLockTimeout bounds what a client may ask for (and what "Infinite"
	// means): an abandoned lock blocks others for at most this long.
	maxLockTimeout     = 24 * time.Hour
	defaultLockTimeout = time.Hour
	maxLocksPerHome    = 10000
)

type davLock struct {
	token    string // opaquelocktoken:<uuid>
	home     string
	root     string // clean vfs name, "/" or "/a/b"
	user     string
	shared   bool
	infinite bool // depth infinity (else 0)
	owner    string
	timeout  time.Duration
	expires  time.Time
}

type lockManager struct {
	now   func() time.Time
	table lockTable
}

// lockTable keeps every tree's locks: in this process's memory (memLocks)
// or shared by a cluster's nodes in etcd (EtcdLocks, etcdlocks.go).
type lockTable interface {
	// with runs fn on home's locks (token → lock). With write, what fn
	// leaves in the map is kept if it returns nil; without, fn may only
	// drop expired locks (which may or may not be kept). fn may run more
	// than once (etcd: a conflict with another node), so it must act only
	// on the map.
	with(home string, write bool, fn func(locks map[string]*davLock) error) error
}

func newLockManager(now func() time.Time, table lockTable) *lockManager {
	if table == nil {
		table = &memLocks{byHome: map[string]map[string]*davLock{}}
	}
	return &lockManager{now: now, table: table}
}

// memLocks is the single-node lockTable: a restart drops the locks.
type memLocks struct {
	mu     sync.Mutex
	byHome map[string]map[string]*davLock // home -> token -> lock
}

func (t *memLocks) with(home string, write bool, fn func(map[string]*davLock) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	locks := t.byHome[home]
	if !write {
		return fn(locks) // nil if none: reading and deleting from it are no-ops
	}
	if locks == nil {
		locks = map[string]*davLock{}
	}
	if err := fn(locks); err != nil {
		return err
	}
	if len(locks) == 0 {
		delete(t.byHome, home)
	} else {
		t.byHome[home] = locks
	}
	return nil
}

func newLockToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("davd: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("opaquelocktoken:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// isWithin reports whether name is root or inside it.
func isWithin(name, root string) bool {
	if root == "/" || name == root {
		return true
	}
	return strings.HasPrefix(name, root+"/")
}

func (l *davLock) covers(name string) bool {
	if l.infinite {
		return isWithin(name, l.root)
	}
	return name == l.root
}

// expire drops the expired locks from locks.
func expire(locks map[string]*davLock, now time.Time) {
	for tok, l := range locks {
		if !l.expires.After(now) {
			delete(locks, tok)
		}
	}
}

// create adds a lock on name, failing with errLocked on a conflict.
func (m *lockManager) create(home, user, name string, shared, infinite bool, owner string, timeout time.Duration) (*davLock, error) {
	var out *davLock
	err := m.table.with(home, true, func(locks map[string]*davLock) error {
		now := m.now()
		expire(locks, now)
		if len(locks) >= maxLocksPerHome {
			return fmt.Errorf("davd: too many locks: %w", errLocked)
		}
		for _, e := range locks {
			overlap := e.covers(name) || (infinite && isWithin(e.root, name))
			if overlap && !(shared && e.shared) {
				return errLocked
			}
		}
		l := &davLock{
			token: newLockToken(), home: home, root: name, user: user,
			shared: shared, infinite: infinite, owner: owner,
			timeout: timeout, expires: now.Add(timeout),
		}
		locks[l.token] = l
		c := *l
		out = &c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// refresh extends the lock token, which must cover name and belong to user.
func (m *lockManager) refresh(home, user, name, token string, timeout time.Duration) (davLock, error) {
	var out davLock
	err := m.table.with(home, true, func(locks map[string]*davLock) error {
		now := m.now()
		expire(locks, now)
		l := locks[token]
		if l == nil || !l.covers(name) {
			return errNoSuchLock
		}
		if l.user != user {
			return errLockForeign
		}
		nl := *l
		nl.timeout = timeout
		nl.expires = now.Add(timeout)
		locks[token] = &nl
		out = nl
		return nil
	})
	return out, err
}

// unlock removes the lock token, which must cover name.
func (m *lockManager) unlock(home, user, name, token string) error {
	return m.table.with(home, true, func(locks map[string]*davLock) error {
		expire(locks, m.now())
		l := locks[token]
		if l == nil || !l.covers(name) {
			return errNoSuchLock
		}
		if l.user != user {
			return errLockForeign
		}
		delete(locks, token)
		return nil
	})
}

// live returns every live lock of home (lockdiscovery of a listing: one
// read of the table per request, not one per member).
func (m *lockManager) live(home string) ([]davLock, error) {
	var out []davLock
	err := m.table.with(home, false, func(locks map[string]*davLock) error {
		out = out[:0]
		now := m.now()
		for _, l := range locks {
			if l.expires.After(now) {
				out = append(out, *l)
			}
		}
		return nil
	})
	return out, err
}

// tokenCovers reports whether token is a live lock of home covering name
// (the state-token condition of an If header). A lock table that does
// not answer covers nothing (the condition fails: fail closed).
func (m *lockManager) tokenCovers(home, name, token string) bool {
	ok := false
	m.table.with(home, false, func(locks map[string]*davLock) error {
		l := locks[token]
		ok = l != nil && l.expires.After(m.now()) && l.covers(name)
		return nil
	})
	return ok
}

// writeScope says which locks a modification of a name must satisfy.
type writeScope struct {
	name    string
	members bool // the name's descendants too (DELETE, MOVE of a collection, overwrite)
	parent  bool // the parent's membership (creating, deleting, moving the name)
}

// check fails with errLocked unless, for every lock root that applies to
// one of the scopes, the request submitted a token of a lock at that root
// owned by user. A lock table that does not answer fails it (fail
// closed: no write past a lock this node cannot see).
func (m *lockManager) check(home, user string, submitted map[string]bool, scopes ...writeScope) error {
	return m.table.with(home, false, func(locks map[string]*davLock) error {
		if len(locks) == 0 {
			return nil
		}
		expire(locks, m.now())
		need := map[string]bool{} // lock root -> satisfied
		for _, l := range locks {
			applies := false
			for _, sc := range scopes {
				if sc.name == "" {
					continue
				}
				if l.covers(sc.name) || (sc.members && isWithin(l.root, sc.name)) ||
					(sc.parent && sc.name != "/" && l.root == parentName(sc.name)) {
					applies = true
					break
				}
			}
			if !applies {
				continue
			}
			ok := submitted[l.token] && l.user == user
			need[l.root] = need[l.root] || ok
		}
		for _, ok := range need {
			if !ok {
				return errLocked
			}
		}
		return nil
	})
}

// dropWithin removes the locks rooted at or under name (after DELETE/MOVE).
func (m *lockManager) dropWithin(home, name string) error {
	return m.table.with(home, true, func(locks map[string]*davLock) error {
		for tok, l := range locks {
			if isWithin(l.root, name) {
				delete(locks, tok)
			}
		}
		return nil
	})
}

// parseTimeout reads a Timeout header ("Second-N", "Infinite", a list).
func parseTimeout(h string) time.Duration {
	if h == "" {
		return defaultLockTimeout
	}
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if strings.EqualFold(part, "Infinite") {
			return maxLockTimeout
		}
		if v, ok := strings.CutPrefix(part, "Second-"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				continue
			}
			if d := time.Duration(n) * time.Second; n < int64(maxLockTimeout/time.Second) {
				return d
			}
			return maxLockTimeout
		}
	}
	return defaultLockTimeout
}

func parentName(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 {
		return "/"
	}
	return name[:i]
}

// The If header (RFC 4918 section 10.4).

type ifCondition struct {
	not   bool
	token string // state token (a URI)
	etag  string // entity tag with quotes, e.g. "abc" or W/"abc"
}

type ifList struct {
	resource string // tagged resource URL, "" for the request URI
	conds    []ifCondition
}

// parseIf parses an If header into its lists; ok is false on a syntax error.
func parseIf(h string) (lists []ifList, ok bool) {
	s := strings.TrimSpace(h)
	tag := ""
	tagged := strings.HasPrefix(s, "<")
	for s != "" {
		switch s[0] {
		case ' ', '\t':
			s = s[1:]
		case '<':
			if !tagged {
				return nil, false
			}
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return nil, false
			}
			tag, s = s[1:end], s[end+1:]
		case '(':
			end := strings.IndexByte(s, ')')
			if end < 0 {
				return nil, false
			}
			conds, ok := parseIfConds(s[1:end])
			if !ok || len(conds) == 0 {
				return nil, false
			}
			lists = append(lists, ifList{resource: tag, conds: conds})
			s = s[end+1:]
		default:
			return nil, false
		}
	}
	return lists, len(lists) > 0
}

func parseIfConds(s string) ([]ifCondition, bool) {
	var out []ifCondition
	not := false
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, !not
		}
		switch {
		case strings.HasPrefix(s, "Not") && (len(s) == 3 || s[3] == ' ' || s[3] == '\t' || s[3] == '<' || s[3] == '['):
			if not {
				return nil, false
			}
			not, s = true, s[3:]
		case s[0] == '<':
			end := strings.IndexByte(s, '>')
			if end < 0 {
				return nil, false
			}
			out = append(out, ifCondition{not: not, token: s[1:end]})
			not, s = false, s[end+1:]
		case s[0] == '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, false
			}
			out = append(out, ifCondition{not: not, etag: s[1:end]})
			not, s = false, s[end+1:]
		default:
			return nil, false
		}
	}
}

// submittedTokens are the state tokens named (not negated) in the lists.
func submittedTokens(lists []ifList) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, c := range l.conds {
			if c.token != "" && !c.not {
				m[c.token] = true
			}
		}
	}
	return m
}
