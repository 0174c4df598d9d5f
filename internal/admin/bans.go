package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/securefsd/securefsd/internal/users"
)

// ListBans implements BanManager.
func (l *Local) ListBans(context.Context) ([]users.Ban, error) { return l.Users.Bans(), nil }

// Unban implements BanManager.
func (l *Local) Unban(_ context.Context, who string) error { return l.Users.Unban(who) }

type banHandler struct {
	b   BanManager
	log *slog.Logger
}

func (h *banHandler) list(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	bans, err := h.b.ListBans(r.Context())
	if err != nil {
		s.finish(err)
		return
	}
	if len(bans) > 0 {
		s.send(event{Bans: bans})
	}
	s.finish(nil)
}

func (h *banHandler) del(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	who := r.PathValue("who")
	err := h.b.Unban(r.Context(), who)
	h.log.Info("admin: ban del", "who", who, "err", err)
	s.finish(err)
}

// ListBans implements BanManager.
func (c *Client) ListBans(ctx context.Context) ([]users.Ban, error) {
	out := []users.Ban{}
	err := c.call(ctx, "GET", "/v1/bans", nil, func(ev event) { out = append(out, ev.Bans...) })
	return out, err
}

// Unban implements BanManager.
func (c *Client) Unban(ctx context.Context, who string) error {
	return c.call(ctx, "DELETE", "/v1/bans/"+url.PathEscape(who), nil, nil)
}
