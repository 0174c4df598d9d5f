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

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// FolderManager manages shared folders and groups (`securefsd folder`,
// `securefsd group`). The records live in the user database: every change
// bumps its revision, so open sessions of every protocol take it at their
// next request.
type FolderManager interface {
	AddFolder(ctx context.Context, req FolderRequest) error
	// DeleteFolder removes the record (and so every grant); with purge
	// also the folder's files. Interrupted, the same call finishes it.
	DeleteFolder(ctx context.Context, name string, purge bool) error
	ListFolders(ctx context.Context) ([]users.Folder, error)
	// Grant gives to ("alice" or "@group") the rights perms (user right
	// words plus "manage") on folder, replacing their grant.
	Grant(ctx context.Context, folder, to, perms string) error
	Revoke(ctx context.Context, folder, to string) error
	AddGroup(ctx context.Context, name string) error
	DeleteGroup(ctx context.Context, name string) error
	SetMembers(ctx context.Context, group string, add, del []string) error
	ListGroups(ctx context.Context) ([]users.Group, error)
}

// FolderRequest describes a new folder.
type FolderRequest struct {
	Name       string `json:"name"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
	QuotaFiles int64  `json:"quota_files,omitempty"`
}

// ErrFolderFilesRemain: a folder of that name was deleted without --purge
// and its files are still in the store.
var ErrFolderFilesRemain = fmt.Errorf("%w: the store still holds the files of a deleted folder of that name (folder del NAME --purge removes them)", users.ErrExists)

// AddFolder implements FolderManager.
func (l *Local) AddFolder(ctx context.Context, req FolderRequest) error {
	if _, err := l.Users.GetFolder(ctx, req.Name); err == nil {
		return fmt.Errorf("folder %s: %w", req.Name, users.ErrExists)
	}
	if users.ValidName(req.Name) {
		if has, err := l.Store.HasFolder(req.Name); err != nil {
			return err
		} else if has {
			return ErrFolderFilesRemain
		}
	}
	if err := l.Users.AddFolder(ctx, users.Folder{Name: req.Name, QuotaBytes: req.QuotaBytes, QuotaFiles: req.QuotaFiles}); err != nil {
		return err
	}
	// Create the tree now, so a broken store shows at once, not at a
	// member's first request.
	_, err := l.Store.Folder(req.Name, vfs.HomeOptions{})
	return err
}

// DeleteFolder implements FolderManager. The record goes first, so every
// member loses the folder at once; then, with purge, the files. A purge
// interrupted after the record went is finished by running it again.
func (l *Local) DeleteFolder(ctx context.Context, name string, purge bool) error {
	err := l.Users.DeleteFolder(ctx, name)
	if err != nil && !(purge && errors.Is(err, users.ErrNotFound)) {
		return err
	}
	if purge {
		has, herr := l.Store.HasFolder(name)
		if herr != nil {
			return herr
		}
		if err != nil && !has {
			return err // neither a record nor files: no such folder
		}
		if err := l.Store.RemoveFolder(ctx, name); err != nil {
			return fmt.Errorf("purge folder %s: %w", name, err)
		}
	}
	return nil
}

// ListFolders implements FolderManager.
func (l *Local) ListFolders(ctx context.Context) ([]users.Folder, error) { return l.Users.Folders(ctx) }

// Grant implements FolderManager.
func (l *Local) Grant(ctx context.Context, folder, to, perms string) error {
	p, manage, err := users.ParseGrantPerms(perms)
	if err != nil {
		return err
	}
	return l.Users.SetGrant(ctx, folder, to, p, manage)
}

// Revoke implements FolderManager.
func (l *Local) Revoke(ctx context.Context, folder, to string) error {
	return l.Users.Revoke(ctx, folder, to)
}

// AddGroup implements FolderManager.
func (l *Local) AddGroup(ctx context.Context, name string) error { return l.Users.AddGroup(ctx, name) }

// DeleteGroup implements FolderManager.
func (l *Local) DeleteGroup(ctx context.Context, name string) error {
	return l.Users.DeleteGroup(ctx, name)
}

// SetMembers implements FolderManager.
func (l *Local) SetMembers(ctx context.Context, group string, add, del []string) error {
	return l.Users.SetMembers(ctx, group, add, del)
}

// ListGroups implements FolderManager.
func (l *Local) ListGroups(ctx context.Context) ([]users.Group, error) { return l.Users.Groups(ctx) }

// The socket routes.

func routeFolders(mux *http.ServeMux, m Manager, log *slog.Logger) {
	f, ok := m.(FolderManager)
	if !ok {
		return
	}
	h := &folderHandler{f: f, log: log}
	mux.HandleFunc("POST /v1/folders", h.add)
	mux.HandleFunc("GET /v1/folders", h.list)
	mux.HandleFunc("DELETE /v1/folders/{name}", h.del)
	mux.HandleFunc("PUT /v1/folders/{name}/grants/{to}", h.grant)
	mux.HandleFunc("DELETE /v1/folders/{name}/grants/{to}", h.revoke)
	mux.HandleFunc("POST /v1/groups", h.addGroup)
	mux.HandleFunc("GET /v1/groups", h.listGroups)
	mux.HandleFunc("DELETE /v1/groups/{name}", h.delGroup)
	mux.HandleFunc("PATCH /v1/groups/{name}/members", h.members)
}

type folderHandler struct {
	f   FolderManager
	log *slog.Logger
}

// decode reads a small JSON body.
func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(v); err != nil {
		return fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err)
	}
	return nil
}

func (h *folderHandler) add(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var req FolderRequest
	err := decode(r, &req)
	if err == nil {
		err = h.f.AddFolder(r.Context(), req)
	}
	h.log.Info("admin: folder add", "folder", req.Name, "err", err)
	s.finish(err)
}

func (h *folderHandler) list(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	fs, err := h.f.ListFolders(r.Context())
	if err == nil {
		s.send(event{Folders: fs})
	}
	s.finish(err)
}

func (h *folderHandler) del(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	name := r.PathValue("name")
	purge := r.URL.Query().Get("purge") == "1"
	err := h.f.DeleteFolder(r.Context(), name, purge)
	h.log.Info("admin: folder del", "folder", name, "purge", purge, "err", err)
	s.finish(err)
}

func (h *folderHandler) grant(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var body struct {
		Perms string `json:"perms"`
	}
	folder, to := r.PathValue("name"), r.PathValue("to")
	err := decode(r, &body)
	if err == nil {
		err = h.f.Grant(r.Context(), folder, to, body.Perms)
	}
	h.log.Info("admin: folder grant", "folder", folder, "to", to, "perms", body.Perms, "err", err)
	s.finish(err)
}

func (h *folderHandler) revoke(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	folder, to := r.PathValue("name"), r.PathValue("to")
	err := h.f.Revoke(r.Context(), folder, to)
	h.log.Info("admin: folder revoke", "folder", folder, "to", to, "err", err)
	s.finish(err)
}

func (h *folderHandler) addGroup(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var body struct {
		Name string `json:"name"`
	}
	err := decode(r, &body)
	if err == nil {
		err = h.f.AddGroup(r.Context(), body.Name)
	}
	h.log.Info("admin: group add", "group", body.Name, "err", err)
	s.finish(err)
}

func (h *folderHandler) listGroups(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	gs, err := h.f.ListGroups(r.Context())
	if err == nil {
		s.send(event{Groups: gs})
	}
	s.finish(err)
}

func (h *folderHandler) delGroup(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	name := r.PathValue("name")
	err := h.f.DeleteGroup(r.Context(), name)
	h.log.Info("admin: group del", "group", name, "err", err)
	s.finish(err)
}

func (h *folderHandler) members(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var body struct {
		Add []string `json:"add"`
		Del []string `json:"del"`
	}
	name := r.PathValue("name")
	err := decode(r, &body)
	if err == nil {
		err = h.f.SetMembers(r.Context(), name, body.Add, body.Del)
	}
	h.log.Info("admin: group members", "group", name, "added", body.Add, "removed", body.Del, "err", err)
	s.finish(err)
}

// AddFolder implements FolderManager.
func (c *Client) AddFolder(ctx context.Context, req FolderRequest) error {
	return c.call(ctx, "POST", "/v1/folders", req, nil)
}

// DeleteFolder implements FolderManager.
func (c *Client) DeleteFolder(ctx context.Context, name string, purge bool) error {
	q := ""
	if purge {
		q = "?purge=1"
	}
	return c.call(ctx, "DELETE", "/v1/folders/"+url.PathEscape(name)+q, nil, nil)
}

// ListFolders implements FolderManager.
func (c *Client) ListFolders(ctx context.Context) ([]users.Folder, error) {
	var out []users.Folder
	err := c.call(ctx, "GET", "/v1/folders", nil, func(ev event) { out = append(out, ev.Folders...) })
	return out, err
}

// Grant implements FolderManager.
func (c *Client) Grant(ctx context.Context, folder, to, perms string) error {
	return c.call(ctx, "PUT", "/v1/folders/"+url.PathEscape(folder)+"/grants/"+url.PathEscape(to), map[string]string{"perms": perms}, nil)
}

// Revoke implements FolderManager.
func (c *Client) Revoke(ctx context.Context, folder, to string) error {
	return c.call(ctx, "DELETE", "/v1/folders/"+url.PathEscape(folder)+"/grants/"+url.PathEscape(to), nil, nil)
}

// AddGroup implements FolderManager.
func (c *Client) AddGroup(ctx context.Context, name string) error {
	return c.call(ctx, "POST", "/v1/groups", map[string]string{"name": name}, nil)
}

// DeleteGroup implements FolderManager.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.call(ctx, "DELETE", "/v1/groups/"+url.PathEscape(name), nil, nil)
}

// SetMembers implements FolderManager.
func (c *Client) SetMembers(ctx context.Context, group string, add, del []string) error {
	return c.call(ctx, "PATCH", "/v1/groups/"+url.PathEscape(group)+"/members", map[string][]string{"add": add, "del": del}, nil)
}

// ListGroups implements FolderManager.
func (c *Client) ListGroups(ctx context.Context) ([]users.Group, error) {
	var out []users.Group
	err := c.call(ctx, "GET", "/v1/groups", nil, func(ev event) { out = append(out, ev.Groups...) })
	return out, err
}
