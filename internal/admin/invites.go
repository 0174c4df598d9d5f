package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// InviteManager creates, lists and revokes invitations (`securefsd
// invite`, the admin page). They live in the user database, so Local (no
// server running) manages the real ones.
type InviteManager interface {
	CreateInvite(ctx context.Context, req InviteRequest) (InviteCreated, error)
	ListInvites(ctx context.Context) ([]shares.Invite, error)
	RevokeInvite(ctx context.Context, id string) error
}

// InviteRequest describes a new invitation.
type InviteRequest struct {
	Expires    string `json:"expires,omitempty"` // shares.ParseTTL; "" never
	Perms      string `json:"perms,omitempty"`   // "": all rights, as user add
	ReadOnly   bool   `json:"read_only,omitempty"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
	QuotaFiles int64  `json:"quota_files,omitempty"`
	Group      string `json:"group,omitempty"`      // "" or an existing group the account joins
	CreatedBy  string `json:"created_by,omitempty"` // the admin page's user
}

// InviteCreated is a new invitation with its token, shown once.
type InviteCreated struct {
	Token  string        `json:"token"`
	Invite shares.Invite `json:"invite"`
	// BaseURL is the server's Local.BaseURL (see ShareCreated).
	BaseURL string `json:"base_url,omitempty"`
}

func (l *Local) invites() *shares.Invites {
	return shares.NewInvites(l.Users, shares.Options{Now: l.Now})
}

// CreateInvite implements InviteManager.
func (l *Local) CreateInvite(ctx context.Context, req InviteRequest) (InviteCreated, error) {
	ttl, err := shares.ParseTTL(req.Expires)
	if err != nil {
		return InviteCreated{}, err
	}
	perms := users.PermAll
	if req.Perms != "" {
		if perms, err = users.ParsePerm(req.Perms); err != nil {
			return InviteCreated{}, err
		}
	}
	if req.ReadOnly {
		perms = users.PermReadOnly
	}
	tok, iv, err := l.invites().Create(ctx, shares.InviteSpec{Perms: perms, QuotaBytes: req.QuotaBytes, QuotaFiles: req.QuotaFiles,
		Group: req.Group, TTL: ttl, CreatedBy: req.CreatedBy})
	if err != nil {
		return InviteCreated{}, err
	}
	return InviteCreated{Token: tok, Invite: iv, BaseURL: l.BaseURL}, nil
}

// ListInvites implements InviteManager.
func (l *Local) ListInvites(ctx context.Context) ([]shares.Invite, error) {
	return l.invites().List(ctx)
}

// RevokeInvite implements InviteManager.
func (l *Local) RevokeInvite(ctx context.Context, id string) error {
	return l.invites().Revoke(ctx, id)
}

// SignUpRequest is one sign-up from the browser. With a Token, the
// invitation gives the rights; without, Perms and quotas do (open sign-up,
// decided by the caller).
type SignUpRequest struct {
	Token      string
	Name       string
	Password   []byte
	Perms      users.Perm // open sign-up only
	QuotaBytes int64      // open sign-up only
}

// SignUp creates an account as `user add` would, plus the invitation's
// consumption: the password policy applies, a name whose home a deleted
// user left is refused (ErrHomeExists: signing up must never hand over
// someone's old files), the home is created. With a token, the account
// and the used invitation commit in one transaction (shares.Invites.Redeem).
// Not offered over the socket: only the server's sign-up page calls it.
func (l *Local) SignUp(ctx context.Context, req SignUpRequest) (users.User, error) {
	if !users.ValidName(req.Name) {
		return users.User{}, fmt.Errorf("%w: user name %q", users.ErrInvalid, req.Name)
	}
	if err := l.policy().Check(req.Name, req.Password); err != nil {
		return users.User{}, err
	}
	u := users.User{Name: req.Name, Home: req.Name, Perms: req.Perms, QuotaBytes: req.QuotaBytes}
	if err := l.checkHome(ctx, u, false); err != nil {
		return users.User{}, err
	}
	var err error
	if req.Token != "" {
		u, err = l.invites().Redeem(ctx, req.Token, req.Name, req.Password)
	} else {
		err = l.Users.Add(ctx, u, req.Password)
	}
	if err != nil {
		return users.User{}, err
	}
	if _, err := account.Open(l.Store, u); err != nil {
		return users.User{}, fmt.Errorf("create home of %s: %w", u.Name, err)
	}
	return l.Users.Get(ctx, u.Name)
}

// LookupInvite reports the state of an invitation token for the sign-up
// page (see shares.Invites.Lookup).
func (l *Local) LookupInvite(ctx context.Context, token string) (shares.Invite, error) {
	return l.invites().Lookup(ctx, token)
}

type inviteHandler struct {
	m   InviteManager
	log *slog.Logger
}

// routeInvites adds the invitation routes to mux when m manages them.
func routeInvites(mux *http.ServeMux, m Manager, log *slog.Logger) {
	im, ok := m.(InviteManager)
	if !ok {
		return
	}
	h := &inviteHandler{m: im, log: log}
	mux.HandleFunc("POST /v1/invites", h.create)
	mux.HandleFunc("GET /v1/invites", h.list)
	mux.HandleFunc("DELETE /v1/invites/{id}", h.revoke)
}

func (h *inviteHandler) create(w http.ResponseWriter, r *http.Request) {
	var req InviteRequest
	s := newStream(w)
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", shares.ErrInvalid, err))
		return
	}
	res, err := h.m.CreateInvite(r.Context(), req)
	// The token is never logged: the log names the invitation by its id.
	h.log.Info("admin: invite create", "id", res.Invite.ID, "perms", res.Invite.Perms.String(), "err", err)
	if err != nil {
		s.finish(err)
		return
	}
	s.send(event{Invite: &res})
	s.finish(nil)
}

func (h *inviteHandler) list(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	ivs, err := h.m.ListInvites(r.Context())
	if err != nil {
		s.finish(err)
		return
	}
	if len(ivs) > 0 {
		s.send(event{Invites: ivs})
	}
	s.finish(nil)
}

func (h *inviteHandler) revoke(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	id := r.PathValue("id")
	err := h.m.RevokeInvite(r.Context(), id)
	h.log.Info("admin: invite revoke", "id", id, "err", err)
	s.finish(err)
}

// CreateInvite implements InviteManager.
func (c *Client) CreateInvite(ctx context.Context, req InviteRequest) (InviteCreated, error) {
	var out InviteCreated
	err := c.call(ctx, "POST", "/v1/invites", req, func(ev event) {
		if ev.Invite != nil {
			out = *ev.Invite
		}
	})
	return out, err
}

// ListInvites implements InviteManager.
func (c *Client) ListInvites(ctx context.Context) ([]shares.Invite, error) {
	out := []shares.Invite{}
	err := c.call(ctx, "GET", "/v1/invites", nil, func(ev event) { out = append(out, ev.Invites...) })
	return out, err
}

// RevokeInvite implements InviteManager.
func (c *Client) RevokeInvite(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", "/v1/invites/"+url.PathEscape(id), nil, nil)
}
