package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/users"
)

// Live sessions (issue 22): `securefsd session list` and `session kill`,
// and the admin page's table. The protocols hold their sessions; a
// SessionSource is what each offers (sftpd's SSH connections, webui's
// browser sessions). WebDAV has no session beyond a request: to stop a
// WebDAV client, disable the user or revoke the app password.

// SessionInfo describes one live session.
type SessionInfo struct {
	ID      string    `json:"id"` // as in the audit trail's records
	User    string    `json:"user"`
	Proto   string    `json:"proto"` // ssh, web
	Remote  string    `json:"remote,omitempty"`
	Start   time.Time `json:"start"`
	Bytes   int64     `json:"bytes"`             // file bytes of completed transfers
	Current string    `json:"current,omitempty"` // the last file a transfer used
	Node    string    `json:"node,omitempty"`    // in a cluster, the node that serves it (browser sessions: signed it in)
}

// SessionSource is one protocol's live sessions (in a cluster, every
// node's). Kill ends sessions and reports how many ended.
type SessionSource interface {
	Sessions(ctx context.Context) ([]SessionInfo, error)
	KillSession(ctx context.Context, id string) (bool, error)
	KillUserSessions(ctx context.Context, user string) (int, error)
}

// SessionManager lists and ends the running server's sessions.
type SessionManager interface {
	ListSessions(ctx context.Context) ([]SessionInfo, error)
	// KillSession ends the session id (users.ErrNotFound: none).
	KillSession(ctx context.Context, id string) error
	// KillUserSessions ends every session of user and says how many.
	KillUserSessions(ctx context.Context, user string) (int, error)
}

// ListSessions implements SessionManager: every source's sessions, oldest
// first. Without sources (no running server) it is ErrNoServer.
func (l *Local) ListSessions(ctx context.Context) ([]SessionInfo, error) {
	if len(l.Sessions) == 0 {
		return nil, ErrNoServer
	}
	var out []SessionInfo
	for _, src := range l.Sessions {
		ss, err := src.Sessions(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ss...)
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// KillSession implements SessionManager.
func (l *Local) KillSession(ctx context.Context, id string) error {
	if len(l.Sessions) == 0 {
		return ErrNoServer
	}
	for _, src := range l.Sessions {
		ok, err := src.KillSession(ctx, id)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("session %q: %w", id, users.ErrNotFound)
}

// KillUserSessions implements SessionManager.
func (l *Local) KillUserSessions(ctx context.Context, user string) (int, error) {
	if len(l.Sessions) == 0 {
		return 0, ErrNoServer
	}
	if !users.ValidName(user) {
		return 0, fmt.Errorf("%w: user name %q", users.ErrInvalid, user)
	}
	n := 0
	for _, src := range l.Sessions {
		k, err := src.KillUserSessions(ctx, user)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

type sessionHandler struct {
	m   SessionManager
	log *slog.Logger
}

func routeSessions(mux *http.ServeMux, m Manager, log *slog.Logger) {
	sm, ok := m.(SessionManager)
	if !ok {
		return
	}
	h := &sessionHandler{m: sm, log: log}
	mux.HandleFunc("GET /v1/sessions", h.list)
	mux.HandleFunc("DELETE /v1/sessions/{id}", h.kill)
	mux.HandleFunc("DELETE /v1/sessions", h.killUser)
}

func (h *sessionHandler) list(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	ss, err := h.m.ListSessions(r.Context())
	if err == nil {
		if ss == nil {
			ss = []SessionInfo{}
		}
		s.send(event{Sessions: ss})
	}
	s.finish(err)
}

func (h *sessionHandler) kill(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	id := r.PathValue("id")
	err := h.m.KillSession(r.Context(), id)
	h.log.Info("admin: session kill", "session", id, "err", err)
	s.finish(err)
}

func (h *sessionHandler) killUser(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	user := r.URL.Query().Get("user")
	n, err := h.m.KillUserSessions(r.Context(), user)
	h.log.Info("admin: session kill", "user", user, "ended", n, "err", err)
	if err == nil {
		s.send(event{Count: &n})
	}
	s.finish(err)
}

// ListSessions implements SessionManager.
func (c *Client) ListSessions(ctx context.Context) ([]SessionInfo, error) {
	var out []SessionInfo
	err := c.call(ctx, "GET", "/v1/sessions", nil, func(ev event) { out = append(out, ev.Sessions...) })
	return out, err
}

// KillSession implements SessionManager.
func (c *Client) KillSession(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, nil)
}

// KillUserSessions implements SessionManager.
func (c *Client) KillUserSessions(ctx context.Context, user string) (int, error) {
	n := 0
	err := c.call(ctx, "DELETE", "/v1/sessions?user="+url.QueryEscape(user), nil, func(ev event) {
		if ev.Count != nil {
			n = *ev.Count
		}
	})
	return n, err
}

// describeKill is the audit detail of a kill.
func describeKill(id, user string, n int) string {
	if id != "" {
		return "id=" + id
	}
	return "user=" + user + " ended=" + strconv.Itoa(n)
}
