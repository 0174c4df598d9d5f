package webui

import (
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// shareUI is the signed-in user's side of share links: the "Share" action
// on a file or folder and the page listing their links with revoke. Same
// session, CSRF and same-origin rules as every other page (ServeHTTP
// applies them before these handlers run).
type shareUI struct {
	m           *shares.Manager
	share, list *template.Template
}

func newShareUI(m *shares.Manager) (*shareUI, error) {
	parse := func(name string) (*template.Template, error) {
		return template.New(name).ParseFS(assetFS, "assets/layout.html", "assets/"+name)
	}
	s := &shareUI{m: m}
	var err error
	if s.share, err = parse("share.html"); err != nil {
		return nil, err
	}
	if s.list, err = parse("links.html"); err != nil {
		return nil, err
	}
	return s, nil
}

func (ui *UI) shareRoute(action string) (get, post handlerFunc) {
	if ui.shareUI == nil {
		return nil, nil
	}
	switch action {
	case "share":
		return ui.handleShareForm, ui.handleShare
	case "links":
		return ui.handleLinks, nil
	case "revoke":
		return nil, ui.handleRevoke
	}
	return nil, nil
}

type sharePage struct {
	base
	Name, ActionURL, BackURL, URL string
	IsDir, Created, UploadOnly    bool
}

// inFolder refuses a share link on a name of a shared folder: links
// resolve in the owner's home (package shares), so the folder's members
// and rights would not apply.
func (ui *UI) inFolder(w http.ResponseWriter, r *http.Request, s *sessionView, name string) bool {
	if _, ok := s.fs.FolderOf(name); ok {
		ui.renderError(w, r, s, http.StatusBadRequest, "Files of a shared folder are shared with its members, not by link.")
		return true
	}
	return false
}

func (ui *UI) handleShareForm(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if ui.inFolder(w, r, s, name) {
		return
	}
	fi, err := s.fs.Stat(name)
	if err != nil {
		ui.fail(w, r, s, "share", err)
		return
	}
	ui.render(w, r, ui.shareUI.share, http.StatusOK, sharePage{base: ui.base("Share", s), Name: baseName(name), IsDir: fi.IsDir(),
		ActionURL: ui.opts.Prefix + "share" + escapePath(name), BackURL: ui.opts.Prefix + "files" + escapePath(parentName(name)) + "/"})
}

func (ui *UI) handleShare(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if ui.inFolder(w, r, s, name) {
		return
	}
	fi, err := s.fs.Stat(name)
	if err != nil {
		ui.fail(w, r, s, "share", err)
		return
	}
	ttl, err := shares.ParseTTL(strings.TrimSpace(r.PostForm.Get("expires")))
	if err != nil {
		ui.renderError(w, r, s, http.StatusBadRequest, "The expiry is not understood: use e.g. 7d or 12h.")
		return
	}
	var maxDl int64
	if v := strings.TrimSpace(r.PostForm.Get("max_downloads")); v != "" {
		if maxDl, err = strconv.ParseInt(v, 10, 64); err != nil || maxDl < 0 {
			ui.renderError(w, r, s, http.StatusBadRequest, "The download limit must be a number.")
			return
		}
	}
	spec := shares.Spec{Owner: s.user.Name, Path: name, Kind: shares.File, TTL: ttl, MaxDownloads: maxDl,
		Password: []byte(r.PostForm.Get("password")), UploadOnly: fi.IsDir() && r.PostForm.Get("upload_only") != ""}
	defer clear(spec.Password)
	if fi.IsDir() {
		spec.Kind = shares.Folder
		if spec.UploadOnly {
			spec.MaxDownloads = 0
		}
	} else if !fi.Mode().IsRegular() {
		ui.renderError(w, r, s, http.StatusBadRequest, "Only a file or a folder can be shared.")
		return
	}
	tok, l, err := ui.shareUI.m.Create(r.Context(), spec)
	if errors.Is(err, shares.ErrInvalid) || errors.Is(err, users.ErrInvalid) {
		ui.renderError(w, r, s, http.StatusBadRequest, "This link cannot be made: you need the right to download (for a folder, also to list; for upload only, to upload).")
		return
	}
	if err != nil {
		ui.log.Error("webui: share", "user", s.user.Name, "err", err)
		ui.renderError(w, r, s, http.StatusInternalServerError, "The link could not be created.")
		return
	}
	ui.log.Info("webui: share created", "user", s.user.Name, "path", name, "link", l.ID)
	ui.auditLink(r, s, audit.OpShareCreate, name, l.ID)
	ui.render(w, r, ui.shareUI.share, http.StatusOK, sharePage{base: ui.base("Link created", s), Name: baseName(name), Created: true,
		UploadOnly: l.UploadOnly, URL: ui.baseURL(r) + LinkPrefix + tok,
		BackURL: ui.opts.Prefix + "files" + escapePath(parentName(name)) + "/"})
}

type linkRow struct {
	ID, Path, Kind, Downloads, Expires string
}

type linksPage struct {
	base
	Links []linkRow
}

func (ui *UI) handleLinks(w http.ResponseWriter, r *http.Request, s *sessionView, _ string) {
	ls, err := ui.shareUI.m.List(r.Context(), s.user.Name)
	if err != nil {
		ui.log.Error("webui: links", "user", s.user.Name, "err", err)
		ui.renderError(w, r, s, http.StatusInternalServerError, "Your links could not be listed.")
		return
	}
	p := linksPage{base: ui.base("Share links", s)}
	p.Flash = ui.takeFlash(s.key)
	for _, l := range ls {
		row := linkRow{ID: l.ID, Path: l.Path, Kind: string(l.Kind), Downloads: strconv.FormatInt(l.Downloads, 10), Expires: "never"}
		if l.UploadOnly {
			row.Kind = "upload only"
		}
		if l.PasswordHash != "" {
			row.Kind += ", password"
		}
		if l.MaxDownloads > 0 {
			row.Downloads += " / " + strconv.FormatInt(l.MaxDownloads, 10)
		}
		if !l.Expires.IsZero() {
			row.Expires = l.Expires.Local().Format(time.DateTime)
		}
		p.Links = append(p.Links, row)
	}
	ui.render(w, r, ui.shareUI.list, http.StatusOK, p)
}

// handleRevoke deletes one of the user's own links (another user's id is
// "not found", as an unknown one).
func (ui *UI) handleRevoke(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	id := strings.TrimPrefix(name, "/")
	if err := ui.shareUI.m.Revoke(r.Context(), s.user.Name, id); err != nil {
		if errors.Is(err, shares.ErrNotFound) {
			ui.renderError(w, r, s, http.StatusNotFound, "There is no such link.")
			return
		}
		ui.log.Error("webui: revoke", "user", s.user.Name, "err", err)
		ui.renderError(w, r, s, http.StatusInternalServerError, "The link could not be revoked.")
		return
	}
	ui.log.Info("webui: link revoked", "user", s.user.Name, "link", id)
	ui.auditLink(r, s, audit.OpShareDelete, "", id)
	ui.setFlash(s.key, "Link revoked.")
	http.Redirect(w, r, ui.opts.Prefix+"links", http.StatusSeeOther)
}
