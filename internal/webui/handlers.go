package webui

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/httpx"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/securefsd/securefsd/internal/users"
)

// wantsJSON: the request comes from app.js (XHR), which wants a JSON answer.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// needLogin answers a request without a valid session: XHR gets 401 JSON,
// a page GET is sent to the login page and back afterwards, a form POST to
// the login page (its action is not performed).
func (ui *UI) needLogin(w http.ResponseWriter, r *http.Request, why error) {
	if !errors.Is(why, errNoSession) {
		ui.log.Info("webui: session ended", "reason", why, "remote", r.RemoteAddr)
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Your session has ended. Please sign in again."})
		return
	}
	q := url.Values{}
	if !errors.Is(why, errNoSession) {
		q.Set("expired", "1")
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		q.Set("next", r.URL.RequestURI())
	}
	target := ui.opts.Prefix + "login"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (ui *UI) csrfFailed(w http.ResponseWriter, r *http.Request, s *sessionView) {
	ui.log.Warn("webui: POST without a valid CSRF token refused", "user", s.user.Name, "path", r.URL.Path, "remote", r.RemoteAddr)
	ui.renderError(w, r, s, http.StatusForbidden, "This form has expired. Go back, reload the page and try again.")
}

// safeNext accepts only a path under our own prefix as the after-login
// target (no scheme, host, backslash or protocol-relative "//").
func (ui *UI) safeNext(next string) string {
	def := ui.opts.Prefix + "files/"
	if next == "" || !strings.HasPrefix(next, ui.opts.Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return def
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, ui.opts.Prefix+"login") || strings.HasPrefix(u.Path, ui.opts.Prefix+"static") {
		return def
	}
	return next
}

const loginFailedMsg = "Sign-in failed: wrong user name or password, or too many failed attempts. Please try again later."

type loginPage struct {
	base
	LoginToken string
	Next       string
	Username   string
}

func (ui *UI) handleLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if _, err := ui.sessionFor(r); err == nil {
			http.Redirect(w, r, ui.safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
			return
		}
		msg := ""
		if r.URL.Query().Get("expired") == "1" {
			msg = "Your session has ended. Please sign in again."
		}
		ui.showLogin(w, r, http.StatusOK, r.URL.Query().Get("next"), "", msg, "")
	case http.MethodPost:
		ui.doLogin(w, r)
	default:
		ui.methodNotAllowed(w, "GET, HEAD, POST")
	}
}

// showLogin renders the login form with a fresh double-submit token in a
// cookie and the form, which guards against login CSRF.
func (ui *UI) showLogin(w http.ResponseWriter, r *http.Request, status int, next, username, errMsg, flash string) {
	// Reuse the browser's token so several open sign-in tabs all work.
	var token string
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 43 && strings.Trim(c.Value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == "" {
		token = c.Value
	} else {
		token, _ = randomToken(32)
		http.SetCookie(w, ui.cookie(loginCookie, token, 0))
	}
	if flash == "" && r.URL.Query().Get("bye") == "1" {
		flash = "You have signed out."
	}
	data := loginPage{base: ui.base("Sign in", nil), LoginToken: token, Username: username}
	if next != "" {
		data.Next = ui.safeNext(next)
	}
	data.Error, data.Flash = errMsg, flash
	ui.render(w, r, ui.pages.login, status, data)
}

func (ui *UI) doLogin(w http.ResponseWriter, r *http.Request) {
	if !ui.readPublicForm(w, r, "login") {
		return
	}
	next := r.PostForm.Get("next")
	name := strings.TrimSpace(r.PostForm.Get("username"))
	c, err := r.Cookie(loginCookie)
	token := r.PostForm.Get("token")
	if err != nil || token == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(token)) != 1 {
		ui.log.Warn("webui: login without a valid form token", "remote", r.RemoteAddr)
		ui.showLogin(w, r, http.StatusForbidden, next, name, "The sign-in form expired. Please try again.", "")
		return
	}
	password := []byte(r.PostForm.Get("password"))
	defer clear(password)
	rev := ui.opts.Users.Revision()
	u, err := ui.opts.Users.AuthPassword(r.Context(), "web", r.RemoteAddr, name, password)
	if err != nil {
		level := "failed"
		if errors.Is(err, users.ErrBanned) {
			level = "banned"
			// Same page, same status and about the same time as a
			// wrong password: the form must not show the ban.
			_ = ui.opts.Users.PaceRefusal(r.Context())
		} else if !errors.Is(err, users.ErrAuthFailed) {
			level = "error"
		}
		ui.log.Warn("webui: login "+level, "user", name, "remote", r.RemoteAddr, "err", err)
		ui.showLogin(w, r, http.StatusUnauthorized, next, name, loginFailedMsg, "")
		return
	}
	if u.TwoFactor != nil {
		ui.startSecondStep(w, r, u, rev, next)
		return
	}
	// Never reuse a session id the browser brought (fixation).
	if old, err := ui.sessionFor(r); err == nil {
		ui.dropSession(old.key, "replaced")
	}
	id, err := ui.newSession(r.Context(), u, rev, r.RemoteAddr)
	if err != nil {
		ui.log.Error("webui: create session", "user", u.Name, "err", err)
		ui.showLogin(w, r, http.StatusInternalServerError, next, name, "The server could not open your files. Please contact the administrator.", "")
		return
	}
	ui.log.Info("webui: login", "user", u.Name, "remote", r.RemoteAddr)
	ui.auditSession(r, u.Name, id, audit.OpSessionOpen)
	http.SetCookie(w, ui.cookie(sessionCookie, id, 0))
	http.SetCookie(w, ui.cookie(loginCookie, "", -1))
	http.Redirect(w, r, ui.safeNext(next), http.StatusSeeOther)
}

