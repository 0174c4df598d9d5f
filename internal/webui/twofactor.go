package webui

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/etcdsess"
	"github.com/securefsd/securefsd/internal/users"
)

// The browser's second login step (issue 18). A correct password of a user
// with 2FA does not make a session: it makes a pending login, held in
// memory under SHA-256 of a random 32-byte token that travels in its own
// cookie (Path the prefix, HttpOnly, SameSite=Strict, five minutes), and
// shows the code form. The code (TOTP or recovery code) is checked by
// users.VerifySecondFactor, which scores a wrong one in the login defender
// like a wrong password and refuses a replayed one. A pending login allows
// maxCodeTries wrong codes, then the password must be given again; it ends
// when it expires, on success, and when the user's password changes
// meanwhile. Only then is the session made, with a fresh id.

const (
	pendingCookie = "sfsd_2fa"
	// pendingTTL is how long the code form waits after the password.
	pendingTTL = 5 * time.Minute
	// maxCodeTries wrong codes end a pending login.
	maxCodeTries = 5
)

// pendingLogin is a password login waiting for its code.
type pendingLogin struct {
	name    string
	pwHash  string // the password hash the password was verified against
	rev     uint64 // users.DB.Revision read before the password check
	next    string
	expires time.Time
	tries   int
}

type codePage struct {
	base
}

// startSecondStep holds u's verified password login as pending and shows
// the code form.
func (ui *UI) startSecondStep(w http.ResponseWriter, r *http.Request, u users.User, rev uint64, next string) {
	id, raw := randomToken(32)
	now := ui.now()
	if sh := ui.opts.Shared; sh != nil {
		// In etcd: the code may come to any node of the cluster.
		err := sh.PutPending(r.Context(), sessionKey(raw), etcdsess.PendingLogin{User: u.Name, PwHash: u.PasswordHash, Next: next,
			Expires: now.Add(pendingTTL)}, pendingTTL)
		if err != nil {
			ui.log.Error("webui: store a pending login in the cluster", "user", u.Name, "err", err)
			ui.showLogin(w, r, http.StatusInternalServerError, next, u.Name, "The server could not sign you in. Please try again.", "")
			return
		}
		ui.secondStepStarted(w, r, u, id)
		return
	}
	ui.mu.Lock()
	for k, p := range ui.pending {
		if !now.Before(p.expires) {
			delete(ui.pending, k)
		}
	}
	if len(ui.pending) >= ui.opts.MaxSessions {
		// Full of live pending logins (each cost a correct password):
		// drop the one closest to expiry.
		var oldest [32]byte
		var t time.Time
		for k, p := range ui.pending {
			if t.IsZero() || p.expires.Before(t) {
				oldest, t = k, p.expires
			}
		}
		delete(ui.pending, oldest)
	}
	ui.pending[sessionKey(raw)] = &pendingLogin{name: u.Name, pwHash: u.PasswordHash, rev: rev, next: next, expires: now.Add(pendingTTL)}
	ui.mu.Unlock()
	ui.secondStepStarted(w, r, u, id)
}

// secondStepStarted sets the pending login's cookie and shows the code
// form.
func (ui *UI) secondStepStarted(w http.ResponseWriter, r *http.Request, u users.User, id string) {
	ui.log.Info("webui: password accepted, waiting for the second factor", "user", u.Name, "remote", r.RemoteAddr)
	http.SetCookie(w, ui.cookie(pendingCookie, id, int(pendingTTL/time.Second)))
	http.SetCookie(w, ui.cookie(loginCookie, "", -1))
	http.Redirect(w, r, ui.opts.Prefix+"login/code", http.StatusSeeOther)
}

// pendingFor finds the request's live pending login.
func (ui *UI) pendingFor(r *http.Request) ([32]byte, *pendingLogin, bool) {
	c, err := r.Cookie(pendingCookie)
	if err != nil {
		return [32]byte{}, nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(raw) != 32 {
		return [32]byte{}, nil, false
	}
	key := sessionKey(raw)
	if sh := ui.opts.Shared; sh != nil {
		// The revision before the user is read again at the code's
		// check (doCode): a password change racing is seen.
		rev := ui.opts.Users.Revision()
		sp, err := sh.GetPending(r.Context(), key)
		if err != nil || !ui.now().Before(sp.Expires) {
			if err != nil && !errors.Is(err, etcdsess.ErrNotFound) {
				ui.log.Error("webui: read a pending login in the cluster", "err", err)
			}
			return key, nil, false
		}
		return key, &pendingLogin{name: sp.User, pwHash: sp.PwHash, rev: rev, next: sp.Next, expires: sp.Expires, tries: sp.Tries}, true
	}
	ui.mu.Lock()
	defer ui.mu.Unlock()
	p, ok := ui.pending[key]
	if !ok {
		return key, nil, false
	}
	if !ui.now().Before(p.expires) {
		delete(ui.pending, key)
		return key, nil, false
	}
	cp := *p
	return key, &cp, true
}

// handleCode serves /ui/login/code: the code form (GET) and its check (POST).
func (ui *UI) handleCode(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, _, ok := ui.pendingFor(r); !ok {
			http.Redirect(w, r, ui.opts.Prefix+"login?expired=1", http.StatusSeeOther)
			return
		}
		ui.render(w, r, ui.pages.code, http.StatusOK, codePage{base: ui.base("Two-factor sign-in", nil)})
	case http.MethodPost:
		ui.doCode(w, r)
	default:
		ui.methodNotAllowed(w, "GET, HEAD, POST")
	}
}

