package webui

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// SignupMode says who may create an account on /ui/signup.
type SignupMode string

// The modes (serve --signup).
const (
	SignupOff    SignupMode = "off"    // /ui/signup answers 404
	SignupInvite SignupMode = "invite" // only with an invitation's token
	SignupOpen   SignupMode = "open"   // anyone, with the default rights; invitations work too
)

// ParseSignupMode parses --signup.
func ParseSignupMode(s string) (SignupMode, error) {
	switch m := SignupMode(s); m {
	case SignupOff, SignupInvite, SignupOpen:
		return m, nil
	case "":
		return SignupOff, nil
	}
	return "", fmt.Errorf("webui: sign-up mode %q: want off, invite or open", s)
}

// Accounts is what the sign-up and admin pages need from the management
// layer; *admin.Local implements it. The pages call the same operations as
// `securefsd user ...`, so the same checks (password policy, names, homes a
// deleted user left) apply whichever way an account is made or changed.
type Accounts interface {
	// users
	ListUsers(ctx context.Context) ([]users.User, error)
	AddUser(ctx context.Context, req admin.AddUserRequest) error
	SetUser(ctx context.Context, name string, req admin.SetUserRequest) error
	SetDisabled(ctx context.Context, name string, disabled bool) error
	ResetTwoFactor(ctx context.Context, name string) error
	// the self-service page (the user's own account)
	SetPassword(ctx context.Context, name string, password []byte) error
	AddKey(ctx context.Context, name, authorizedKey string) (users.Key, error)
	DelKey(ctx context.Context, name, fingerprint string) error
	DeleteUser(ctx context.Context, name string, purge bool, progress func(admin.Progress)) error
	// invitations and sign-up
	CreateInvite(ctx context.Context, req admin.InviteRequest) (admin.InviteCreated, error)
	ListInvites(ctx context.Context) ([]shares.Invite, error)
	RevokeInvite(ctx context.Context, id string) error
	LookupInvite(ctx context.Context, token string) (shares.Invite, error)
	SignUp(ctx context.Context, req admin.SignUpRequest) (users.User, error)
	// shared folders and groups
	admin.FolderManager
	// live sessions
	admin.SessionManager
	// bans and share links
	ListBans(ctx context.Context) ([]users.Ban, error)
	Unban(ctx context.Context, who string) error
	ListShares(ctx context.Context, user string) ([]shares.Public, error)
	RevokeShare(ctx context.Context, id string) error
}

// AccountsOptions configure EnableAccounts.
type AccountsOptions struct {
	Accounts Accounts // required
	Signup   SignupMode
	// SignupPerms and SignupQuota are the rights of an open sign-up's
	// account (an invitation carries its own).
	SignupPerms users.Perm
	SignupQuota int64
	// Trail, when set, gives admins the audit trail's view and CSV export
	// (adminaudit.go).
	Trail TrailReader
}

// accountsUI holds the sign-up and admin pages' state.
type accountsUI struct {
	opts                 AccountsOptions
	signup, admin, audit *template.Template
}

// EnableAccounts turns on /ui/signup (unless the mode is off) and the admin
// page /ui/admin/ for users with the admin role. Call it before serving.
func EnableAccounts(ui *UI, opts AccountsOptions) error {
	if opts.Accounts == nil {
		return errors.New("webui: AccountsOptions.Accounts is required")
	}
	if opts.Signup == "" {
		opts.Signup = SignupOff
	}
	if _, err := ParseSignupMode(string(opts.Signup)); err != nil {
		return err
	}
	a := &accountsUI{opts: opts}
	parse := func(name string) (*template.Template, error) {
		t, err := template.New(name).ParseFS(assetFS, "assets/layout.html", "assets/"+name)
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", name, err)
		}
		return t, nil
	}
	var err error
	if a.signup, err = parse("signup.html"); err != nil {
		return err
	}
	if a.admin, err = parse("admin.html"); err != nil {
		return err
	}
	if a.audit, err = parse("audit.html"); err != nil {
		return err
	}
	ui.accounts = a
	return nil
}

type signupPage struct {
	base
	FormToken string // double submit, as the login form's
	Invite    string // the invitation token, "" for an open sign-up
	Username  string
	Gone      string // why the invitation cannot be used; no form then
	Done      bool
	Rights    string
}

