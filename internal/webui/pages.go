package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"path"
	"time"
)

//go:embed assets
var assetFS embed.FS

// asset is one embedded static file, served with a content-hash version in
// its URL so it can be cached for long.
type asset struct {
	data    []byte
	ctype   string
	version string
}

var staticAssets = []string{"app.css", "app.js", "folder.svg", "file.svg", "favicon.svg"}

func loadAssets() (map[string]asset, error) {
	m := make(map[string]asset, len(staticAssets))
	for _, name := range staticAssets {
		b, err := assetFS.ReadFile("assets/" + name)
		if err != nil {
			return nil, fmt.Errorf("webui: embedded %s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) { // do not depend on the host's mime.types
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		m[name] = asset{data: b, ctype: ct, version: hex.EncodeToString(sum[:6])}
	}
	return m, nil
}

func (ui *UI) assetURL(name string) string {
	return ui.opts.Prefix + "static/" + name + "?v=" + ui.assets[name].version
}

func (ui *UI) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := ui.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		ui.methodNotAllowed(w, "GET, HEAD")
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", `"`+a.version+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.data))
}

// pages holds one template set per page, each with the shared layout.
type pages struct {
	login, list, rename, del, errPage *template.Template
	code, account                     *template.Template
}

func parsePages(ui *UI) (*pages, error) {
	parse := func(name string) (*template.Template, error) {
		t, err := template.New(name).ParseFS(assetFS, "assets/layout.html", "assets/"+name)
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", name, err)
		}
		return t, nil
	}
	var p pages
	var err error
	for _, x := range []struct {
		dst  **template.Template
		name string
	}{{&p.login, "login.html"}, {&p.list, "list.html"}, {&p.rename, "rename.html"}, {&p.del, "delete.html"}, {&p.errPage, "error.html"},
		{&p.code, "code.html"}, {&p.account, "account.html"}} {
		if *x.dst, err = parse(x.name); err != nil {
			return nil, err
		}
	}
	return &p, nil
}

// base is the data every page's layout needs.
type base struct {
	Title  string
	Prefix string
	CSSURL string
	JSURL  string
	Icon   string
	User   string
	CSRF   string
	Flash  string
	Error  string
	Admin  bool // the signed-in user has the admin role: link to /ui/admin/
	Enrol  bool // --require-2fa and no 2FA yet: only the account page works
}

func (ui *UI) base(title string, s *sessionView) base {
	b := base{Title: title, Prefix: ui.opts.Prefix, CSSURL: ui.assetURL("app.css"), JSURL: ui.assetURL("app.js"), Icon: ui.assetURL("favicon.svg")}
	if s != nil {
		b.User, b.CSRF = s.user.Name, s.csrf
		b.Admin = s.user.Admin && ui.accounts != nil && !s.mustEnrol
		b.Enrol = s.mustEnrol
	}
	return b
}

// render executes t into a buffer first, so a template error becomes a 500
// rather than half a page.
func (ui *UI) render(w http.ResponseWriter, r *http.Request, t *template.Template, status int, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		ui.log.Error("webui: render", "template", t.Name(), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// renderError shows msg (fixed text, never err's) with status. s may be nil.
func (ui *UI) renderError(w http.ResponseWriter, r *http.Request, s *sessionView, status int, msg string) {
	back := ui.opts.Prefix + "files/"
	if s == nil {
		back = ui.opts.Prefix + "login"
	}
	if wantsJSON(r) {
		writeJSON(w, status, map[string]any{"error": msg})
		return
	}
	data := struct {
		base
		Heading string
		BackURL string
	}{ui.base(http.StatusText(status), s), http.StatusText(status), back}
	data.Error = msg
	ui.render(w, r, ui.pages.errPage, status, data)
}
