package webui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// The admin page (/ui/admin/) is for users with the admin role: users,
// invitations, shared folders and groups, bans and share links, through the same operations as the
// command line (Accounts). ServeHTTP has already applied the session,
// same-origin and CSRF rules; here the role is checked on every request
// against the session's user, which is re-read whenever the users
// database changes, so taking the role away takes effect at the next
// request. Anyone else gets the same 404 as for a page that does not
// exist. Every action is logged with admin=NAME.
//
// Routes: GET /ui/admin/ (the page); POST /ui/admin/ACTION with form
// fields, ACTION one of user-add, user-set, user-disable, user-enable,
// user-delete, user-2fa-reset, invite-create, invite-revoke, ban-lift, share-revoke,
// and the folder and group actions of adminfolders.go and session-kill
// (adminsessions.go).

func (ui *UI) adminRoute() (get, post handlerFunc) {
	if ui.accounts == nil {
		return nil, nil
	}
	return ui.handleAdminPage, ui.handleAdminAction
}

// isAdmin answers 404 to a user without the admin role.
func (ui *UI) isAdmin(w http.ResponseWriter, r *http.Request, s *sessionView) bool {
	if s.user.Admin && !s.user.Disabled {
		return true
	}
	ui.log.Warn("webui: admin page refused", "user", s.user.Name, "path", r.URL.Path, "method", r.Method, "remote", r.RemoteAddr)
	ui.renderError(w, r, s, http.StatusNotFound, "There is no such page.")
	return false
}

type adminUserRow struct {
	Name, Perms, PermsLabel, Quota, LastLogin string
	Disabled, Admin, Self, TwoFactor          bool
}

type adminInviteRow struct {
	ID, State, Perms, Group, Quota, Expires, UsedBy, CreatedBy string
	Open                                                       bool
}

type adminBanRow struct {
	Who, Kind, Until string
}

type adminLinkRow struct {
	ID, Owner, Path, Kind, Downloads, Expires string
}

type adminPage struct {
	base
	Users    []adminUserRow
	Invites  []adminInviteRow
	Bans     []adminBanRow
	Links    []adminLinkRow
	Folders  []adminFolderRow
	Groups   []adminGroupRow
	Sessions []adminSessionRow
	// SessionNodes: a cluster's sessions, each with its node's name.
	SessionNodes bool
	InviteURL    string // a new invitation's link, shown once
	Signup       string
}

func (ui *UI) handleAdminPage(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if !ui.isAdmin(w, r, s) {
		return
	}
	switch name {
	case "/":
	case "/audit":
		ui.handleAdminAudit(w, r, s)
		return
	case "/audit.csv":
		ui.handleAdminAuditCSV(w, r, s)
		return
	default:
		ui.renderError(w, r, s, http.StatusNotFound, "There is no such page.")
		return
	}
	p := adminPage{base: ui.base("Administration", s)}
	p.Flash = ui.takeFlash(s.key)
	ui.renderAdmin(w, r, s, http.StatusOK, p)
}

