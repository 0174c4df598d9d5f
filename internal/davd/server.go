package davd

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/securefsd/securefsd/internal/httpx"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Realm is the HTTP Basic realm sent with every 401.
const Realm = "securefsd"

// uiPrefix is where Options.UI is mounted.
const uiPrefix = "/ui/"

// linkPrefix is where Options.Links is mounted (webui.LinkPrefix).
const linkPrefix = "/s/"

// Options configures New. Store and Users are required.
type Options struct {
	Store  *vfs.Store
	Users  *users.DB
	Logger *slog.Logger // nil: discard
	Audit  Auditor      // nil: no audit records (audit.go)
	// UI is the optional browser client (internal/webui), mounted at /ui/.
	// Browser GETs (Accept: text/html) of collections, and of any URL
	// before the browser has authenticated, redirect there (303): to
	// ListURL(name) if UI has that method (internal/webui), else to /ui/. While
	// UI is set, a top-level entry named "ui" is not reachable over WebDAV.
	UI http.Handler
	// Links is the optional public share-link handler (webui.Links),
	// mounted at /s/: no WebDAV credentials, the token in the URL is the
	// capability (logged redacted). While set, a top-level entry named "s"
	// is not reachable over WebDAV.
	Links http.Handler
	// Now is the clock for locks; nil: time.Now.
	Now func() time.Time
	// Locks, in a cluster, keeps WebDAV locks in etcd, shared by every
	// node (NewEtcdLocks); nil: in this process's memory.
	Locks *EtcdLocks
	// ReadHeaderTimeout bounds the TLS handshake plus request head; zero: 30s.
	ReadHeaderTimeout time.Duration
	// BodyStallTimeout closes a connection whose request body sends
	// nothing for this long (a stalled upload must not hold a connection
	// forever, yet a slow one keeps going); zero: 60s.
	BodyStallTimeout time.Duration
	// MaxConns and MaxConnsPerSource cap open connections in total and per
	// source address (IPv6: per /64); a connection over a cap is closed
	// when accepted. Zero: DefaultMaxConns, DefaultMaxConnsPerSource.
	MaxConns, MaxConnsPerSource int
	// MaxRequestsPerUser caps one user's requests in progress (each may
	// hold an upload's buffers); more get 503 with Retry-After. Zero:
	// DefaultMaxRequestsPerUser.
	MaxRequestsPerUser int
	// Recorder, if set, receives requests, file bytes and operation
	// outcomes (metrics), under the protocol name "webdav".
	Recorder Recorder
}

// Recorder receives the server's measurements. It is defined here, where it
// is used, so davd does not depend on a metrics library (cmd/securefsd
// passes internal/obs). An authenticated request in progress counts as a
// session (WebDAV has no other). Methods are called from many goroutines
// and must be quick; nothing identifying a user or a path is passed.
type Recorder interface {
	SessionStarted(proto string)
	SessionEnded(proto string)
	FileIO(proto string, write bool, n int)
	Op(proto, op string, ok bool, d time.Duration)
}

// proto is the protocol label of everything this package records.
const proto = "webdav"

// opName bounds the methods recorded to the ones served; anything else is
// "other" (a client may send any token as a method).
func opName(method string) string {
	switch method {
	case http.MethodOptions, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete,
		"MKCOL", "COPY", "MOVE", "PROPFIND", "PROPPATCH", "LOCK", "UNLOCK":
		return method
	}
	return "other"
}

