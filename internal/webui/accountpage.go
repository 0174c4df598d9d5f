package webui

import (
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/users"
)

// The self-service page /ui/account/ (issue 18): every signed-in user's own
// password (asks the old one, applies the server's password policy, ends
// the user's other browser sessions; cached WebDAV logins die with the old
// hash), SSH public keys, quota and recent logins, two-factor login (enrol
// with a QR code and a confirming code, new recovery codes, switch off
// with a code unless the server requires 2FA) and app passwords (create,
// shown once; revoke). ServeHTTP has applied the session, same-origin and
// CSRF rules. Under --require-2fa a user without 2FA is sent here by every
// other page until enrolled.
//
// Routes: GET /ui/account/ (the page), GET /ui/account/qr (the PNG of the
// key being enrolled), POST /ui/account/ACTION, ACTION one of password,
// key-add, key-del, 2fa-enrol, 2fa-off, recovery-new, app-add, app-revoke.

func (ui *UI) accountRoute() (get, post handlerFunc) {
	return ui.handleAccountPage, ui.handleAccountAction
}

type loginRow struct{ Time, Proto, Remote, Method string }

type appRow struct{ ID, Name, Protocols, Created, LastUsed string }

type keyRow struct{ Fingerprint, Comment, Added string }

type accountPage struct {
	base
	CanManage    bool // password and keys (the management layer is on)
	Usage        string
	Keys         []keyRow
	Logins       []loginRow
	TwoFactor    bool
	RecoveryLeft int
	Require      bool
	MustEnrol    bool
	// enrolment in progress
	Enrol  bool
	QRURL  string
	Secret string
	OTPURL template.URL // otpauth://, which html/template would refuse as a plain string
	// shown once
	Recovery   []string
	NewApp     string
	NewAppName string
	Apps       []appRow
}

func (ui *UI) handleAccountPage(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	switch name {
	case "/":
	case "/qr":
		ui.handleEnrolQR(w, r, s)
		return
	default:
		ui.renderError(w, r, s, http.StatusNotFound, "There is no such page.")
		return
	}
	p := accountPage{base: ui.base("Your account", s)}
	p.Flash = ui.takeFlash(s.key)
	if s.mustEnrol && p.Flash == "" {
		p.Flash = "This server requires two-factor sign-in: set it up below to continue."
	}
	ui.renderAccount(w, r, s, http.StatusOK, p)
}

// renderAccount fills p from the session's user and renders the page.
func (ui *UI) renderAccount(w http.ResponseWriter, r *http.Request, s *sessionView, status int, p accountPage) {
	u, err := ui.opts.Users.Get(r.Context(), s.user.Name)
	if err != nil {
		ui.log.Error("webui: account page", "user", s.user.Name, "err", err)
		ui.renderError(w, r, s, http.StatusInternalServerError, "Something went wrong on the server. Please try again.")
		return
	}
	p.CanManage = ui.accounts != nil
	p.Require = ui.opts.Users.Require2FA()
	p.MustEnrol = ui.mustEnrol(u)
	if us, err := s.fs.Usage(); err == nil {
		p.Usage = humanSize(us.UsedBytes) + " used"
		if us.QuotaBytes > 0 {
			p.Usage += " of " + humanSize(us.QuotaBytes)
		} else {
			p.Usage += " (no quota)"
		}
	}
	for _, k := range u.Keys {
		p.Keys = append(p.Keys, keyRow{Fingerprint: k.Fingerprint, Comment: k.Comment, Added: k.Added.Local().Format(time.DateTime)})
	}
	for _, l := range u.Logins {
		p.Logins = append(p.Logins, loginRow{Time: l.Time.Local().Format(time.DateTime), Proto: protoLabel(l.Proto), Remote: l.Remote, Method: l.Method})
	}
	if u.TwoFactor != nil {
		p.TwoFactor, p.RecoveryLeft = true, len(u.TwoFactor.Recovery)
		for _, a := range u.AppPasswords {
			row := appRow{ID: a.ID, Name: a.Name, Protocols: strings.Join(a.Protocols, ", "), Created: a.Created.Local().Format(time.DateTime), LastUsed: "never"}
			if !a.LastUsed.IsZero() {
				row.LastUsed = a.LastUsed.Local().Format(time.DateTime)
			}
			p.Apps = append(p.Apps, row)
		}
	} else if p.Recovery == nil {
		k, err := ui.enrolKey(s.key, u.Name)
		if err != nil {
			ui.log.Error("webui: TOTP key", "user", u.Name, "err", err)
		} else {
			p.Enrol, p.Secret, p.OTPURL = true, groupSecret(k.Secret()), template.URL(k.URL()) // made here by the library, not from input
			p.QRURL = ui.opts.Prefix + "account/qr"
		}
	}
	ui.render(w, r, ui.pages.account, status, p)
}

