package webui

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/pquerna/otp"

	"github.com/securefsd/securefsd/internal/etcdsess"
	"github.com/securefsd/securefsd/internal/users"
)

// Browser sessions shared by the nodes of a cluster (issue 21,
// docs/CLUSTER.md). With Options.Shared the record of a session (user,
// password hash at sign-in, CSRF token, address, start) lives in etcd,
// keyed by a keyed hash of the session key: any node serves a cookie any
// node signed in, and an end through any node (sign-out, a kill, a
// password change, the user disabled or deleted) ends it on every node,
// whose copies the store's watch drops within a second. ui.sessions is
// then a cache of the records this node serves, with what stays on one
// node: the open home and the flash message.
// Idleness is the store's (a lease per session, kept alive by the nodes
// that serve it); a copy idle here is read again, not ended.

// SharedSessions keeps browser sessions where every node of a cluster
// finds them (etcdsess.Store).
type SharedSessions interface {
	PutWeb(ctx context.Context, key [32]byte, ws etcdsess.WebSession, idle time.Duration) error
	UpdateWeb(ctx context.Context, key [32]byte, ws etcdsess.WebSession) error
	GetWeb(ctx context.Context, key [32]byte) (etcdsess.WebSession, error)
	TouchWeb(ctx context.Context, key [32]byte) error
	DeleteWeb(ctx context.Context, key [32]byte) (bool, error)
	ListWeb(ctx context.Context) ([]etcdsess.WebSession, error)
	EndWeb(ctx context.Context, match func(etcdsess.WebSession) bool) ([]etcdsess.WebSession, error)
	WatchWeb(gone func(id string), reset func()) error
	// Pending logins (twofactor.go): the code may come to any node.
	PutPending(ctx context.Context, key [32]byte, p etcdsess.PendingLogin, ttl time.Duration) error
	GetPending(ctx context.Context, key [32]byte) (etcdsess.PendingLogin, error)
	TakePendingTry(ctx context.Context, key [32]byte, max int) (etcdsess.PendingLogin, bool, error)
	DeletePending(ctx context.Context, key [32]byte) (bool, error)
}

// forgetID drops this node's copy of the session id (it ended through
// another node, or here).
func (ui *UI) forgetID(id string) {
	ui.mu.Lock()
	defer ui.mu.Unlock()
	ui.forgets++
	for k := range ui.sessions {
		if sessionID(k) == id {
			delete(ui.sessions, k)
		}
	}
}

// forgetAll drops every copy: the store's watch broke, ends may have been
// missed. Each session is read again at its next request.
func (ui *UI) forgetAll() {
	ui.mu.Lock()
	defer ui.mu.Unlock()
	ui.forgets++
	clear(ui.sessions)
}

// putShared stores the new session s under key, first ending the user's
// least recently started session beyond MaxSessionsPerUser, or beyond
// MaxSessions the busiest user's.
func (ui *UI) putShared(ctx context.Context, key [32]byte, s *session) error {
	sh := ui.opts.Shared
	all, err := sh.ListWeb(ctx)
	if err != nil {
		return err
	}
	count := map[string]int{}
	busiest := ""
	for _, ws := range all {
		count[ws.User]++
		if busiest == "" || count[ws.User] > count[busiest] {
			busiest = ws.User
		}
	}
	evictFrom := ""
	switch {
	case count[s.user.Name] >= ui.opts.MaxSessionsPerUser:
		evictFrom = s.user.Name
	case len(all) >= ui.opts.MaxSessions:
		evictFrom = busiest
	}
	if evictFrom != "" {
		var oldest *etcdsess.WebSession
		for i, ws := range all {
			if ws.User == evictFrom && (oldest == nil || ws.Created.Before(oldest.Created)) {
				oldest = &all[i]
			}
		}
		ended, err := sh.EndWeb(ctx, func(ws etcdsess.WebSession) bool { return ws.ID == oldest.ID })
		ui.sharedEnded(ended, "evicted")
		if err != nil {
			return err
		}
	}
	return sh.PutWeb(ctx, key, etcdsess.WebSession{ID: sessionID(key), User: s.user.Name, PwHash: s.pwHash, CSRF: s.csrf,
		Remote: s.remote, Created: s.created}, ui.opts.IdleTimeout)
}

// sharedEnded drops this node's copies of sessions ended in the store
// and records their ends.
func (ui *UI) sharedEnded(ended []etcdsess.WebSession, why string) {
	es := make([]endedSession, 0, len(ended))
	for _, ws := range ended {
		ui.forgetID(ws.ID)
		es = append(es, endedSession{user: ws.User, why: why, id: ws.ID})
	}
	ui.recordEnded(es)
}