func (ui *UI) doCode(w http.ResponseWriter, r *http.Request) {
	if !ui.readPublicForm(w, r, "code") {
		return
	}
	key, p, ok := ui.pendingFor(r)
	sh := ui.opts.Shared
	if ok && sh != nil {
		// As below, on the record in etcd (one transaction per try).
		sp, taken, err := sh.TakePendingTry(r.Context(), key, maxCodeTries)
		if err != nil {
			ui.log.Error("webui: take a try of a pending login in the cluster", "err", err)
		}
		ok = taken && err == nil
		p.tries = sp.Tries
	} else if ok {
		// Take one of the pending login's tries before the check, so
		// parallel guesses on one pending login get maxCodeTries in all.
		ui.mu.Lock()
		if cur, live := ui.pending[key]; !live {
			ok = false
		} else if cur.tries >= maxCodeTries {
			delete(ui.pending, key)
			ok = false
		} else {
			cur.tries++
		}
		ui.mu.Unlock()
	}
	if !ok {
		http.SetCookie(w, ui.cookie(pendingCookie, "", -1))
		http.Redirect(w, r, ui.opts.Prefix+"login?expired=1", http.StatusSeeOther)
		return
	}
	code := r.PostForm.Get("code")
	method, err := ui.opts.Users.VerifySecondFactor(r.Context(), "web", r.RemoteAddr, p.name, code)
	if err != nil {
		if errors.Is(err, users.ErrBanned) {
			_ = ui.opts.Users.PaceRefusal(r.Context())
		}
		ui.log.Warn("webui: second factor failed", "user", p.name, "remote", r.RemoteAddr, "err", err)
		left := false
		if sh != nil {
			if left = p.tries < maxCodeTries; !left {
				_, _ = sh.DeletePending(r.Context(), key)
			}
		} else {
			ui.mu.Lock()
			if cur, ok := ui.pending[key]; ok {
				if cur.tries >= maxCodeTries {
					delete(ui.pending, key)
				} else {
					left = true
				}
			}
			ui.mu.Unlock()
		}
		if !left {
			http.SetCookie(w, ui.cookie(pendingCookie, "", -1))
			ui.showLogin(w, r, http.StatusUnauthorized, p.next, p.name, "Too many wrong codes. Please sign in again.", "")
			return
		}
		data := codePage{base: ui.base("Two-factor sign-in", nil)}
		data.Error = "That code is not right, was already used, or there were too many failed attempts. Please try again."
		ui.render(w, r, ui.pages.code, http.StatusUnauthorized, data)
		return
	}
	var still bool
	if sh != nil {
		// One node takes it: a code sent to two nodes at once makes one session.
		still, err = sh.DeletePending(r.Context(), key)
		still = still && err == nil
	} else {
		ui.mu.Lock()
		_, still = ui.pending[key]
		delete(ui.pending, key)
		ui.mu.Unlock()
	}
	u, gerr := ui.opts.Users.Get(r.Context(), p.name)
	if !still || gerr != nil || u.Disabled || subtle.ConstantTimeCompare([]byte(u.PasswordHash), []byte(p.pwHash)) != 1 {
		// Used twice at once, or the account changed since the password.
		http.SetCookie(w, ui.cookie(pendingCookie, "", -1))
		ui.showLogin(w, r, http.StatusUnauthorized, p.next, p.name, loginFailedMsg, "")
		return
	}
	if old, err := ui.sessionFor(r); err == nil {
		ui.dropSession(old.key, "replaced")
	}
	id, err := ui.newSession(r.Context(), u, p.rev, r.RemoteAddr)
	if err != nil {
		ui.log.Error("webui: create session", "user", u.Name, "err", err)
		ui.showLogin(w, r, http.StatusInternalServerError, p.next, p.name, "The server could not open your files. Please contact the administrator.", "")
		return
	}
	ui.log.Info("webui: login", "user", u.Name, "remote", r.RemoteAddr, "second_factor", method)
	ui.auditSession(r, u.Name, id, audit.OpSessionOpen)
	http.SetCookie(w, ui.cookie(sessionCookie, id, 0))
	http.SetCookie(w, ui.cookie(pendingCookie, "", -1))
	target := ui.safeNext(p.next)
	if method == "recovery-code" {
		ui.setFlash(sessionKey(mustDecode(id)), "You signed in with a recovery code; it cannot be used again. "+
			"Codes left: "+strconv.Itoa(len(u.TwoFactor.Recovery))+". New ones can be made on your account page.")
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func mustDecode(id string) []byte {
	b, _ := base64.RawURLEncoding.DecodeString(id)
	return b
}

// issuer names the server in authenticator apps.
func (ui *UI) issuer() string {
	if ui.opts.Issuer != "" {
		return ui.opts.Issuer
	}
	return "securefsd"
}

// handleEnrolQR serves the QR code of the session's TOTP key being enrolled
// as a PNG from our own origin (the CSP allows images only from 'self').
func (ui *UI) handleEnrolQR(w http.ResponseWriter, r *http.Request, s *sessionView) {
	k := ui.pendingEnrolKey(s.key)
	if k == nil || s.user.TwoFactor != nil {
		ui.renderError(w, r, s, http.StatusNotFound, "There is no such page.")
		return
	}
	img, err := k.Image(240, 240)
	if err != nil {
		ui.log.Error("webui: QR code", "user", s.user.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		ui.log.Error("webui: QR code", "user", s.user.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// groupSecret spaces a base32 secret in fours for typing it by hand.
func groupSecret(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}