func protoLabel(p string) string {
	switch p {
	case "dav":
		return "WebDAV"
	case "ssh":
		return "SFTP/SSH"
	case "web":
		return "browser"
	}
	return p
}

var (
	errWrongPassword = errors.New("webui: the current password is wrong")
	errPasswordsDiff = errors.New("webui: the new passwords differ")
	errNoManage      = errors.New("webui: account management is off")
)

// handleAccountAction runs one POSTed self-service action.
func (ui *UI) handleAccountAction(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	action := strings.TrimPrefix(name, "/")
	f := r.PostForm
	// Password and key changes go through the management operations, which
	// record them in the audit trail with this user as the actor.
	ctx := admin.WithActor(r.Context(), s.user.Name)
	db := ui.opts.Users
	attrs := []any{"user", s.user.Name, "remote", r.RemoteAddr}
	var msg, detail string
	var err error
	defer func() { ui.auditAccount(r, s, action, detail, err) }()
	page := accountPage{base: ui.base("Your account", s)}
	switch action {
	case "password":
		old, pw, pw2 := []byte(f.Get("old")), []byte(f.Get("new")), []byte(f.Get("new2"))
		defer clear(old)
		defer clear(pw)
		defer clear(pw2)
		if ui.accounts == nil {
			err = errNoManage
			break
		}
		if string(pw) != string(pw2) {
			err = errPasswordsDiff
			break
		}
		// The old password, checked like a login (defender included).
		if _, aerr := db.AuthPassword(ctx, "web", r.RemoteAddr, s.user.Name, old); aerr != nil {
			if errors.Is(aerr, users.ErrBanned) {
				_ = db.PaceRefusal(ctx)
			}
			err = errWrongPassword
			break
		}
		if err = ui.accounts.opts.Accounts.SetPassword(ctx, s.user.Name, pw); err != nil {
			break
		}
		rev := db.Revision()
		u, gerr := db.Get(ctx, s.user.Name)
		if gerr != nil {
			err = gerr
			break
		}
		ui.rebindSession(ctx, s.key, u, rev)
		n := ui.endOtherSessions(ctx, s.user.Name, s.key)
		attrs = append(attrs, "other_sessions_ended", n)
		msg = "Your password was changed. Your other browser sessions were ended, and WebDAV and SFTP clients must use the new password."
		if u.TwoFactor != nil {
			msg = "Your password was changed. Your other browser sessions were ended; app passwords keep working."
		}
	case "key-add":
		if ui.accounts == nil {
			err = errNoManage
			break
		}
		var k users.Key
		if k, err = ui.accounts.opts.Accounts.AddKey(ctx, s.user.Name, f.Get("key")); err != nil {
			break
		}
		msg = "Key " + k.Fingerprint + " added."
		attrs = append(attrs, "fingerprint", k.Fingerprint)
	case "key-del":
		if ui.accounts == nil {
			err = errNoManage
			break
		}
		fp := strings.TrimSpace(f.Get("fingerprint"))
		if !strings.HasPrefix(fp, "SHA256:") { // only the exact key shown, never a comment
			err = users.ErrNotFound
			break
		}
		err = ui.accounts.opts.Accounts.DelKey(ctx, s.user.Name, fp)
		msg = "Key " + fp + " removed; SSH sessions logged in with it end."
		attrs = append(attrs, "fingerprint", fp)
	case "2fa-enrol":
		k := ui.pendingEnrolKey(s.key)
		if k == nil {
			err = users.ErrNoTwoFactor
			break
		}
		var codes []string
		if codes, err = db.EnableTwoFactor(ctx, s.user.Name, k.Secret(), f.Get("code")); err != nil {
			break
		}
		ui.enrolled(s.key)
		ui.log.Info("webui: account 2fa-enrol", attrs...)
		page.Flash = "Two-factor sign-in is on. Keep these recovery codes somewhere safe: each works once, and they are shown only now."
		page.Recovery = codes
		ui.renderAccount(w, r, s, http.StatusOK, page)
		return
	case "recovery-new":
		var codes []string
		if codes, err = db.NewRecoveryCodes(ctx, s.user.Name); err != nil {
			break
		}
		ui.log.Info("webui: account recovery-new", attrs...)
		page.Flash = "New recovery codes; the old ones no longer work. They are shown only now."
		page.Recovery = codes
		ui.renderAccount(w, r, s, http.StatusOK, page)
		return
	case "2fa-off":
		err = db.DisableTwoFactor(ctx, r.RemoteAddr, s.user.Name, f.Get("code"))
		msg = "Two-factor sign-in is off; your app passwords were removed."
	case "app-add":
		var ps []string
		for _, p := range []string{users.ProtoWebDAV, users.ProtoSFTP} {
			if f.Get(p) != "" {
				ps = append(ps, p)
			}
		}
		ap, pw, aerr := db.AddAppPassword(ctx, s.user.Name, f.Get("name"), ps)
		if err = aerr; err != nil {
			break
		}
		attrs = append(attrs, "app_password", ap.ID, "protocols", strings.Join(ap.Protocols, ","))
		detail = "id=" + ap.ID + " protocols=" + strings.Join(ap.Protocols, ",")
		ui.log.Info("webui: account app-add", attrs...)
		page.Flash = "App password created. Copy it now: it is shown only once."
		page.NewApp, page.NewAppName = pw, ap.Name
		ui.renderAccount(w, r, s, http.StatusOK, page)
		return
	case "app-revoke":
		id := strings.TrimSpace(f.Get("id"))
		err = db.RevokeAppPassword(ctx, s.user.Name, id)
		detail = "id=" + id
		msg = "App password revoked; it no longer works anywhere."
		attrs = append(attrs, "app_password", id)
	default:
		ui.renderError(w, r, s, http.StatusNotFound, "There is no such page.")
		return
	}
	if err != nil {
		status, text := accountError(err)
		attrs = append(attrs, "err", err)
		if status == http.StatusInternalServerError {
			ui.log.Error("webui: account "+action, attrs...)
		} else {
			ui.log.Warn("webui: account "+action+" refused", attrs...)
		}
		page.Error = text
		ui.renderAccount(w, r, s, status, page)
		return
	}
	ui.log.Info("webui: account "+action, attrs...)
	ui.setFlash(s.key, msg)
	http.Redirect(w, r, ui.opts.Prefix+"account/", http.StatusSeeOther)
}