func (ui *UI) handleLogout(w http.ResponseWriter, r *http.Request, s *sessionView, _ string) {
	ui.dropSession(s.key, "") // recorded below, with the address
	ui.log.Info("webui: logout", "user", s.user.Name, "remote", r.RemoteAddr)
	ui.audit(r, s, audit.OpSessionEnd, "", "", 0, nil)
	http.SetCookie(w, ui.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, ui.opts.Prefix+"login?bye=1", http.StatusSeeOther)
}

// fail maps a vfs error to its status and message, logs the detail, and
// answers (JSON for XHR, an error page otherwise).
func (ui *UI) fail(w http.ResponseWriter, r *http.Request, s *sessionView, op string, err error) {
	status, msg := httpError(err)
	ui.auditFail(r, s, op, err)
	if httpx.ServerFault(status, r) {
		ui.log.Error("webui: "+op, "user", s.user.Name, "err", err)
	} else {
		ui.log.Info("webui: "+op, "user", s.user.Name, "status", status, "err", err)
	}
	ui.renderError(w, r, s, status, msg)
}

type listPage struct {
	base
	Crumbs       []crumb
	Entries      []entry
	Sort         map[string]sortLink
	DirURL       string
	UploadURL    string
	MkdirURL     string
	FolderIcon   string
	FileIcon     string
	Count        string
	Usage        string
	CanUpload    bool
	CanOverwrite bool
	CanMkdir     bool
	CanRename    bool
	CanDelete    bool
	CanShare     bool
	AccessURL    string // inside a shared folder: its access page
}

