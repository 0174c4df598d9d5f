package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pquerna/otp"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/etcdsess"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Cookie names. The session cookie is scoped to the prefix; the login
// cookie carries the double-submit token of the login form (login CSRF).
const (
	sessionCookie = "sfsd_session"
	loginCookie   = "sfsd_login"
)

// Why a request has no session; only logged, never shown in detail.
var (
	errNoSession   = errors.New("webui: no session")
	errExpired     = errors.New("webui: session expired")
	errUserChanged = errors.New("webui: user's password changed, or user disabled or deleted")
)

// session is the server-side state of one login. Fields are guarded by
// UI.mu; the map key is SHA-256 of the cookie's random 32 bytes, so a memory
// dump or a timing side channel on the map does not reveal usable ids.
type session struct {
	user     users.User // as of rev; PasswordHash is the login-time snapshot
	pwHash   string     // PasswordHash when the session was created
	rev      uint64     // users.DB.Revision when user was last checked
	fs       *vfs.FS
	csrf     string
	created  time.Time
	lastSeen time.Time
	remote   string // the address that signed in
	flash    string
	touched  time.Time // when this node last kept the shared record alive (shared.go)
	// mustEnrol: under --require-2fa a user without 2FA may only enrol
	// (the account page) or log out; re-evaluated with the user record.
	mustEnrol bool
	// enrolKey is the TOTP key being enrolled (shown as a QR code until
	// confirmed with a code); it lives only in this session's memory.
	enrolKey *otp.Key
}

// sessionView is what a handler gets: a copy, safe to use without the lock.
type sessionView struct {
	key       [32]byte
	user      users.User
	fs        *vfs.FS
	csrf      string
	mustEnrol bool
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) (string, []byte) {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b), b
}

func sessionKey(raw []byte) [32]byte { return sha256.Sum256(raw) }

// homeFor opens the user's home with the user's current quota and rights.
func (ui *UI) homeFor(u users.User) (*vfs.FS, error) {
	return account.OpenView(context.Background(), ui.opts.Store, ui.opts.Users, u)
}

// newSession stores a session for u and returns the cookie value. rev is
// the user DB revision read before authenticating, so a password change
// racing the login is still noticed on the next request.
func (ui *UI) newSession(ctx context.Context, u users.User, rev uint64, remote string) (string, error) {
	fsys, err := ui.homeFor(u)
	if err != nil {
		return "", fmt.Errorf("webui: open home of %s: %w", u.Name, err)
	}
	id, raw := randomToken(32)
	csrf, _ := randomToken(32)
	now := ui.now()
	s := &session{user: u, pwHash: u.PasswordHash, rev: rev, fs: fsys, csrf: csrf, created: now, lastSeen: now, touched: now, remote: remote,
		mustEnrol: ui.mustEnrol(u)}
	key := sessionKey(raw)
	if ui.opts.Shared != nil {
		// The caps are the cluster's; this node's map is a cache.
		if err := ui.putShared(ctx, key, s); err != nil {
			return "", fmt.Errorf("webui: store the session in the cluster: %w", err)
		}
		ui.mu.Lock()
		ui.sessions[key] = s
		ui.mu.Unlock()
		return id, nil
	}
	ui.mu.Lock()
	ended := ui.sweepLocked(now) // O(sessions) per sign-in, which already costs an Argon2id run
	// One user's sign-ins only ever push out that user's own oldest
	// session: signing in over and over signs nobody else out.
	if n, oldest := ui.userSessionsLocked(u.Name); n >= ui.opts.MaxSessionsPerUser {
		ended = append(ended, ui.endLocked(oldest, "evicted"))
	}
	if len(ui.sessions) >= ui.opts.MaxSessions {
		ended = append(ended, ui.dropFromBusiestLocked()...)
	}
	ui.sessions[key] = s
	ui.mu.Unlock()
	ui.recordEnded(ended)
	return id, nil
}

