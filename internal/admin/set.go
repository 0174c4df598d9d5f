package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/securefsd/securefsd/internal/users"
)

// SetUserRequest changes an existing user's rights; nil fields are kept.
// Open sessions take the new rights at their next request: sftpd and davd
// re-read the record when the database's revision changes.
type SetUserRequest struct {
	Perms      *string `json:"perms,omitempty"`
	ReadOnly   bool    `json:"read_only,omitempty"` // wins over Perms
	QuotaBytes *int64  `json:"quota_bytes,omitempty"`
	QuotaFiles *int64  `json:"quota_files,omitempty"`
	Admin      *bool   `json:"admin,omitempty"` // the admin role
}

// UserSetter is the part of a Manager that changes a user in place.
type UserSetter interface {
	SetUser(ctx context.Context, name string, req SetUserRequest) error
}

// SetUser implements UserSetter.
func (l *Local) SetUser(ctx context.Context, name string, req SetUserRequest) error {
	var perms *users.Perm
	if req.Perms != nil {
		p, err := users.ParsePerm(*req.Perms)
		if err != nil {
			return err
		}
		perms = &p
	}
	if req.ReadOnly {
		p := users.PermReadOnly
		perms = &p
	}
	for _, q := range []*int64{req.QuotaBytes, req.QuotaFiles} {
		if q != nil && *q < 0 {
			return fmt.Errorf("%w: negative quota", users.ErrInvalid)
		}
	}
	return l.Users.Update(ctx, name, func(u *users.User) error {
		if perms != nil {
			u.Perms = *perms
		}
		if req.QuotaBytes != nil {
			u.QuotaBytes = *req.QuotaBytes
		}
		if req.QuotaFiles != nil {
			u.QuotaFiles = *req.QuotaFiles
		}
		if req.Admin != nil {
			u.Admin = *req.Admin
		}
		return nil
	})
}

func (h *handler) setUser(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	set, ok := h.m.(UserSetter)
	if !ok {
		s.finish(fmt.Errorf("%w: user set not supported", users.ErrInvalid))
		return
	}
	var body SetUserRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&body); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err))
		return
	}
	name := r.PathValue("name")
	err := set.SetUser(r.Context(), name, body)
	h.log.Info("admin: user set", "user", name, "err", err)
	s.finish(err)
}

// SetUser implements UserSetter.
func (c *Client) SetUser(ctx context.Context, name string, req SetUserRequest) error {
	return c.call(ctx, "PATCH", "/v1/users/"+url.PathEscape(name), req, nil)
}