func (ui *UI) handleList(w http.ResponseWriter, r *http.Request, s *sessionView, dir string) {
	fi, err := s.fs.Stat(dir)
	if err != nil {
		ui.fail(w, r, s, "list", err)
		return
	}
	if !fi.IsDir() {
		http.Redirect(w, r, ui.opts.Prefix+"dl"+escapePath(dir), http.StatusSeeOther)
		return
	}
	infos, err := s.fs.ReadDir(dir)
	if err != nil {
		ui.fail(w, r, s, "list", err)
		return
	}
	ui.audit(r, s, audit.OpList, dir, "", 0, nil)
	spec := parseSort(r.URL.Query())
	entries := make([]entry, 0, len(infos))
	dirs, files := 0, 0
	for _, fi := range infos {
		e := makeEntry(ui, dir, fi)
		if e.IsDir {
			dirs++
		} else {
			files++
		}
		entries = append(entries, e)
	}
	sortEntries(entries, spec)
	dirURL := ui.opts.Prefix + "files" + escapePath(dir)
	if dir != "/" {
		dirURL += "/"
	}
	p := s.fs.RightsAt(dir) // in a shared folder: the member's rights there
	data := listPage{
		base:         ui.base(listTitle(dir), s),
		Crumbs:       ui.breadcrumbs(dir),
		Entries:      entries,
		Sort:         ui.sortLinks(dirURL, spec),
		DirURL:       dirURL,
		UploadURL:    ui.opts.Prefix + "upload" + escapePath(dir),
		MkdirURL:     ui.opts.Prefix + "mkdir" + escapePath(dir),
		FolderIcon:   ui.assetURL("folder.svg"),
		FileIcon:     ui.assetURL("file.svg"),
		Count:        plural(dirs, "folder") + ", " + plural(files, "file"),
		CanUpload:    p.Has(users.PermUpload),
		CanOverwrite: p.Has(users.PermOverwrite),
		CanMkdir:     p.Has(users.PermMkdir),
		CanRename:    p.Has(users.PermRename),
		CanDelete:    p.Has(users.PermDelete),
		CanShare:     ui.shareUI != nil && p.Has(users.PermDownload|users.PermList),
	}
	if folder, ok := s.fs.FolderOf(dir); ok {
		// Links resolve in the owner's home: files of a shared folder
		// are shared with members, not by link.
		data.CanShare = false
		data.AccessURL = ui.opts.Prefix + "access/" + folder
	}
	if u, err := s.fs.UsageAt(dir); err == nil {
		data.Usage = humanSize(u.UsedBytes) + " used"
		if u.QuotaBytes > 0 {
			data.Usage += " of " + humanSize(u.QuotaBytes)
		}
	}
	data.Flash = ui.takeFlash(s.key)
	ui.render(w, r, ui.pages.list, http.StatusOK, data)
}