// handleSignup serves /ui/signup. No session: the form is protected like
// the login form (same-origin check, double-submit token in a cookie);
// the invitation token is the capability, an open sign-up's budget is the
// address's in the login defender.
func (ui *UI) handleSignup(w http.ResponseWriter, r *http.Request) {
	a := ui.accounts
	if a == nil || a.opts.Signup == SignupOff {
		ui.renderError(w, r, nil, http.StatusNotFound, "There is no such page.")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		token := r.URL.Query().Get("token")
		if token == "" && a.opts.Signup != SignupOpen {
			ui.renderError(w, r, nil, http.StatusNotFound, "Sign-up needs an invitation link.")
			return
		}
		p := signupPage{Invite: token}
		if token != "" {
			iv, status, gone := ui.checkInvite(r, token)
			if gone != "" {
				ui.renderSignup(w, r, status, signupPage{Gone: gone})
				return
			}
			p.Rights = describeRights(iv.Perms, iv.QuotaBytes)
		} else {
			p.Rights = describeRights(a.opts.SignupPerms, a.opts.SignupQuota)
		}
		ui.renderSignup(w, r, http.StatusOK, p)
	case http.MethodPost:
		ui.doSignup(w, r)
	default:
		ui.methodNotAllowed(w, "GET, HEAD, POST")
	}
}

// checkInvite looks token up; for a dead one it returns the status and
// message to show. An unknown token costs the address one failure in the
// defender, like a wrong password.
func (ui *UI) checkInvite(r *http.Request, token string) (shares.Invite, int, string) {
	iv, err := ui.accounts.opts.Accounts.LookupInvite(r.Context(), token)
	switch {
	case err == nil:
		return iv, http.StatusOK, ""
	case errors.Is(err, shares.ErrInviteUsed):
		return iv, http.StatusGone, "This invitation has already been used. Ask for a new one."
	case errors.Is(err, shares.ErrInviteExpired):
		return iv, http.StatusGone, "This invitation has expired. Ask for a new one."
	case errors.Is(err, shares.ErrNotFound):
		if ui.opts.Users.ChargeSignup(r.RemoteAddr) != nil {
			return iv, http.StatusTooManyRequests, signupBannedMsg
		}
		ui.log.Warn("webui: sign-up with an unknown invitation", "remote", r.RemoteAddr)
		return iv, http.StatusNotFound, "This invitation does not exist or was revoked."
	}
	ui.log.Error("webui: look up invitation", "err", err)
	return iv, http.StatusInternalServerError, "The invitation could not be checked. Please try again."
}

const signupBannedMsg = "Too many attempts from your address. Please try again later."

func describeRights(p users.Perm, quota int64) string {
	s := p.String()
	if p == users.PermAll {
		s = "all rights"
	} else if p == users.PermReadOnly {
		s = "read only"
	}
	if quota > 0 {
		s += ", " + humanSize(quota) + " of storage"
	}
	return s
}