// renderAdmin fills p's tables and renders the page.
func (ui *UI) renderAdmin(w http.ResponseWriter, r *http.Request, s *sessionView, status int, p adminPage) {
	m := ui.accounts.opts.Accounts
	ctx := r.Context()
	p.Signup = string(ui.accounts.opts.Signup)
	us, err := m.ListUsers(ctx)
	if err != nil {
		ui.adminFailed(w, r, s, "list users", err)
		return
	}
	for _, u := range us {
		row := adminUserRow{Name: u.Name, Perms: u.Perms.String(), PermsLabel: describeRights(u.Perms, 0), Quota: "none", LastLogin: "never", Disabled: u.Disabled, Admin: u.Admin, Self: u.Name == s.user.Name, TwoFactor: u.TwoFactor != nil}
		if u.QuotaBytes > 0 {
			row.Quota = humanSize(u.QuotaBytes)
		}
		if !u.LastLogin.IsZero() {
			row.LastLogin = u.LastLogin.Local().Format(time.DateTime)
		}
		p.Users = append(p.Users, row)
	}
	ivs, err := m.ListInvites(ctx)
	if err != nil {
		ui.adminFailed(w, r, s, "list invitations", err)
		return
	}
	now := ui.now()
	for _, iv := range ivs {
		row := adminInviteRow{ID: iv.ID, State: iv.State(now), Perms: iv.Perms.String(), Group: iv.Group, Quota: "none", Expires: "never", UsedBy: iv.UsedBy, CreatedBy: iv.CreatedBy}
		row.Open = row.State == "open"
		if iv.QuotaBytes > 0 {
			row.Quota = humanSize(iv.QuotaBytes)
		}
		if !iv.Expires.IsZero() {
			row.Expires = iv.Expires.Local().Format(time.DateTime)
		}
		p.Invites = append(p.Invites, row)
	}
	if err := ui.fillFolders(ctx, &p); err != nil {
		ui.adminFailed(w, r, s, "list folders and groups", err)
		return
	}
	if err := ui.fillSessions(ctx, &p, sessionID(s.key)); err != nil && !errors.Is(err, admin.ErrNoServer) {
		ui.adminFailed(w, r, s, "list sessions", err)
		return
	}
	bans, err := m.ListBans(ctx)
	if err != nil {
		ui.adminFailed(w, r, s, "list bans", err)
		return
	}
	for _, b := range bans {
		who := b.Who
		if b.Kind == "user" {
			who = "user:" + b.Who
		}
		p.Bans = append(p.Bans, adminBanRow{Who: who, Kind: b.Kind, Until: b.Until.Local().Format(time.DateTime)})
	}
	ls, err := m.ListShares(ctx, "")
	if err != nil {
		ui.adminFailed(w, r, s, "list links", err)
		return
	}
	for _, l := range ls {
		row := adminLinkRow{ID: l.ID, Owner: l.Owner, Path: l.Path, Kind: string(l.Kind), Downloads: strconv.FormatInt(l.Downloads, 10), Expires: "never"}
		if l.UploadOnly {
			row.Kind = "upload only"
		}
		if l.MaxDownloads > 0 {
			row.Downloads += " / " + strconv.FormatInt(l.MaxDownloads, 10)
		}
		if !l.Expires.IsZero() {
			row.Expires = l.Expires.Local().Format(time.DateTime)
		}
		p.Links = append(p.Links, row)
	}
	ui.render(w, r, ui.accounts.admin, status, p)
}

func (ui *UI) adminFailed(w http.ResponseWriter, r *http.Request, s *sessionView, op string, err error) {
	ui.log.Error("webui: admin "+op, "admin", s.user.Name, "err", err)
	ui.renderError(w, r, s, http.StatusInternalServerError, "Something went wrong on the server. Please try again.")
}