// Server is the WebDAV server. One Server may serve several listeners.
// Safe for concurrent use.
type Server struct {
	store *vfs.Store
	users *users.DB
	log   *slog.Logger
	ui    http.Handler
	links http.Handler
	now   func() time.Time
	audit Auditor

	readHeaderTimeout time.Duration
	bodyStallTimeout  time.Duration
	// checksumBudget: see the constant; tests lower it.
	checksumBudget int64

	conns    *connLimits
	requests *userRequests
	refusals refusalLog

	locks  *lockManager
	names  *nameLocks
	rec    Recorder // nil: none
	h      http.Handler
	mu     sync.Mutex
	https  []*http.Server
	closed bool
}

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("davd: Options.Store is required")
	}
	if opts.Users == nil {
		return nil, errors.New("davd: Options.Users is required")
	}
	s := &Server{
		store: opts.Store,
		users: opts.Users,
		log:   opts.Logger,
		ui:    opts.UI,
		links: opts.Links,
		now:   opts.Now,
		audit: opts.Audit,

		readHeaderTimeout: opts.ReadHeaderTimeout,
		bodyStallTimeout:  opts.BodyStallTimeout,
		checksumBudget:    checksumBudget,
		rec:               opts.Recorder,
	}
	if s.readHeaderTimeout <= 0 {
		s.readHeaderTimeout = 30 * time.Second
	}
	if s.bodyStallTimeout <= 0 {
		s.bodyStallTimeout = 60 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.conns = newConnLimits(cmp.Or(max(opts.MaxConns, 0), DefaultMaxConns), cmp.Or(max(opts.MaxConnsPerSource, 0), DefaultMaxConnsPerSource), s.connRefused)
	s.requests = newUserRequests(cmp.Or(max(opts.MaxRequestsPerUser, 0), DefaultMaxRequestsPerUser))
	var table lockTable
	if opts.Locks != nil {
		table = opts.Locks
	}
	s.locks = newLockManager(s.now, table)
	s.names = newNameLocks()
	s.h = http.HandlerFunc(s.serveHTTP)
	return s, nil
}

// Handler returns the http.Handler serving WebDAV at / (and the UI at /ui/).
// It authenticates every request itself.
func (s *Server) Handler() http.Handler { return s.h }

// Serve serves HTTPS on ln with tlsCfg, or plain HTTP if tlsCfg is nil,
// until ctx is done or Shutdown is called. It closes ln. It returns nil
// after a shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	hs := &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: s.readHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext:       connContext,
		// Larger HTTP/2 receive windows than the 1 MiB default: one big
		// upload over h2 otherwise stalls on flow control.
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     4<<20 - 1,
			MaxReceiveBufferPerConnection: 4<<20 - 1,
		},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.https = append(s.https, hs)
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
	})
	defer stop()

	var err error
	if tlsCfg != nil {
		hs.TLSConfig = httpx.HardenTLS(tlsCfg)
		err = hs.ServeTLS(readAheadListener{limitListener{ln, s.conns}}, "", "")
	} else {
		err = hs.Serve(limitListener{ln, s.conns})
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("davd: serve: %w", err)
}