func listTitle(dir string) string {
	if dir == "/" {
		return "Home"
	}
	return baseName(dir)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// errReader remembers the first read error other than io.EOF, so a
// download cut short by a damaged file is logged (ServeContent drops it).
type errReader struct {
	io.ReadSeeker
	err error
	n   int64 // bytes read (sent), for the audit record
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.ReadSeeker.Read(p)
	e.n += int64(n)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// handleDownload streams a file with http.ServeContent (Range, If-Range,
// HEAD, conditional GET). The body is always an opaque attachment: an
// uploaded HTML or SVG file must never render in our origin.
func (ui *UI) handleDownload(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	f, err := s.fs.Open(name)
	if err != nil {
		ui.fail(w, r, s, "download", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		ui.fail(w, r, s, "download", err)
		return
	}
	if fi.IsDir() {
		http.Redirect(w, r, ui.opts.Prefix+"files"+escapePath(name)+"/", http.StatusSeeOther)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", contentDisposition(baseName(name)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox; frame-ancestors 'none'")
	h.Set("Cache-Control", "private, no-cache")
	h.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
	rd := &errReader{ReadSeeker: f}
	httpx.ServeContent(w, r, baseName(name), fi.ModTime(), rd)
	if rd.err != nil {
		ui.log.Error("webui: download interrupted", "user", s.user.Name, "err", rd.err)
	}
	if r.Method != http.MethodHead {
		ui.audit(r, s, audit.OpRead, name, "", rd.n, rd.err)
	}
}

// done finishes a successful POST: JSON for XHR, else a flash message and
// a 303 to the listing (post/redirect/get).
func (ui *UI) done(w http.ResponseWriter, r *http.Request, s *sessionView, dir, msg string, extra map[string]any) {
	// The flash is set for XHR too: app.js loads the listing next.
	ui.setFlash(s.key, msg)
	if wantsJSON(r) {
		v := map[string]any{"ok": true, "message": msg}
		for k, x := range extra {
			v[k] = x
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	target := ui.opts.Prefix + "files" + escapePath(dir)
	if dir != "/" {
		target += "/"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (ui *UI) handleMkdir(w http.ResponseWriter, r *http.Request, s *sessionView, dir string) {
	elem := strings.TrimSpace(r.PostForm.Get("name"))
	if !validElem(elem) {
		ui.renderError(w, r, s, http.StatusBadRequest, "That name is not allowed: use a non-empty name without \"/\".")
		return
	}
	if err := s.fs.Mkdir(joinName(dir, elem), 0o755); err != nil {
		ui.fail(w, r, s, "mkdir", err)
		return
	}
	ui.log.Info("webui: mkdir", "user", s.user.Name, "name", joinName(dir, elem))
	ui.audit(r, s, audit.OpMkdir, joinName(dir, elem), "", 0, nil)
	ui.done(w, r, s, dir, "Folder “"+elem+"” created.", nil)
}

type confirmPage struct {
	base
	Name      string
	IsDir     bool
	ActionURL string
	BackURL   string
}

func (ui *UI) confirmData(title string, s *sessionView, action, name string, isDir bool) confirmPage {
	back := ui.opts.Prefix + "files" + escapePath(parentName(name))
	if parentName(name) != "/" {
		back += "/"
	}
	return confirmPage{
		base:      ui.base(title, s),
		Name:      baseName(name),
		IsDir:     isDir,
		ActionURL: ui.opts.Prefix + action + escapePath(name),
		BackURL:   back,
	}
}

func (ui *UI) handleRenameForm(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if name == "/" {
		ui.renderError(w, r, s, http.StatusBadRequest, "Your home folder cannot be renamed.")
		return
	}
	fi, err := s.fs.Stat(name)
	if err != nil {
		ui.fail(w, r, s, "rename", err)
		return
	}
	ui.render(w, r, ui.pages.rename, http.StatusOK, ui.confirmData("Rename", s, "rename", name, fi.IsDir()))
}

func (ui *UI) handleRename(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if name == "/" {
		ui.renderError(w, r, s, http.StatusBadRequest, "Your home folder cannot be renamed.")
		return
	}
	elem := strings.TrimSpace(r.PostForm.Get("newname"))
	if !validElem(elem) {
		ui.renderError(w, r, s, http.StatusBadRequest, "That name is not allowed: use a non-empty name without \"/\".")
		return
	}
	dir := parentName(name)
	if elem == baseName(name) {
		ui.done(w, r, s, dir, "Nothing to rename.", nil)
		return
	}
	if err := s.fs.Rename(name, joinName(dir, elem), false); err != nil {
		ui.fail(w, r, s, "rename", err)
		return
	}
	ui.log.Info("webui: rename", "user", s.user.Name, "from", name, "to", joinName(dir, elem))
	ui.audit(r, s, audit.OpRename, name, joinName(dir, elem), 0, nil)
	ui.done(w, r, s, dir, "Renamed “"+baseName(name)+"” to “"+elem+"”.", nil)
}

func (ui *UI) handleDeleteForm(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if name == "/" {
		ui.renderError(w, r, s, http.StatusBadRequest, "Your home folder cannot be deleted.")
		return
	}
	fi, err := s.fs.Stat(name)
	if err != nil {
		ui.fail(w, r, s, "delete", err)
		return
	}
	ui.render(w, r, ui.pages.del, http.StatusOK, ui.confirmData("Delete", s, "delete", name, fi.IsDir()))
}

func (ui *UI) handleDelete(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	if name == "/" {
		ui.renderError(w, r, s, http.StatusBadRequest, "Your home folder cannot be deleted.")
		return
	}
	fi, err := s.fs.Lstat(name)
	if err != nil {
		ui.fail(w, r, s, "delete", err)
		return
	}
	if fi.IsDir() {
		err = s.fs.RemoveAll(name)
	} else {
		err = s.fs.Remove(name)
	}
	if err != nil {
		ui.fail(w, r, s, "delete", err)
		return
	}
	ui.log.Info("webui: delete", "user", s.user.Name, "name", name)
	ui.audit(r, s, audit.OpRemove, name, "", 0, nil)
	ui.done(w, r, s, parentName(name), "Deleted “"+baseName(name)+"”.", nil)
}

// readPublicForm checks a form posted without a session (sign-in, its code
// step, sign-up): same origin, then a small body. On false the answer was
// sent; what names the form in the log.
func (ui *UI) readPublicForm(w http.ResponseWriter, r *http.Request, what string) bool {
	if !sameOrigin(r) {
		ui.log.Warn("webui: cross-site "+what+" refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "sec-fetch-site", r.Header.Get("Sec-Fetch-Site"))
		ui.renderError(w, r, nil, http.StatusForbidden, "The request came from another site and was refused.")
		return false
	}
	if err := parseSmallForm(w, r); err != nil {
		ui.renderError(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	return true
}