// An endedSession is a session that ended other than by sign-out, for
// its audit record.
type endedSession struct {
	user, why, id string
}

// endLocked removes the session under key and says so for recordEnded.
func (ui *UI) endLocked(key [32]byte, why string) endedSession {
	e := endedSession{why: why, id: sessionID(key)}
	if s, ok := ui.sessions[key]; ok {
		e.user = s.user.Name
	}
	delete(ui.sessions, key)
	return e
}

// recordEnded writes session.end records, outside ui.mu: a full audit
// queue may block, and must not block every other request with it.
func (ui *UI) recordEnded(es []endedSession) {
	if ui.opts.Audit == nil {
		return
	}
	for _, e := range es {
		if e.user == "" {
			continue
		}
		ui.opts.Audit.Record(audit.Record{User: e.user, Protocol: "web", Session: e.id, Op: audit.OpSessionEnd,
			Detail: "why=" + e.why, Result: audit.ResultOK})
	}
}

func (ui *UI) expiredLocked(s *session, now time.Time) bool {
	return now.Sub(s.lastSeen) >= ui.opts.IdleTimeout || now.Sub(s.created) >= ui.opts.MaxAge
}

// sweepLocked drops every expired session.
func (ui *UI) sweepLocked(now time.Time) []endedSession {
	var ended []endedSession
	for k, s := range ui.sessions {
		if ui.expiredLocked(s, now) {
			ended = append(ended, ui.endLocked(k, "expired"))
		}
	}
	return ended
}

// userSessionsLocked counts name's sessions and finds the least recently
// used one.
func (ui *UI) userSessionsLocked(name string) (n int, oldest [32]byte) {
	var t time.Time
	for k, s := range ui.sessions {
		if s.user.Name != name {
			continue
		}
		if n == 0 || s.lastSeen.Before(t) {
			oldest, t = k, s.lastSeen
		}
		n++
	}
	return n, oldest
}

// dropFromBusiestLocked makes room under the global cap (a memory bound,
// reached only with very many users) by dropping the least recently used
// session of the user who holds the most.
func (ui *UI) dropFromBusiestLocked() []endedSession {
	count := map[string]int{}
	busiest := ""
	for _, s := range ui.sessions {
		count[s.user.Name]++
		if c := count[s.user.Name]; c > count[busiest] || busiest == "" {
			busiest = s.user.Name
		}
	}
	if n, oldest := ui.userSessionsLocked(busiest); n > 0 {
		return []endedSession{ui.endLocked(oldest, "evicted")}
	}
	return nil
}