// handleAdminAction runs one POSTed action and sends the admin back to the
// page with a message (or shows the page with the error).
func (ui *UI) handleAdminAction(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if !ui.isAdmin(w, r, s) {
		return
	}
	action := strings.TrimPrefix(name, "/")
	f := r.PostForm
	target := strings.TrimSpace(f.Get("name"))
	var msg string
	var err error
	attrs := []any{"admin", s.user.Name, "remote", r.RemoteAddr}
	m := ui.accounts.opts.Accounts
	ctx := admin.WithActor(r.Context(), s.user.Name) // the audit trail's acting admin
	switch action {
	case "user-add":
		req := admin.AddUserRequest{Name: target, Password: []byte(f.Get("password")), Perms: strings.TrimSpace(f.Get("perms")),
			ReadOnly: f.Get("read_only") != "", Admin: f.Get("admin") != ""}
		defer clear(req.Password)
		if len(req.Password) == 0 {
			err = errNoPassword
			break
		}
		if req.QuotaBytes, err = parseQuota(f.Get("quota")); err != nil {
			break
		}
		err = m.AddUser(ctx, req)
		msg = "User " + target + " added."
		attrs = append(attrs, "user", target, "perms", req.Perms, "read_only", req.ReadOnly, "admin_role", req.Admin)
	case "user-set":
		var req admin.SetUserRequest
		if v := strings.TrimSpace(f.Get("perms")); v != "" {
			req.Perms = &v
		}
		req.ReadOnly = f.Get("read_only") != ""
		if v := strings.TrimSpace(f.Get("quota")); v != "" {
			var q int64
			if q, err = parseQuota(v); err != nil {
				break
			}
			req.QuotaBytes = &q
		}
		switch f.Get("role") {
		case "give":
			t := true
			req.Admin = &t
		case "take":
			if target == s.user.Name {
				err = errSelf
				break
			}
			no := false
			req.Admin = &no
		}
		if err != nil {
			break
		}
		err = m.SetUser(ctx, target, req)
		msg = "User " + target + " changed; open sessions take the change at their next request."
		attrs = append(attrs, "user", target, "perms", f.Get("perms"), "read_only", req.ReadOnly, "quota", f.Get("quota"), "role", f.Get("role"))
	case "user-disable", "user-enable":
		disable := action == "user-disable"
		if disable && target == s.user.Name {
			err = errSelf
			break
		}
		err = m.SetDisabled(ctx, target, disable)
		msg = "User " + target + " enabled."
		if disable {
			msg = "User " + target + " disabled; their sessions end at their next request."
		}
		attrs = append(attrs, "user", target)
	case "user-delete":
		if target == s.user.Name {
			err = errSelf
			break
		}
		purge := f.Get("purge") != ""
		err = m.DeleteUser(ctx, target, purge, nil)
		msg = "User " + target + " deleted."
		if !purge {
			msg += " Their files are kept."
		}
		attrs = append(attrs, "user", target, "purge", purge)
	case "user-2fa-reset":
		err = m.ResetTwoFactor(ctx, target)
		msg = "Two-factor sign-in of " + target + " reset: their app passwords are gone, and their next browser sign-in takes the password alone"
		if ui.opts.Users.Require2FA() {
			msg += " and then asks them to enrol again"
		}
		msg += "."
		attrs = append(attrs, "user", target)
	case "invite-create":
		req := admin.InviteRequest{Expires: strings.TrimSpace(f.Get("expires")), Perms: strings.TrimSpace(f.Get("perms")),
			ReadOnly: f.Get("read_only") != "", Group: strings.TrimSpace(f.Get("group")), CreatedBy: s.user.Name}
		if req.QuotaBytes, err = parseQuota(f.Get("quota")); err != nil {
			break
		}
		var res admin.InviteCreated
		if res, err = m.CreateInvite(ctx, req); err != nil {
			break
		}
		ui.log.Info("webui: admin invite-create", append(attrs, "invite", res.Invite.ID, "perms", res.Invite.Perms.String(), "group", res.Invite.Group)...)
		p := adminPage{base: ui.base("Administration", s), InviteURL: ui.baseURL(r) + ui.opts.Prefix + "signup?token=" + res.Token}
		p.Flash = "Invitation created. Its link is shown only now: copy it."
		if ui.accounts.opts.Signup == SignupOff {
			p.Flash += " Sign-up is off on this server (serve --signup invite turns it on)."
		}
		ui.renderAdmin(w, r, s, http.StatusOK, p)
		return
	case "invite-revoke":
		target = strings.TrimSpace(f.Get("id"))
		err = m.RevokeInvite(ctx, target)
		msg = "Invitation revoked."
		attrs = append(attrs, "invite", target)
	case "ban-lift":
		target = strings.TrimSpace(f.Get("who"))
		err = m.Unban(ctx, target)
		msg = "Ban of " + target + " lifted."
		attrs = append(attrs, "who", target)
	case "share-revoke":
		target = strings.TrimSpace(f.Get("id"))
		err = m.RevokeShare(ctx, target)
		msg = "Link revoked."
		attrs = append(attrs, "link", target)
	default:
		var more []any
		var ok bool
		if msg, more, err, ok = ui.folderAction(ctx, action, f); !ok {
			if msg, more, err, ok = ui.sessionAction(ctx, action, f); !ok {
				ui.renderError(w, r, s, http.StatusNotFound, "There is no such page.")
				return
			}
		}
		attrs = append(attrs, more...)
	}
	if err != nil {
		status, text := adminError(err)
		attrs = append(attrs, "err", err)
		if status == http.StatusInternalServerError {
			ui.log.Error("webui: admin "+action, attrs...)
		} else {
			ui.log.Warn("webui: admin "+action+" refused", attrs...)
		}
		p := adminPage{base: ui.base("Administration", s)}
		p.Error = text
		ui.renderAdmin(w, r, s, status, p)
		return
	}
	ui.log.Info("webui: admin "+action, attrs...)
	ui.setFlash(s.key, msg)
	http.Redirect(w, r, ui.opts.Prefix+"admin/", http.StatusSeeOther)
}