// Shutdown stops every Serve call gracefully, waiting for active requests
// until ctx is done (then closes them).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	hss := s.https
	s.https = nil
	s.mu.Unlock()
	var errs []error
	for _, hs := range hss {
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// serveHTTP is the entry point: UI routing, authentication, access log.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	lw := &logWriter{ResponseWriter: w, corker: corkerFor(r)}
	if r.Body != nil {
		// Count on a shallow copy: net/http inspects the original
		// request's Body type (Expect: 100-continue, discarding unread bodies).
		lw.body = &countingBody{ReadCloser: r.Body, rc: http.NewResponseController(w), stall: s.bodyStallTimeout}
		r = r.WithContext(r.Context())
		r.Body = lw.body
	}
	user := "-"
	recorded := false // a WebDAV request of a user: its outcome goes to the Recorder
	logPath := r.URL.Path
	if s.links != nil && strings.HasPrefix(logPath, linkPrefix) {
		logPath = linkPrefix + "(token)" // a link's token is a secret: never in the log
	}
	defer func() {
		status := lw.status
		if status == 0 {
			status = http.StatusOK
		}
		if recorded {
			s.rec.Op(proto, opName(r.Method), status < 400, time.Since(start))
			switch r.Method {
			case http.MethodGet:
				s.rec.FileIO(proto, false, int(lw.bytes))
			case http.MethodPut:
				s.rec.FileIO(proto, true, int(lw.in(r)))
			}
		}
		s.log.Info("dav request",
			"user", user,
			"remote", r.RemoteAddr,
			"method", r.Method,
			"path", logPath,
			"status", status,
			"bytes", lw.bytes,
			"in", lw.in(r),
			"duration", time.Since(start).Round(time.Microsecond))
	}()
	w = lw
	w.Header().Set("Server", "securefsd")
	if r.TLS != nil {
		w.Header().Set("Strict-Transport-Security", httpx.HSTS)
	}

	if s.links != nil && strings.HasPrefix(r.URL.Path, linkPrefix) {
		user = "(link)"
		s.links.ServeHTTP(w, r)
		return
	}
	if s.ui != nil && (r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, uiPrefix)) {
		user = "(ui)"
		if r.URL.Path == "/ui" {
			http.Redirect(w, r, uiPrefix, http.StatusFound)
			return
		}
		// The web client authenticates by its own sessions: it names the
		// user it served for the access log.
		r = r.WithContext(httpx.WithUserSlot(r.Context()))
		s.ui.ServeHTTP(w, r)
		if u := httpx.User(r.Context()); u != "" {
			user = u
		}
		return
	}
	if s.ui != nil && r.Method == http.MethodGet && isBrowser(r) && r.Header.Get("Authorization") == "" {
		// A browser opening any URL without WebDAV credentials goes to the
		// web client, which logs in with its own form and shows the
		// directory (or downloads the file) under the same name. Before
		// authenticating we cannot tell a file from a collection; the
		// client's listing page sends a file name on to its download.
		user = "(ui)"
		http.Redirect(w, r, s.uiURL(cleanName(r.URL.Path)), http.StatusSeeOther)
		return
	}

	name, pw, ok := r.BasicAuth()
	if !ok {
		if r.Method == http.MethodOptions {
			// Windows' WebClient and others probe OPTIONS before
			// authenticating; the answer reveals nothing about any user.
			setDAVHeaders(w)
			w.Header().Set("Allow", allowAll)
			w.WriteHeader(http.StatusOK)
			return
		}
		s.challenge(w)
		return
	}
	u, err := s.users.AuthPassword(r.Context(), "dav", r.RemoteAddr, name, []byte(pw))
	switch {
	case errors.Is(err, users.ErrBanned):
		// 429 rather than 403: the ban ends by itself (the defender's ban time).
		w.Header().Set("Retry-After", "900")
		http.Error(w, "too many failed logins, try again later", http.StatusTooManyRequests)
		return
	case errors.Is(err, users.ErrUnavailable):
		// A cluster node that cannot reach etcd cannot check a login
		// (fail closed); a 401 would make clients ask for the password
		// again, as if it were wrong.
		s.log.Warn("dav: login not checked: the user database is unavailable", "remote", r.RemoteAddr, "err", err)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "user database unavailable, try again later", http.StatusServiceUnavailable)
		return
	case err != nil:
		switch {
		case errors.Is(err, users.ErrAuthFailed):
		case r.Context().Err() != nil:
			// The client went away while its login was checked: its doing.
			s.log.Debug("dav: login abandoned by the client", "remote", r.RemoteAddr, "err", err)
		default:
			s.log.Error("dav: authentication error", "remote", r.RemoteAddr, "err", err)
		}
		s.challenge(w)
		return
	}
	user = u.Name
	if !s.requests.take(u.Name) {
		s.log.Debug("dav: too many requests in progress for user", "user", u.Name, "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many requests in progress for this account, try again", http.StatusServiceUnavailable)
		return
	}
	defer s.requests.release(u.Name)
	home := account.Dir(u)
	fsys, err := account.OpenView(r.Context(), s.store, s.users, u)
	if err != nil {
		s.log.Error("dav: open home", "user", u.Name, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	if s.rec != nil {
		s.rec.SessionStarted(proto)
		defer s.rec.SessionEnded(proto)
		recorded = true
	}
	h := &handler{s: s, fs: fsys, user: u.Name, home: home, perm: u.Perms, log: s.log.With("user", u.Name)}
	err = h.serve(w, r)
	s.auditRequest(r, h, lw, err)
}

func (s *Server) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`", charset="UTF-8"`)
	http.Error(w, "Unauthorized", http.StatusUnauthorized)
}