// sessionFor finds, checks and touches the request's session. The session
// dies when idle or too old, and when the user's record shows a different
// password hash, or the user is disabled or gone.
func (ui *UI) sessionFor(r *http.Request) (*sessionView, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errNoSession
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(raw) != 32 {
		return nil, errNoSession
	}
	key := sessionKey(raw)
	now := ui.now()

	sh := ui.opts.Shared
	ui.mu.Lock()
	s, ok := ui.sessions[key]
	if ok && sh != nil && now.Sub(s.lastSeen) >= ui.opts.IdleTimeout && now.Sub(s.created) < ui.opts.MaxAge {
		// Idle here, maybe not on other nodes: the store's lease tells.
		delete(ui.sessions, key)
		ok = false
	}
	if !ok && sh != nil {
		ui.mu.Unlock()
		if err := ui.loadShared(r.Context(), key); err != nil {
			return nil, err
		}
		ui.mu.Lock()
		s, ok = ui.sessions[key]
	}
	if !ok {
		ui.mu.Unlock()
		return nil, errNoSession
	}
	if ui.expiredLocked(s, now) {
		ui.mu.Unlock()
		ui.dropSession(key, "expired")
		return nil, errExpired
	}
	rev, name, pwHash := s.rev, s.user.Name, s.pwHash
	ui.mu.Unlock()
	if sh != nil && !ui.touchShared(r.Context(), key, now) {
		return nil, errNoSession
	}

	// Re-check the user record whenever any user changed. Revision is read
	// before Get so that a change during Get is seen next time.
	var fresh *users.User
	var freshFS *vfs.FS
	if cur := ui.opts.Users.Revision(); cur != rev {
		u, err := ui.opts.Users.Get(r.Context(), name)
		if err == nil && !u.Disabled && u.PasswordHash != pwHash && sh != nil && ui.sharedPwHashIs(r.Context(), key, u.PasswordHash) {
			// The password was changed through this very session, on
			// another node (rebindSession there).
			pwHash = u.PasswordHash
		}
		if err != nil || u.Disabled || u.PasswordHash != pwHash {
			if err != nil && !errors.Is(err, users.ErrNotFound) {
				ui.log.Error("webui: check session user", "user", name, "err", err)
			}
			ui.dropSession(key, "user-changed")
			return nil, errUserChanged
		}
		if freshFS, err = ui.homeFor(u); err != nil {
			ui.log.Error("webui: open home", "user", name, "err", err)
			ui.dropSession(key, "error")
			return nil, errUserChanged
		}
		fresh, rev = &u, cur
	}

	ui.mu.Lock()
	defer ui.mu.Unlock()
	s, ok = ui.sessions[key]
	if !ok { // logged out meanwhile
		return nil, errNoSession
	}
	if fresh != nil {
		s.user, s.fs, s.rev, s.pwHash = *fresh, freshFS, rev, fresh.PasswordHash
		s.mustEnrol = ui.mustEnrol(*fresh)
	}
	s.lastSeen = now
	return &sessionView{key: key, user: s.user, fs: s.fs, csrf: s.csrf, mustEnrol: s.mustEnrol}, nil
}

// mustEnrol: the server requires 2FA and u has none yet.
func (ui *UI) mustEnrol(u users.User) bool {
	return ui.opts.Users.Require2FA() && u.TwoFactor == nil
}

// rebindSession makes the session key belong to u's current record (after
// the user changed their own password here, which ends every other
// session of theirs), as of revision rev read before u.
func (ui *UI) rebindSession(ctx context.Context, key [32]byte, u users.User, rev uint64) {
	if sh := ui.opts.Shared; sh != nil {
		ws, err := sh.GetWeb(ctx, key)
		if err == nil {
			ws.PwHash = u.PasswordHash
			err = sh.UpdateWeb(ctx, key, ws)
		}
		if err != nil {
			// The session then ends at its next re-check of the user.
			ui.log.Error("webui: rebind the session in the cluster", "user", u.Name, "err", err)
		}
	}
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if s, ok := ui.sessions[key]; ok {
		s.user, s.pwHash, s.rev = u, u.PasswordHash, rev
		s.mustEnrol = ui.mustEnrol(u)
	}
}

// endOtherSessions ends every session of name but key.
func (ui *UI) endOtherSessions(ctx context.Context, name string, key [32]byte) int {
	if ui.opts.Shared != nil {
		self := sessionID(key)
		n, err := ui.endShared(ctx, "password-changed", func(ws etcdsess.WebSession) bool { return ws.User == name && ws.ID != self })
		if err != nil {
			// Their next re-check of the user ends them.
			ui.log.Error("webui: end the user's other sessions in the cluster", "user", name, "err", err)
		}
		return n
	}
	ui.mu.Lock()
	var ended []endedSession
	for k, s := range ui.sessions {
		if s.user.Name == name && k != key {
			ended = append(ended, ui.endLocked(k, "password-changed"))
		}
	}
	ui.mu.Unlock()
	ui.recordEnded(ended)
	return len(ended)
}