var (
	errSelf       = errors.New("webui: an admin cannot disable, delete or demote themselves here")
	errBadQuota   = errors.New("webui: bad quota")
	errNoPassword = errors.New("webui: a new user needs a password")
)

// parseQuota reads "", "0", "500M", "10G" (binary units, as the command line).
func parseQuota(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if v, ok := strings.CutSuffix(t, u.suf); ok {
			t, mult = v, u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, errBadQuota
	}
	return int64(f * float64(mult)), nil
}

// adminError maps an action's failure to a status and a message. Admins
// may see more than the public (they manage these records), but never a
// path on the server's disk, so err's text is not shown.
func adminError(err error) (int, string) {
	if errors.Is(err, pwpolicy.ErrWeak) {
		_, msg := signupError(err)
		return http.StatusBadRequest, strings.Replace(msg, "your user name", "the user name", 1)
	}
	switch {
	case errors.Is(err, errNoPassword):
		return http.StatusBadRequest, "A new user needs a password."
	case errors.Is(err, errSelf):
		return http.StatusBadRequest, "You cannot disable, delete or take the admin role from yourself here."
	case errors.Is(err, errBadQuota):
		return http.StatusBadRequest, "The quota is not understood: use e.g. 500M or 10G."
	case errors.Is(err, admin.ErrFolderFilesRemain):
		return http.StatusConflict, "The store still holds the files of a deleted folder of that name: delete it again with \"also delete its files\" first."
	case errors.Is(err, users.ErrNoGroup):
		return http.StatusNotFound, "There is no such group."
	case errors.Is(err, admin.ErrHomeExists):
		return http.StatusConflict, "The store holds the files of a deleted user of this name; add them with `securefsd user add --reuse-home` if they should get them."
	case errors.Is(err, users.ErrExists):
		return http.StatusConflict, "That user already exists."
	case errors.Is(err, users.ErrNoTwoFactor):
		return http.StatusBadRequest, "That user has no two-factor sign-in to reset."
	case errors.Is(err, users.ErrNotFound), errors.Is(err, shares.ErrNotFound):
		return http.StatusNotFound, "There is no such user, group, folder, invitation, ban or link (any more)."
	case errors.Is(err, shares.ErrInviteGroup):
		return http.StatusBadRequest, "There is no such group."
	case errors.Is(err, users.ErrInvalid), errors.Is(err, shares.ErrInvalid):
		return http.StatusBadRequest, "A value is not valid: user names are a-z, 0-9, . _ -; rights are list, download, upload, overwrite, delete, rename, mkdir, chmod; expiry like 7d or 12h."
	}
	return http.StatusInternalServerError, "Something went wrong on the server. Please try again."
}
