package webui

// API CONTRACT (used by internal/davd via cmd/securefsd):
//
//	type Options struct {
//		Store  *vfs.Store
//		Users  *users.DB
//		Logger *slog.Logger
//		Prefix string            // URL prefix it is mounted at, "/ui/"
//		Secure bool              // set the Secure cookie attribute (false only under --insecure-http)
//		PublicURL string         // base of the links the pages show ("": the request's scheme and Host)
//		IdleTimeout, MaxAge time.Duration // zero: 30m idle, 12h absolute
//	}
//	func New(opts Options) (*UI, error)
//	func (ui *UI) ServeHTTP(w http.ResponseWriter, r *http.Request)

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/httpx"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Defaults for the zero Options.
const (
	DefaultPrefix      = "/ui/"
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	// DefaultMaxSessions bounds the sessions held in memory; a login beyond it
	// first drops expired sessions, then the least recently used session of
	// the user who holds the most.
	DefaultMaxSessions = 10000
	// DefaultMaxSessionsPerUser bounds one user's sessions; a sign-in
	// beyond it ends that user's least recently used session.
	DefaultMaxSessionsPerUser = 32
)

// Options configure a UI. Store and Users are required.
type Options struct {
	Store  *vfs.Store
	Users  *users.DB
	Logger *slog.Logger // nil: discard
	Audit  Auditor      // nil: no audit records (audit.go)
	// Prefix is the URL path the handler is mounted at; it must start and end
	// with "/". The handler accepts requests with the prefix still on the path
	// (the usual case) or already stripped.
	Prefix string
	// Secure sets the Secure attribute on cookies (false only for plain HTTP).
	Secure bool
	// PublicURL is the base URL people outside reach the server at (serve
	// --public-url: behind a proxy or under a public name), without a
	// trailing slash. Links the pages show (share links, invitations)
	// start with it; "" means the scheme and Host of the request.
	PublicURL string
	// IdleTimeout ends a session not used for that long; MaxAge ends any
	// session that old. Zero: DefaultIdleTimeout, DefaultMaxAge.
	IdleTimeout, MaxAge time.Duration
	// Now is the clock (nil: time.Now); tests move it forward.
	Now func() time.Time
	// MaxSessions caps sessions held in memory (zero: DefaultMaxSessions).
	MaxSessions int
	// MaxSessionsPerUser caps one user's sessions (zero:
	// DefaultMaxSessionsPerUser).
	MaxSessionsPerUser int
	// Issuer names the server in authenticator apps (the otpauth:// URL of
	// a TOTP enrolment). Empty: "securefsd".
	Issuer string
	// Shared keeps browser sessions where every node of a cluster finds
	// them (shared.go); nil: in this process only, as on one server.
	Shared SharedSessions
}

// UI is the browser client's http.Handler. Safe for concurrent use.
type UI struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	pages  *pages
	assets map[string]asset // static files by name, with content hash

	mu       sync.Mutex
	sessions map[[32]byte]*session
	pending  map[[32]byte]*pendingLogin // password given, code awaited (twofactor.go)
	forgets  uint64                     // copies of shared sessions dropped so far (shared.go)

	shareUI  *shareUI    // set by NewLinks: the owner's share pages (shareui.go)
	accounts *accountsUI // set by EnableAccounts: sign-up and admin pages (signup.go, adminui.go)

	accessPage *template.Template // a shared folder's access page (folders.go)
}