func (ui *UI) renderSignup(w http.ResponseWriter, r *http.Request, status int, p signupPage) {
	var token string
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 43 && strings.Trim(c.Value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == "" {
		token = c.Value
	} else {
		token, _ = randomToken(32)
		http.SetCookie(w, ui.cookie(loginCookie, token, 0))
	}
	msg := p.Error
	p.base = ui.base("Create an account", nil)
	p.FormToken = token
	p.Error = msg
	if p.Gone != "" {
		p.Error = p.Gone
	}
	ui.render(w, r, ui.accounts.signup, status, p)
}

func (ui *UI) doSignup(w http.ResponseWriter, r *http.Request) {
	a := ui.accounts
	if !ui.readPublicForm(w, r, "sign-up") {
		return
	}
	token := r.PostForm.Get("invite")
	name := strings.TrimSpace(r.PostForm.Get("username"))
	again := signupPage{Invite: token, Username: name}
	c, err := r.Cookie(loginCookie)
	ft := r.PostForm.Get("token")
	if err != nil || ft == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(ft)) != 1 {
		ui.log.Warn("webui: sign-up without a valid form token", "remote", r.RemoteAddr)
		again.Error = "The sign-up form expired. Please try again."
		ui.renderSignup(w, r, http.StatusForbidden, again)
		return
	}
	if token == "" && a.opts.Signup != SignupOpen {
		ui.renderError(w, r, nil, http.StatusNotFound, "Sign-up needs an invitation link.")
		return
	}
	password := []byte(r.PostForm.Get("password"))
	defer clear(password)
	if r.PostForm.Get("password2") != string(password) {
		again.Error = "The two passwords differ."
		ui.renderSignup(w, r, http.StatusBadRequest, again)
		return
	}
	req := admin.SignUpRequest{Token: token, Name: name, Password: password}
	if token == "" {
		// Every open sign-up, good or bad, costs the address: accounts and
		// Argon2id runs come no faster than the defender allows guesses.
		if err := ui.opts.Users.ChargeSignup(r.RemoteAddr); err != nil {
			ui.log.Warn("webui: sign-up refused while banned", "remote", r.RemoteAddr)
			ui.renderSignup(w, r, http.StatusTooManyRequests, signupPage{Gone: signupBannedMsg})
			return
		}
		req.Perms, req.QuotaBytes = a.opts.SignupPerms, a.opts.SignupQuota
		again.Rights = describeRights(req.Perms, req.QuotaBytes)
	} else if ui.opts.Users.Banned(r.RemoteAddr) {
		ui.renderSignup(w, r, http.StatusTooManyRequests, signupPage{Gone: signupBannedMsg})
		return
	} else if iv, status, gone := ui.checkInvite(r, token); gone != "" {
		ui.renderSignup(w, r, status, signupPage{Gone: gone})
		return
	} else {
		again.Rights = describeRights(iv.Perms, iv.QuotaBytes)
	}
	u, err := a.opts.Accounts.SignUp(admin.WithRemote(r.Context(), r.RemoteAddr), req)
	if err != nil {
		status, msg := signupError(err)
		if status == http.StatusGone || status == http.StatusNotFound {
			ui.renderSignup(w, r, status, signupPage{Gone: msg})
			return
		}
		if status == http.StatusConflict && token != "" {
			// A taken name leaves the invitation unused: without a cost,
			// its holder could probe which user names exist.
			_ = ui.opts.Users.ChargeSignup(r.RemoteAddr)
		}
		if status == http.StatusInternalServerError {
			ui.log.Error("webui: sign-up", "user", name, "remote", r.RemoteAddr, "err", err)
		} else {
			ui.log.Info("webui: sign-up refused", "user", name, "remote", r.RemoteAddr, "err", err)
		}
		again.Error = msg
		ui.renderSignup(w, r, status, again)
		return
	}
	via := "open"
	if token != "" {
		via = "invitation"
	}
	ui.log.Info("webui: signed up", "user", u.Name, "via", via, "perms", u.Perms.String(), "remote", r.RemoteAddr)
	ui.renderSignup(w, r, http.StatusOK, signupPage{Done: true, Username: u.Name})
}

// signupError maps a sign-up failure to a status and a fixed message (the
// password policy's reason is shown: it names no secret).
func signupError(err error) (int, string) {
	var weak string
	if errors.Is(err, pwpolicy.ErrWeak) {
		weak = "Choose a stronger password: "
		switch {
		case errors.Is(err, pwpolicy.ErrTooShort):
			weak += "it is too short."
		case errors.Is(err, pwpolicy.ErrCommon):
			weak += "it is one of the most common passwords."
		case errors.Is(err, pwpolicy.ErrContainsName):
			weak += "it contains your user name."
		default:
			weak += "it does not meet the password rules."
		}
		return http.StatusBadRequest, weak
	}
	switch {
	case errors.Is(err, shares.ErrInviteUsed):
		return http.StatusGone, "This invitation has already been used. Ask for a new one."
	case errors.Is(err, shares.ErrInviteExpired):
		return http.StatusGone, "This invitation has expired. Ask for a new one."
	case errors.Is(err, shares.ErrNotFound):
		return http.StatusNotFound, "This invitation does not exist or was revoked."
	case errors.Is(err, shares.ErrInviteGroup):
		return http.StatusGone, "The group this invitation was for no longer exists. Ask for a new invitation."
	case errors.Is(err, users.ErrExists), errors.Is(err, admin.ErrHomeExists):
		return http.StatusConflict, "That user name is taken. Choose another."
	case errors.Is(err, users.ErrInvalid):
		return http.StatusBadRequest, "User names are 1 to 64 of a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'."
	}
	return http.StatusInternalServerError, "The account could not be created. Please try again later."
}
