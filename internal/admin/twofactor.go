package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/securefsd/securefsd/internal/users"
)

// TwoFactorResetter is the part of a Manager that resets a user's
// two-factor login (`securefsd user 2fa reset`, the admin page).
type TwoFactorResetter interface {
	ResetTwoFactor(ctx context.Context, name string) error
}

// ResetTwoFactor implements TwoFactorResetter: it removes the user's TOTP
// enrolment, recovery codes and app passwords (users.DB.ResetTwoFactor).
// Open SFTP sessions logged in with an app password end.
func (l *Local) ResetTwoFactor(ctx context.Context, name string) error {
	return l.Users.ResetTwoFactor(ctx, name)
}

func (h *handler) resetTwoFactor(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	tr, ok := h.m.(TwoFactorResetter)
	if !ok {
		s.finish(fmt.Errorf("%w: 2fa reset not supported", users.ErrInvalid))
		return
	}
	name := r.PathValue("name")
	err := tr.ResetTwoFactor(r.Context(), name)
	h.log.Info("admin: user 2fa reset", "user", name, "err", err)
	s.finish(err)
}

// ResetTwoFactor implements TwoFactorResetter.
func (c *Client) ResetTwoFactor(ctx context.Context, name string) error {
	return c.call(ctx, "DELETE", "/v1/users/"+url.PathEscape(name)+"/2fa", nil, nil)
}