// isBrowser reports whether r comes from a web browser rather than a
// WebDAV client: it asks for HTML (browsers do for every page they open;
// litmus, rclone, curl, Finder and Windows' WebClient do not), and its
// User-Agent is not one of the WebDAV clients known to send such an Accept.
func isBrowser(r *http.Request) bool {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		return false
	}
	ua := strings.ToLower(r.Header.Get("User-Agent"))
	for _, c := range davAgents {
		if strings.Contains(ua, c) {
			return false
		}
	}
	return true
}

// davAgents are User-Agent fragments of WebDAV clients (lower case).
var davAgents = []string{"webdav", "miniredir", "davfs", "neon", "litmus", "rclone", "cyberduck", "gvfs", "davclnt", "microsoft office", "dav-client"}

// listURLer is implemented by a web client that can show a directory
// (internal/webui's *UI: /ui/files/<dir>).
type listURLer interface{ ListURL(dir string) string }

// uiURL is where a browser asking for name is sent: the web client's page
// for it, or the client's start page if it cannot name one.
func (s *Server) uiURL(name string) string {
	if l, ok := s.ui.(listURLer); ok {
		return l.ListURL(name)
	}
	return uiPrefix
}

// logWriter records the status and body size for the access log.
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	body   *countingBody
	corker corker // the request's connection, if it may be corked
}

func (l *logWriter) WriteHeader(code int) {
	if l.status == 0 && code >= 200 {
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(p []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	n, err := l.ResponseWriter.Write(p)
	l.bytes += int64(n)
	return n, err
}

func (l *logWriter) Flush() {
	if f, ok := l.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ReadFrom sends a file GET straight from the read-ahead buffers
// (http.ServeContent copies its body with io.CopyN; an httpx.Sender, such
// as httpx.AheadReader, writes itself); other sources are copied through a
// pooled one-chunk buffer (io.Copy would allocate 32 KiB per small GET).
func (l *logWriter) ReadFrom(src io.Reader) (int64, error) {
	if lr, ok := src.(*io.LimitedReader); ok {
		if a, ok := lr.R.(httpx.Sender); ok {
			n, err := a.Send(l, lr.N, l.corker)
			lr.N -= n
			return n, err
		}
	}
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	return io.CopyBuffer(writerOnly{l}, src, *bp)
}

// writerOnly hides logWriter's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// Unwrap lets http.ResponseController reach the real writer.
func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// in reports the request body bytes read (PUT sizes in the access log).
func (l *logWriter) in(r *http.Request) int64 {
	if l.body == nil {
		return 0
	}
	return l.body.n
}

type countingBody struct {
	io.ReadCloser
	n int64
	// rc moves the connection's read deadline before every read, so a
	// body that stops arriving for stall ends the request with an error.
	rc    *http.ResponseController
	stall time.Duration
}

func (c *countingBody) Read(p []byte) (int, error) {
	if c.rc != nil && c.stall > 0 {
		_ = c.rc.SetReadDeadline(time.Now().Add(c.stall))
	}
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// connRefused logs a connection closed over a cap: at warn level at most
// once a minute (a flood must not flood the log), else at debug level.
func (s *Server) connRefused(src string, total bool) {
	level := slog.LevelDebug
	if s.refusals.loud(time.Now()) {
		level = slog.LevelWarn
	}
	limit := "per source"
	if total {
		limit = "in total"
	}
	s.log.Log(context.Background(), level, "dav: connection refused: too many connections "+limit, "source", src)
}