// New validates opts and returns the handler.
func New(opts Options) (*UI, error) {
	if opts.Store == nil || opts.Users == nil {
		return nil, errors.New("webui: Options.Store and Options.Users are required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(opts.Prefix, "/") || !strings.HasSuffix(opts.Prefix, "/") || path.Clean(opts.Prefix)+"/" != opts.Prefix && opts.Prefix != "/" {
		return nil, fmt.Errorf("webui: prefix %q must be a clean path starting and ending with /", opts.Prefix)
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxSessionsPerUser <= 0 {
		opts.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	ui := &UI{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		sessions: make(map[[32]byte]*session),
		pending:  make(map[[32]byte]*pendingLogin),
	}
	if ui.log == nil {
		ui.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if ui.now == nil {
		ui.now = time.Now
	}
	var err error
	if ui.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if ui.pages, err = parsePages(ui); err != nil {
		return nil, err
	}
	if ui.accessPage, err = parseAccessPage(); err != nil {
		return nil, err
	}
	if opts.Shared != nil {
		if err := opts.Shared.WatchWeb(ui.forgetID, ui.forgetAll); err != nil {
			return nil, fmt.Errorf("webui: watch the cluster's sessions: %w", err)
		}
	}
	return ui, nil
}

// Prefix is the URL prefix the UI serves under.
func (ui *UI) Prefix() string { return ui.opts.Prefix }

// ListURL is the URL of the listing page for a client directory name
// ("/", "/docs"): where davd sends a browser that GETs a collection.
func (ui *UI) ListURL(dir string) string {
	return ui.opts.Prefix + "files" + escapePath(cleanName(dir))
}

// ServeHTTP routes a request under the prefix. Every response carries the
// security headers; see securityHeaders.
func (ui *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	rest, ok := strings.CutPrefix(r.URL.Path, ui.opts.Prefix)
	if !ok {
		// Mounted behind http.StripPrefix, or the prefix without its slash.
		if r.URL.Path+"/" == ui.opts.Prefix {
			rest = ""
		} else {
			rest = strings.TrimPrefix(r.URL.Path, "/")
		}
	}
	action, name, _ := strings.Cut(rest, "/")
	name = cleanName(name)

	switch action {
	case "static":
		ui.serveAsset(w, r, strings.TrimPrefix(name, "/"))
		return
	case "login":
		if name == "/code" {
			ui.handleCode(w, r)
			return
		}
		ui.handleLogin(w, r)
		return
	case "signup":
		ui.handleSignup(w, r)
		return
	case "":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			ui.methodNotAllowed(w, "GET, HEAD")
			return
		}
		http.Redirect(w, r, ui.opts.Prefix+"files/", http.StatusSeeOther)
		return
	}

	get, post := ui.route(action)
	var handler handlerFunc
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		handler = get
	case http.MethodPost:
		handler = post
	}
	if get == nil && post == nil {
		ui.renderError(w, r, nil, http.StatusNotFound, "There is no such page.")
		return
	}
	if handler == nil {
		allow := "POST"
		if get != nil {
			allow = "GET, HEAD"
			if post != nil {
				allow += ", POST"
			}
		}
		ui.methodNotAllowed(w, allow)
		return
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		ui.log.Warn("webui: cross-site POST refused", "path", r.URL.Path, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "sec-fetch-site", r.Header.Get("Sec-Fetch-Site"))
		ui.renderError(w, r, nil, http.StatusForbidden, "The request came from another site and was refused.")
		return
	}
	s, err := ui.sessionFor(r)
	if err != nil {
		ui.needLogin(w, r, err)
		return
	}
	httpx.SetUser(r.Context(), s.user.Name) // for davd's access log
	if s.mustEnrol && action != "account" && action != "logout" {
		// --require-2fa: nothing but enrolment until 2FA is on.
		if r.Method == http.MethodGet && !wantsJSON(r) {
			http.Redirect(w, r, ui.opts.Prefix+"account/", http.StatusSeeOther)
			return
		}
		ui.renderError(w, r, s, http.StatusForbidden, "This server requires two-factor sign-in: set it up on your account page first.")
		return
	}
	if r.Method == http.MethodPost && action != "upload" {
		// Upload reads its token from the header or the first multipart
		// part, so the body streams; every other POST is a small form.
		if err := parseSmallForm(w, r); err != nil {
			ui.renderError(w, r, s, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !ui.checkCSRF(s, r, r.PostForm.Get("csrf")) {
			ui.csrfFailed(w, r, s)
			return
		}
	}
	handler(w, r, s, name)
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, s *sessionView, name string)

// route maps the first path element to its GET and POST handlers (nil: the
// method is not allowed). The state-changing half is always the POST.
func (ui *UI) route(action string) (get, post handlerFunc) {
	switch action {
	case "files":
		return ui.handleList, nil
	case "dl":
		return ui.handleDownload, nil
	case "upload":
		return nil, ui.handleUpload
	case "mkdir":
		return nil, ui.handleMkdir
	case "rename":
		return ui.handleRenameForm, ui.handleRename
	case "delete":
		return ui.handleDeleteForm, ui.handleDelete
	case "logout":
		return nil, ui.handleLogout
	case "share", "links", "revoke":
		return ui.shareRoute(action)
	case "admin":
		return ui.adminRoute()
	case "access":
		return ui.handleAccess, ui.handleGrant
	case "access-revoke":
		return nil, ui.handleUngrant
	case "account":
		return ui.accountRoute()
	}
	return nil, nil
}

func (ui *UI) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// securityHeaders are set on every response. The CSP allows only our own
// script and stylesheet files: no inline code, no frames, forms post only to
// us. Downloads tighten it further (see handleDownload).
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
}

// sameOrigin refuses POSTs that a browser marks as cross-site, in addition
// to the CSRF token and SameSite=Strict: Sec-Fetch-Site when sent, else
// Origin when it names an origin. Our Referrer-Policy (no-referrer) makes
// browsers send "Origin: null" even for our own forms, so null proves
// nothing either way. Clients that send neither header pass (they still need
// the cookie and the token).
// baseURL is where links shown to the user point: Options.PublicURL, else
// the scheme and Host the request came with.
func (ui *UI) baseURL(r *http.Request) string {
	if ui.opts.PublicURL != "" {
		return ui.opts.PublicURL
	}
	scheme := "https"
	if !ui.opts.Secure {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return true
	}
	_, host, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(host, r.Host)
}

// maxFormBytes bounds the non-upload forms (a name and a token).
const maxFormBytes = 64 << 10

// parseSmallForm reads a URL-encoded form body of at most maxFormBytes; a
// multipart body would be buffered by ParseMultipartForm, so only upload
// accepts one.
func parseSmallForm(w http.ResponseWriter, r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != "application/x-www-form-urlencoded" {
		return fmt.Errorf("webui: form content type %q", ct)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

// cleanName turns the rest of a URL path into a client name: absolute,
// cleaned, ".." stopping at the top. vfs confines it again.
func cleanName(p string) string {
	return path.Clean("/" + p)
}
