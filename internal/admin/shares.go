package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/shares"
)

// ShareManager creates, lists and revokes share links (`securefsd share`).
// Links live in the user database, so Local (no server running) manages
// the real ones, and the socket Client reaches the running server's.
type ShareManager interface {
	CreateShare(ctx context.Context, req ShareRequest) (ShareCreated, error)
	// ListShares lists the links of user, or of everyone for "".
	ListShares(ctx context.Context, user string) ([]shares.Public, error)
	RevokeShare(ctx context.Context, id string) error
}

// ShareRequest describes a new link. Whether it is a file or folder link
// follows from what Path is in the user's home.
type ShareRequest struct {
	User         string   `json:"user"`
	Path         string   `json:"path"`
	Expires      string   `json:"expires,omitempty"` // shares.ParseTTL: "7d", "12h"; "" never
	MaxDownloads int64    `json:"max_downloads,omitempty"`
	Password     []byte   `json:"password,omitempty"`
	UploadOnly   bool     `json:"upload_only,omitempty"`
	AllowFrom    []string `json:"allow_from,omitempty"` // addresses or CIDRs
}

// ShareCreated is a new link with its token, shown once (only its hash is
// stored).
type ShareCreated struct {
	Token string        `json:"token"`
	Link  shares.Public `json:"link"`
	// BaseURL is the server's Local.BaseURL: the printed link is
	// BaseURL + "/s/" + Token. "" when the manager does not know it.
	BaseURL string `json:"base_url,omitempty"`
}

// ErrNotSharable means the path is neither a regular file nor a directory.
var ErrNotSharable = errors.New("admin: only a file or a folder can be shared")

func (l *Local) shares() *shares.Manager { return shares.New(l.Users, shares.Options{Now: l.Now}) }

// CreateShare implements ShareManager.
func (l *Local) CreateShare(ctx context.Context, req ShareRequest) (ShareCreated, error) {
	ttl, err := shares.ParseTTL(req.Expires)
	if err != nil {
		return ShareCreated{}, err
	}
	prefixes, err := shares.ParseCIDRs(strings.Join(req.AllowFrom, ","))
	if err != nil {
		return ShareCreated{}, err
	}
	p, err := shares.CleanPath(req.Path)
	if err != nil {
		return ShareCreated{}, err
	}
	if first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/"); first == l.Store.SharedPrefix() {
		// Links resolve in the owner's home: a shared folder's files are
		// shared with its members, never by link.
		return ShareCreated{}, fmt.Errorf("%w: %s is the shared folders' directory", ErrNotSharable, p)
	}
	u, err := l.Users.Get(ctx, req.User)
	if err != nil {
		return ShareCreated{}, err
	}
	fsys, err := account.Open(l.Store, u)
	if err != nil {
		return ShareCreated{}, fmt.Errorf("admin: open %s's home: %w", u.Name, err)
	}
	fi, err := fsys.Stat(p)
	if err != nil {
		return ShareCreated{}, fmt.Errorf("admin: share %s: %w", p, err)
	}
	kind := shares.File
	switch {
	case fi.IsDir():
		kind = shares.Folder
	case !fi.Mode().IsRegular():
		return ShareCreated{}, fmt.Errorf("admin: share %s: %w", p, ErrNotSharable)
	}
	tok, link, err := l.shares().Create(ctx, shares.Spec{Owner: u.Name, Path: p, Kind: kind, UploadOnly: req.UploadOnly,
		TTL: ttl, MaxDownloads: req.MaxDownloads, Password: req.Password, AllowFrom: prefixes})
	if err != nil {
		return ShareCreated{}, err
	}
	return ShareCreated{Token: tok, Link: link.Public(), BaseURL: l.BaseURL}, nil
}

// ListShares implements ShareManager.
func (l *Local) ListShares(ctx context.Context, user string) ([]shares.Public, error) {
	ls, err := l.shares().List(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]shares.Public, 0, len(ls))
	for _, x := range ls {
		out = append(out, x.Public())
	}
	return out, nil
}

// RevokeShare implements ShareManager.
func (l *Local) RevokeShare(ctx context.Context, id string) error {
	return l.shares().Revoke(ctx, "", id)
}

type shareHandler struct {
	s   ShareManager
	log *slog.Logger
}

// routeShares adds the share routes to mux when m manages links.
func routeShares(mux *http.ServeMux, m Manager, log *slog.Logger) {
	s, ok := m.(ShareManager)
	if !ok {
		return
	}
	h := &shareHandler{s: s, log: log}
	mux.HandleFunc("POST /v1/shares", h.create)
	mux.HandleFunc("GET /v1/shares", h.list)
	mux.HandleFunc("DELETE /v1/shares/{id}", h.revoke)
}

func (h *shareHandler) create(w http.ResponseWriter, r *http.Request) {
	var req ShareRequest
	s := newStream(w)
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", shares.ErrInvalid, err))
		return
	}
	defer clear(req.Password)
	res, err := h.s.CreateShare(r.Context(), req)
	// The token is never logged: the log names the link by its id.
	h.log.Info("admin: share create", "user", req.User, "path", req.Path, "id", res.Link.ID, "err", err)
	if err != nil {
		s.finish(err)
		return
	}
	s.send(event{Share: &res})
	s.finish(nil)
}

func (h *shareHandler) list(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	ls, err := h.s.ListShares(r.Context(), r.URL.Query().Get("user"))
	if err != nil {
		s.finish(err)
		return
	}
	s.send(event{Shares: ls})
	s.finish(nil)
}

func (h *shareHandler) revoke(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	id := r.PathValue("id")
	err := h.s.RevokeShare(r.Context(), id)
	h.log.Info("admin: share revoke", "id", id, "err", err)
	s.finish(err)
}

// CreateShare implements ShareManager.
func (c *Client) CreateShare(ctx context.Context, req ShareRequest) (ShareCreated, error) {
	var out ShareCreated
	err := c.call(ctx, "POST", "/v1/shares", req, func(ev event) {
		if ev.Share != nil {
			out = *ev.Share
		}
	})
	return out, err
}

// ListShares implements ShareManager.
func (c *Client) ListShares(ctx context.Context, user string) ([]shares.Public, error) {
	out := []shares.Public{}
	q := ""
	if user != "" {
		q = "?user=" + url.QueryEscape(user)
	}
	err := c.call(ctx, "GET", "/v1/shares"+q, nil, func(ev event) { out = append(out, ev.Shares...) })
	return out, err
}

// RevokeShare implements ShareManager.
func (c *Client) RevokeShare(ctx context.Context, id string) error {
	return c.call(ctx, "DELETE", "/v1/shares/"+url.PathEscape(id), nil, nil)
}
