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
// locks of depth 0 or infinity. Locks live in memory: a restart drops them,
// which clients survive (they re-lock when a refresh fails with 412).
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
	mu      sync.Mutex
	now     func() time.Time
	byToken map[string]*davLock
	byHome  map[string]map[string]*davLock // home -> token -> lock
}

func newLockManager(now func() time.Time) *lockManager {
	return &lockManager{
		now:     now,
		byToken: map[string]*davLock{},
		byHome:  map[string]map[string]*davLock{},
	}
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

// expireLocked drops expired locks of home. Caller holds m.mu.
func (m *lockManager) expireLocked(home string) {
	now := m.now()
	for tok, l := range m.byHome[home] {
		if !l.expires.After(now) {
			delete(m.byHome[home], tok)
			delete(m.byToken, tok)
		}
	}
}

// create adds a lock on name, failing with errLocked on a conflict.
func (m *lockManager) create(home, user, name string, shared, infinite bool, owner string, timeout time.Duration) (*davLock, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(home)
	locks := m.byHome[home]
	if len(locks) >= maxLocksPerHome {
		return nil, fmt.Errorf("davd: too many locks: %w", errLocked)
	}
	for _, e := range locks {
		overlap := e.covers(name) || (infinite && isWithin(e.root, name))
		if overlap && !(shared && e.shared) {
			return nil, errLocked
		}
	}
	l := &davLock{
		token: newLockToken(), home: home, root: name, user: user,
		shared: shared, infinite: infinite, owner: owner,
		timeout: timeout, expires: m.now().Add(timeout),
	}
	if locks == nil {
		locks = map[string]*davLock{}
		m.byHome[home] = locks
	}
	locks[l.token] = l
	m.byToken[l.token] = l
	return l, nil
}

// refresh extends the lock token, which must cover name and belong to user.
func (m *lockManager) refresh(home, user, name, token string, timeout time.Duration) (davLock, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(home)
	l := m.byToken[token]
	if l == nil || l.home != home || !l.covers(name) {
		return davLock{}, errNoSuchLock
	}
	if l.user != user {
		return davLock{}, errLockForeign
	}
	l.timeout = timeout
	l.expires = m.now().Add(timeout)
	return *l, nil
}

// unlock removes the lock token, which must cover name.
func (m *lockManager) unlock(home, user, name, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(home)
	l := m.byToken[token]
	if l == nil || l.home != home || !l.covers(name) {
		return errNoSuchLock
	}
	if l.user != user {
		return errLockForeign
	}
	delete(m.byToken, token)
	delete(m.byHome[home], token)
	return nil
}

// discover lists the locks covering name (lockdiscovery).
func (m *lockManager) discover(home, name string) []davLock {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.byHome[home]) == 0 {
		return nil
	}
	m.expireLocked(home)
	var out []davLock
	for _, l := range m.byHome[home] {
		if l.covers(name) {
			out = append(out, *l)
		}
	}
	return out
}

// tokenCovers reports whether token is a live lock of home covering name
// (the state-token condition of an If header).
func (m *lockManager) tokenCovers(home, name, token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.byToken[token]
	return l != nil && l.home == home && l.expires.After(m.now()) && l.covers(name)
}

// writeScope says which locks a modification of a name must satisfy.
type writeScope struct {
	name    string
	members bool // the name's descendants too (DELETE, MOVE of a collection, overwrite)
	parent  bool // the parent's membership (creating, deleting, moving the name)
}

// check fails with errLocked unless, for every lock root that applies to
// one of the scopes, the request submitted a token of a lock at that root
// owned by user.
func (m *lockManager) check(home, user string, submitted map[string]bool, scopes ...writeScope) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.byHome[home]) == 0 {
		return nil
	}
	m.expireLocked(home)
	need := map[string]bool{} // lock root -> satisfied
	for _, l := range m.byHome[home] {
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
}

// dropWithin removes the locks rooted at or under name (after DELETE/MOVE).
func (m *lockManager) dropWithin(home, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for tok, l := range m.byHome[home] {
		if isWithin(l.root, name) {
			delete(m.byHome[home], tok)
			delete(m.byToken, tok)
		}
	}
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