// loadShared reads key's session from the store into this node's cache,
// after checking its user as sessionFor does. It fails closed: a record
// that cannot be read, or whose user cannot be, is no session.
func (ui *UI) loadShared(ctx context.Context, key [32]byte) error {
	sh := ui.opts.Shared
	for range 3 {
		ui.mu.Lock()
		gen := ui.forgets
		ui.mu.Unlock()
		ws, err := sh.GetWeb(ctx, key)
		if err != nil {
			if !errors.Is(err, etcdsess.ErrNotFound) {
				ui.log.Error("webui: read a session from the cluster", "err", err)
			}
			return errNoSession
		}
		if ws.ID != sessionID(key) { // a record under another session's name
			ui.log.Error("webui: a stored session names another session")
			return errNoSession
		}
		rev := ui.opts.Users.Revision()
		u, err := ui.opts.Users.Get(ctx, ws.User)
		if err != nil || u.Disabled || u.PasswordHash != ws.PwHash {
			if err == nil || errors.Is(err, users.ErrNotFound) {
				if ok, _ := sh.DeleteWeb(ctx, key); ok {
					ui.sharedEnded([]etcdsess.WebSession{ws}, "user-changed")
				}
			} else {
				ui.log.Error("webui: check session user", "user", ws.User, "err", err)
			}
			return errUserChanged
		}
		fsys, err := ui.homeFor(u)
		if err != nil {
			ui.log.Error("webui: open home", "user", u.Name, "err", err)
			return errUserChanged
		}
		if err := sh.TouchWeb(ctx, key); err != nil {
			return errNoSession
		}
		now := ui.now()
		s := &session{user: u, pwHash: u.PasswordHash, rev: rev, fs: fsys, csrf: ws.CSRF, created: ws.Created, lastSeen: now,
			touched: now, remote: ws.Remote, mustEnrol: ui.mustEnrol(u)}
		ui.mu.Lock()
		if ui.forgets == gen {
			// No end seen since the read: had this one ended, the watch
			// would have said so by the time it is asked again.
			ui.sessions[key] = s
			ui.mu.Unlock()
			return nil
		}
		ui.mu.Unlock()
	}
	return errNoSession
}

// touchShared keeps key's stored session alive when this node has not
// for a tenth of the idle timeout; false: it has ended (or cannot be
// checked), and this node's copy is dropped.
func (ui *UI) touchShared(ctx context.Context, key [32]byte, now time.Time) bool {
	ui.mu.Lock()
	s, ok := ui.sessions[key]
	due := ok && now.Sub(s.touched) >= ui.opts.IdleTimeout/10
	if due {
		s.touched = now
	}
	ui.mu.Unlock()
	if !due {
		return ok
	}
	if err := ui.opts.Shared.TouchWeb(ctx, key); err != nil {
		if !errors.Is(err, etcdsess.ErrNotFound) {
			ui.log.Error("webui: keep a session alive in the cluster", "err", err)
		}
		ui.mu.Lock()
		delete(ui.sessions, key)
		ui.mu.Unlock()
		return false
	}
	return true
}

// sharedPwHashIs reports whether key's stored session follows pwHash (the
// user changed the password through this session, on another node).
func (ui *UI) sharedPwHashIs(ctx context.Context, key [32]byte, pwHash string) bool {
	ws, err := ui.opts.Shared.GetWeb(ctx, key)
	return err == nil && ws.PwHash == pwHash
}

// sharedSessions lists the cluster's browser sessions.
func (ui *UI) sharedSessions(ctx context.Context) ([]SessionInfo, error) {
	all, err := ui.opts.Shared.ListWeb(ctx)
	if err != nil {
		return nil, err
	}
	now := ui.now()
	out := make([]SessionInfo, 0, len(all))
	for _, ws := range all {
		if now.Sub(ws.Created) >= ui.opts.MaxAge {
			continue
		}
		out = append(out, SessionInfo{ID: ws.ID, User: ws.User, Remote: ws.Remote, Start: ws.Created, Node: ws.Node})
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// endShared ends the stored sessions match accepts, on every node.
func (ui *UI) endShared(ctx context.Context, why string, match func(etcdsess.WebSession) bool) (int, error) {
	ended, err := ui.opts.Shared.EndWeb(ctx, match)
	ui.sharedEnded(ended, why)
	return len(ended), err
}

// A TOTP key being enrolled lives in the session's record (sealed), not
// in a node's copy: the QR code shown by one node and the code confirmed
// on another are the same key's. Read from etcd each time (the account
// page only).

// sharedEnrolKey returns the key being enrolled through key's session,
// making and storing one if there is none.
func (ui *UI) sharedEnrolKey(key [32]byte, name string) (*otp.Key, error) {
	ctx, sh := context.Background(), ui.opts.Shared
	ws, err := sh.GetWeb(ctx, key)
	if err != nil {
		return nil, err
	}
	if ws.Enrol != "" {
		return otp.NewKeyFromURL(ws.Enrol)
	}
	k, err := users.NewTOTPKey(ui.issuer(), name)
	if err != nil {
		return nil, err
	}
	ws.Enrol = k.URL()
	if err := sh.UpdateWeb(ctx, key, ws); err != nil {
		return nil, err
	}
	return k, nil
}

// sharedPendingEnrolKey is the key being enrolled, or nil.
func (ui *UI) sharedPendingEnrolKey(key [32]byte) *otp.Key {
	ws, err := ui.opts.Shared.GetWeb(context.Background(), key)
	if err != nil || ws.Enrol == "" {
		return nil
	}
	k, err := otp.NewKeyFromURL(ws.Enrol)
	if err != nil {
		return nil
	}
	return k
}

// sharedEnrolled forgets the key being enrolled.
func (ui *UI) sharedEnrolled(key [32]byte) {
	ctx, sh := context.Background(), ui.opts.Shared
	ws, err := sh.GetWeb(ctx, key)
	if err == nil {
		ws.Enrol = ""
		err = sh.UpdateWeb(ctx, key, ws)
	}
	if err != nil && !errors.Is(err, etcdsess.ErrNotFound) {
		// Harmless: the user has 2FA now, nothing serves the key.
		ui.log.Error("webui: forget an enrolled TOTP key in the cluster", "err", err)
	}
}