// enrolKey returns the session's TOTP key being enrolled, making one if
// there is none (a reload shows the same QR code).
func (ui *UI) enrolKey(key [32]byte, name string) (*otp.Key, error) {
	if ui.opts.Shared != nil {
		return ui.sharedEnrolKey(key, name)
	}
	ui.mu.Lock()
	defer ui.mu.Unlock()
	s, ok := ui.sessions[key]
	if !ok {
		return nil, errNoSession
	}
	if s.enrolKey == nil {
		k, err := users.NewTOTPKey(ui.issuer(), name)
		if err != nil {
			return nil, err
		}
		s.enrolKey = k
	}
	return s.enrolKey, nil
}

// pendingEnrolKey is the key being enrolled, or nil.
func (ui *UI) pendingEnrolKey(key [32]byte) *otp.Key {
	if ui.opts.Shared != nil {
		return ui.sharedPendingEnrolKey(key)
	}
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if s, ok := ui.sessions[key]; ok {
		return s.enrolKey
	}
	return nil
}

// enrolled forgets the key being enrolled and lifts mustEnrol.
func (ui *UI) enrolled(key [32]byte) {
	if ui.opts.Shared != nil {
		ui.sharedEnrolled(key)
	}
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if s, ok := ui.sessions[key]; ok {
		s.enrolKey, s.mustEnrol = nil, false
	}
}

// dropSession ends the session under key for the reason why, recorded in
// the audit trail unless why is "" (the caller records it).
func (ui *UI) dropSession(key [32]byte, why string) {
	ui.mu.Lock()
	e := ui.endLocked(key, why)
	ui.mu.Unlock()
	if sh := ui.opts.Shared; sh != nil {
		if _, err := sh.DeleteWeb(context.Background(), key); err != nil {
			ui.log.Error("webui: end a session in the cluster", "user", e.user, "err", err)
		}
	}
	if why != "" {
		ui.recordEnded([]endedSession{e})
	}
}

// takeFlash returns and clears the session's one-shot message.
func (ui *UI) takeFlash(key [32]byte) string {
	ui.mu.Lock()
	defer ui.mu.Unlock()
	s, ok := ui.sessions[key]
	if !ok {
		return ""
	}
	f := s.flash
	s.flash = ""
	return f
}

func (ui *UI) setFlash(key [32]byte, msg string) {
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if s, ok := ui.sessions[key]; ok {
		s.flash = msg
	}
}

// checkCSRF compares the submitted token with the session's in constant
// time. The token comes from the form field, or from the X-CSRF-Token header
// (XHR uploads).
func (ui *UI) checkCSRF(s *sessionView, r *http.Request, token string) bool {
	if token == "" {
		token = r.Header.Get("X-CSRF-Token")
	}
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

func (ui *UI) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     ui.opts.Prefix,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   ui.opts.Secure,
		SameSite: http.SameSiteStrictMode,
	}
}

// SessionCount reports how many sessions are held (expired ones included
// until swept); for tests and metrics.
func (ui *UI) SessionCount() int {
	ui.mu.Lock()
	defer ui.mu.Unlock()
	return len(ui.sessions)
}

// Logout ends every session of the named user (e.g. when an administrator
// disables the user; password changes are noticed without it).
func (ui *UI) Logout(ctx context.Context, name string) int {
	n, err := ui.endUserSessions(ctx, name, "logged-out")
	if err != nil {
		ui.log.Error("webui: end the user's sessions in the cluster", "user", name, "err", err)
	}
	return n
}

// endUserSessions ends every session of name, recorded with why.
func (ui *UI) endUserSessions(ctx context.Context, name, why string) (int, error) {
	if ui.opts.Shared != nil {
		return ui.endShared(ctx, why, func(ws etcdsess.WebSession) bool { return ws.User == name })
	}
	ui.mu.Lock()
	var ended []endedSession
	for k, s := range ui.sessions {
		if s.user.Name == name {
			ended = append(ended, ui.endLocked(k, why))
		}
	}
	ui.mu.Unlock()
	ui.recordEnded(ended)
	return len(ended), nil
}