// accountError maps a self-service failure to a status and a message.
func accountError(err error) (int, string) {
	if errors.Is(err, pwpolicy.ErrWeak) {
		_, msg := signupError(err)
		return http.StatusBadRequest, msg
	}
	switch {
	case errors.Is(err, errWrongPassword):
		return http.StatusForbidden, "The current password is not right (or there were too many failed attempts)."
	case errors.Is(err, errPasswordsDiff):
		return http.StatusBadRequest, "The two new passwords differ."
	case errors.Is(err, errNoManage):
		return http.StatusNotFound, "This server does not manage accounts from the browser."
	case errors.Is(err, users.ErrAuthFailed), errors.Is(err, users.ErrBanned):
		return http.StatusForbidden, "That code is not right, was already used, or there were too many failed attempts."
	case errors.Is(err, users.ErrTwoFactorOn):
		return http.StatusConflict, "Two-factor sign-in is already on."
	case errors.Is(err, users.ErrNoTwoFactor):
		return http.StatusBadRequest, "Two-factor sign-in is not on; app passwords need it."
	case errors.Is(err, users.ErrExists):
		return http.StatusConflict, "You already have that key or an app password of that name."
	case errors.Is(err, users.ErrNotFound):
		return http.StatusNotFound, "There is no such key or app password (any more)."
	case errors.Is(err, users.ErrInvalid):
		return http.StatusBadRequest, "A value is not valid: a key is one authorized_keys line (ed25519, ECDSA or RSA of 2048 bits or more); an app password needs a name and at least one of WebDAV and SFTP; two-factor sign-in cannot be switched off on a server that requires it."
	}
	return http.StatusInternalServerError, "Something went wrong on the server. Please try again."
}

// auditAccount records the self-service changes that do not go through
// the management operations (those record themselves): two-factor
// enrolment and removal, new recovery codes, app passwords.
func (ui *UI) auditAccount(r *http.Request, s *sessionView, action, detail string, err error) {
	op := audit.OpUser2FA
	switch action {
	case "2fa-enrol":
		detail = "enrol"
	case "2fa-off":
		detail = "off"
	case "recovery-new":
		detail = "recovery-new"
	case "app-add":
		op, detail = audit.OpAppPassword, strings.TrimSpace("add "+detail)
	case "app-revoke":
		op, detail = audit.OpAppPassword, "revoke "+detail
	default:
		return
	}
	ui.auditChange(r, s, op, s.user.Name, detail, err)
}
