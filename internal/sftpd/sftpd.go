package sftpd

// API CONTRACT (used by cmd/securefsd):
//
//	type Options struct {
//		Store       *vfs.Store
//		Users       *users.DB
//		HostKeys    []ssh.Signer      // from LoadOrCreateHostKeys
//		Logger      *slog.Logger      // nil: discard
//		LoginGrace  time.Duration     // zero: 30s
//		IdleTimeout time.Duration     // zero: 15m
//		MaxSessions int               // total; zero: 256
//		MaxSessionsPerUser int        // zero: 32
//	}
//	func New(opts Options) (*Server, error)
//	// Serve accepts on ln until ctx is done or Shutdown is called.
//	func (s *Server) Serve(ctx context.Context, ln net.Listener) error
//	// Shutdown stops accepting, waits for sessions to end until ctx is done, then closes them.
//	func (s *Server) Shutdown(ctx context.Context) error
//	// LoadOrCreateHostKeys reads ssh_host_ed25519_key and ssh_host_rsa_key
//	// (OpenSSH PEM format) from dir, generating them (0600) on first run.
//	func LoadOrCreateHostKeys(dir string) ([]ssh.Signer, error)

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Defaults for the zero values of Options.
const (
	DefaultLoginGrace         = 30 * time.Second
	DefaultIdleTimeout        = 15 * time.Minute
	DefaultMaxSessions        = 256
	DefaultMaxSessionsPerUser = 32
	// DefaultMaxStartups and DefaultMaxStartupsPerSource bound the
	// connections still logging in (OpenSSH's MaxStartups and
	// PerSourceMaxStartups): in total, and per source address (IPv4
	// address, IPv6 /64). The per-source cap leaves room for tools that
	// open many connections at once (rclone --transfers, 32 parallel
	// clients behind one NAT).
	DefaultMaxStartups          = 256
	DefaultMaxStartupsPerSource = 64
	// maxChannelsPerConn bounds the session channels one connection may
	// hold open at once (OpenSSH's MaxSessions default).
	maxChannelsPerConn = 10
)

// Options configures a Server. Store, Users and HostKeys are required.
type Options struct {
	Store              *vfs.Store
	Users              *users.DB
	Audit              Auditor       // nil: no audit records (see audit.go)
	HostKeys           []ssh.Signer  // from LoadOrCreateHostKeys
	Logger             *slog.Logger  // nil: discard
	LoginGrace         time.Duration // zero: 30s; time allowed from connect to authenticated
	IdleTimeout        time.Duration // zero: 15m; a connection without traffic for this long is closed
	MaxSessions        int           // logged-in connections in total; zero: 256
	MaxSessionsPerUser int           // logged-in connections per user; zero: 32
	// Connections still logging in have their own budget, so that idle
	// or stalling handshakes cannot take the logged-in users' slots: in
	// total (zero: DefaultMaxStartups) and per source address (IPv4
	// address or IPv6 /64; zero: DefaultMaxStartupsPerSource).
	MaxStartups          int
	MaxStartupsPerSource int
	ServerVersion        string // SSH identification; empty: "SSH-2.0-securefsd"
	// Ciphers offered to clients; nil: DefaultCiphers(). Names outside
	// AllowedCiphers() are dropped.
	Ciphers []string
	// Recorder, if set, receives sessions, file bytes and operation
	// outcomes (metrics), under the protocol name "ssh".
	Recorder Recorder
}

// Recorder receives the server's measurements. It is defined here, where it
// is used, so sftpd does not depend on a metrics library (cmd/securefsd
// passes internal/obs). Methods are called from many goroutines and must be
// quick. Nothing identifying a user or a path is passed.
type Recorder interface {
	SessionStarted(proto string)
	SessionEnded(proto string)
	FileIO(proto string, write bool, n int)
	Op(proto, op string, ok bool, d time.Duration)
}

// proto is the protocol label of everything this package records.
const proto = "ssh"

// Server is an SSH server offering SFTP, SCP and checksum commands. Its
// methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	ciphers []string // offered, validated

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	perUser   map[string]int
	sessions  int            // logged-in connections
	startups  int            // connections still logging in
	perSource map[string]int // connections still logging in, per source
	refusedAt atomic.Int64   // unix nanoseconds of the last refusal logged at warn
	closing   bool
	done      chan struct{} // closed by Shutdown
	wg        sync.WaitGroup
	watchOnce sync.Once // starts watchUsers
}

// serverConn is one client connection.
type serverConn struct {
	nc     net.Conn
	remote string
	source string // sourceKey(remote); "" once logged in or closed
	user   string // set after authentication
	cancel context.CancelFunc
	srv    *Server
	// busy counts open SFTP handles and running commands; Shutdown closes
	// a connection as soon as it has none.
	busy atomic.Int64
	// acc is set once logged in; watchUsers re-checks it.
	acc atomic.Pointer[access]
	// sess is set once the session runs (Sessions, KillSession).
	sess atomic.Pointer[session]
}

// shutdownIdleGrace is how long a connection that just became idle during
// Shutdown stays open, so the reply to its last request (e.g. the CLOSE
// that ended the upload) reaches the client first.
const shutdownIdleGrace = time.Second

// acquire marks the start of work that Shutdown should wait for; release
// ends it.
func (c *serverConn) acquire() { c.busy.Add(1) }

func (c *serverConn) release() {
	if c.busy.Add(-1) != 0 || !c.srv.isClosing() {
		return
	}
	time.AfterFunc(shutdownIdleGrace, func() {
		if c.busy.Load() == 0 {
			c.nc.Close()
		}
	})
}

func (s *Server) isClosing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// permUserKey is the ExtraData key under which the authenticated users.User
// travels from the auth callbacks to the connection (its name is also in
// Extensions[extUser]).
type permUserKey struct{}

const extUser = "securefsd-user"

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Users == nil {
		return nil, errors.New("sftpd: Store and Users are required")
	}
	if len(opts.HostKeys) == 0 {
		return nil, errors.New("sftpd: at least one host key is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LoginGrace <= 0 {
		opts.LoginGrace = DefaultLoginGrace
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxSessionsPerUser <= 0 {
		opts.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if opts.MaxStartups <= 0 {
		opts.MaxStartups = DefaultMaxStartups
	}
	if opts.MaxStartupsPerSource <= 0 {
		opts.MaxStartupsPerSource = DefaultMaxStartupsPerSource
	}
	if opts.ServerVersion == "" {
		opts.ServerVersion = "SSH-2.0-securefsd"
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger.With("proto", "ssh"),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		perUser:   make(map[string]int),
		perSource: make(map[string]int),
		done:      make(chan struct{}),
	}
	want := opts.Ciphers
	if want == nil {
		want = defaultCiphers
	}
	s.ciphers = supportedOnly(supportedOnly(want, allowedCiphers), ssh.SupportedAlgorithms().Ciphers)
	if len(s.ciphers) == 0 {
		return nil, fmt.Errorf("sftpd: no usable cipher in %q", want)
	}
	return s, nil
}

// Algorithms are restricted to modern ones: hybrid post-quantum and
// curve25519 key exchange, AEAD ciphers or AES-CTR with encrypt-then-MAC
// SHA-2 MACs, no SHA-1 anywhere (the RSA host key signs with SHA-2 only, see
// LoadOrCreateHostKeys; client RSA keys must sign with rsa-sha2-*).
var (
	kexAlgorithms    = []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519}
	macs             = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}
	publicKeyAuthAlg = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
		ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
	}
)

// AllowedCiphers returns the ciphers Options.Ciphers may name (a new
// slice: callers may change it).
func AllowedCiphers() []string { return slices.Clone(allowedCiphers) }

// DefaultCiphers returns the ciphers offered when Options.Ciphers is nil
// (a new slice). See defaultCiphers.
func DefaultCiphers() []string { return slices.Clone(defaultCiphers) }

var allowedCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// defaultCiphers leaves out chacha20-poly1305@openssh.com although it is
// allowed: the client picks the cipher, OpenSSH's client lists
// chacha20-poly1305 first, and x/crypto has no assembly for ChaCha20 on
// amd64, so it costs the server about twice the CPU of AES (AES-NI) per
// byte. Without it OpenSSH clients pick aes128-ctr with
// hmac-sha2-256-etm, or AES-GCM when asked (-c aes128-gcm@openssh.com,
// the fastest). Set Options.Ciphers to AllowedCiphers() to offer it.
var defaultCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherAES256GCM,
	ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR,
}

// supportedOnly keeps the algorithms this x/crypto implements.
func supportedOnly(want, have []string) []string {
	var out []string
	for _, w := range want {
		for _, h := range have {
			if w == h {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

// authState records one connection's login attempts for the defender.
type authState struct {
	ctx        context.Context // ends with the login grace: a login waiting in the defender's queue gives up with the connection
	mu         sync.Mutex
	user       string // last user name tried
	attempts   int    // auth attempts other than "none"
	pwFailures int    // password failures (already scored by users.AuthPassword)
	succeeded  bool
}

// newSSHConfig builds the server configuration of one connection; its
// callbacks record into st.
func (s *Server) newSSHConfig(st *authState) *ssh.ServerConfig {
	sup := ssh.SupportedAlgorithms()
	cfg := &ssh.ServerConfig{
		Config: ssh.Config{
			KeyExchanges: supportedOnly(kexAlgorithms, sup.KeyExchanges),
			Ciphers:      s.ciphers,
			MACs:         supportedOnly(macs, sup.MACs),
		},
		PublicKeyAuthAlgorithms: supportedOnly(publicKeyAuthAlg, sup.PublicKeyAuths),
		ServerVersion:           s.opts.ServerVersion,
		MaxAuthTries:            6,
		PasswordCallback: func(md ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			u, app, err := s.opts.Users.AuthLogin(st.ctx, "ssh", md.RemoteAddr().String(), md.User(), password)
			if err != nil {
				st.mu.Lock()
				st.pwFailures++
				st.mu.Unlock()
				return nil, err
			}
			return appPermissions(userPermissions(u), app), nil
		},
		// Called for key queries and before the signature check; x/crypto
		// caches the answer per key and verifies the signature afterwards.
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			u, err := s.opts.Users.AuthKey(st.ctx, "ssh", md.RemoteAddr().String(), md.User(), key)
			if err != nil {
				return nil, err
			}
			return keyPermissions(userPermissions(u), key), nil
		},
		AuthLogCallback: func(md ssh.ConnMetadata, method string, err error) {
			if method == "none" {
				return // every client starts with "none" to learn the methods
			}
			st.mu.Lock()
			st.user = md.User()
			st.attempts++
			if err == nil {
				st.succeeded = true
			}
			st.mu.Unlock()
			if err != nil {
				s.log.Debug("auth attempt failed", "user", logName(md.User()), "remote", md.RemoteAddr().String(), "method", method, "err", err)
				return
			}
			s.log.Info("login", "user", logName(md.User()), "remote", md.RemoteAddr().String(), "method", method)
		},
	}
	for _, k := range s.opts.HostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

func userPermissions(u users.User) *ssh.Permissions {
	return &ssh.Permissions{
		Extensions: map[string]string{extUser: u.Name},
		ExtraData:  map[any]any{permUserKey{}: u},
	}
}

// Serve accepts on ln until ctx is done or Shutdown is called; it then
// returns nil. Any other accept failure is returned. ln is closed on
// return. Connections accepted before keep running after ctx is done:
// Shutdown lets them finish, then closes them (like net/http).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	for _, fp := range Fingerprints(s.opts.HostKeys) {
		s.log.Info("host key", "fingerprint", fp)
	}
	s.log.Info("listening", "addr", ln.Addr().String())
	s.watchOnce.Do(func() { go s.watchUsers() })

	connCtx := context.WithoutCancel(ctx)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-s.done:
				return nil
			default:
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				case <-s.done:
					return nil
				}
			}
			return fmt.Errorf("sftpd: accept: %w", err)
		}
		backoff = 0
		s.startConn(connCtx, nc)
	}
}

// isTemporary reports accept errors worth retrying (EMFILE and friends).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) startConn(ctx context.Context, nc net.Conn) {
	remote := nc.RemoteAddr().String()
	if s.opts.Users.Banned(remote) {
		s.log.Info("connection refused: banned", "remote", remote)
		nc.Close()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	src := sourceKey(remote)
	c := &serverConn{nc: nc, remote: remote, source: src, cancel: cancel, srv: s}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		cancel()
		nc.Close()
		return
	}
	var refused string
	switch {
	case s.sessions >= s.opts.MaxSessions:
		// Checked again after login; refusing here spares the handshake.
		refused = "too many sessions"
	case s.startups >= s.opts.MaxStartups:
		refused = "too many connections logging in"
	case s.perSource[src] >= s.opts.MaxStartupsPerSource:
		refused = "too many connections logging in from this address"
	}
	if refused != "" {
		s.mu.Unlock()
		cancel()
		nc.Close()
		s.logRefused(refused, remote)
		return
	}
	s.startups++
	s.perSource[src]++
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			cancel()
			nc.Close()
			s.mu.Lock()
			s.endStartupLocked(c)
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		s.serveConn(ctx, c)
	}()
}

// endStartupLocked takes c out of the logging-in budget (once).
func (s *Server) endStartupLocked(c *serverConn) {
	if c.source == "" {
		return
	}
	s.startups--
	if s.perSource[c.source] <= 1 {
		delete(s.perSource, c.source)
	} else {
		s.perSource[c.source]--
	}
	c.source = ""
}

// logRefused logs a connection refused for the logging-in budget: at warn
// level at most every refusedWarnEvery (a flood must not flood the log
// too), else at debug.
func (s *Server) logRefused(why, remote string) {
	now := time.Now().UnixNano()
	last := s.refusedAt.Load()
	if now-last >= int64(refusedWarnEvery) && s.refusedAt.CompareAndSwap(last, now) {
		s.log.Warn("connection refused: "+why+" (further refusals in the next minute are logged at debug level)", "remote", remote,
			"max_startups", s.opts.MaxStartups, "max_startups_per_source", s.opts.MaxStartupsPerSource)
		return
	}
	s.log.Debug("connection refused: "+why, "remote", remote)
}

const refusedWarnEvery = time.Minute

// sourceKey is the source a connection is counted under for
// MaxStartupsPerSource: the IPv4 address, or the IPv6 /64 (one host
// usually has a whole /64).
func sourceKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return remote
	}
	a := ap.Addr().Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// acquireUser moves a connection that logged in as user from the
// logging-in budget to the sessions, if the total and per-user limits
// allow; the refusal says which limit did not.
func (s *Server) acquireUser(c *serverConn, user string) (refused string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endStartupLocked(c)
	switch {
	case s.sessions >= s.opts.MaxSessions:
		return "too many sessions"
	case s.perUser[user] >= s.opts.MaxSessionsPerUser:
		return "too many sessions for user"
	}
	s.sessions++
	s.perUser[user]++
	c.user = user
	return ""
}

func (s *Server) releaseUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions--
	if s.perUser[user] <= 1 {
		delete(s.perUser, user)
	} else {
		s.perUser[user]--
	}
}

// Shutdown stops accepting and closes idle connections (no open file or
// directory handle, no running command) at once; busy ones are closed when
// their work ends, or when ctx is done (open uploads are then closed as if
// the connection dropped). It returns when every connection goroutine has
// finished.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.done)
	}
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if c.busy.Load() == 0 {
			c.nc.Close()
		}
	}
	s.mu.Unlock()

	idle := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.cancel()
		c.nc.Close()
	}
	s.mu.Unlock()
	<-idle
	return ctx.Err()
}

// handshakeFailed logs a connection that never got through login and
// tells the defender. A connection that tried a password or key and never
// succeeded scores once, unless AuthPassword already scored its wrong
// passwords. One that held a logging-in slot until the login grace ended
// without logging in scores once for its address (as OpenSSH's
// PerSourcePenalties "noauth"): an address that keeps slots busy is soon
// banned and then dropped at accept. A connection that closes before
// trying to log in (port probes, health checks, ssh-keyscan, a client
// that rejects the host key) does not count.
func (s *Server) handshakeFailed(c *serverConn, st *authState, err error) {
	st.mu.Lock()
	user, attempts, pwFailures, succeeded := st.user, st.attempts, st.pwFailures, st.succeeded
	st.mu.Unlock()
	if attempts == 0 && !succeeded && isTimeout(err) {
		// Score before the outcome line, so whoever reads the log sees the
		// defender's record of this connection before its end.
		s.opts.Users.Failed("ssh", c.remote, "")
		s.log.Info("login failed", "event", eventSSHLoginFailed, "remote", c.remote, "reason", "login grace ran out before any login attempt")
		return
	}
	if attempts == 0 || succeeded {
		s.log.Debug("connection closed before login", "event", eventClosedBeforeLogin, "remote", c.remote, "err", err)
		return
	}
	if pwFailures == 0 {
		s.opts.Users.Failed("ssh", c.remote, user)
	}
	s.log.Info("login failed", "event", eventSSHLoginFailed, "remote", c.remote, "user", logName(user), "attempts", attempts, "err", err)
}

// isTimeout reports a deadline error (the login grace ran out).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// logName is what the log says for a user name a client sent: a name that
// is not a valid user name (a password typed into the name field, say) is
// never logged.
func logName(name string) string {
	if users.ValidName(name) {
		return name
	}
	return "(invalid name)"
}

func (s *Server) serveConn(ctx context.Context, c *serverConn) {
	dc := newSSHConn(c.nc, s.opts.LoginGrace)
	defer dc.Close()
	authCtx, authCancel := context.WithTimeout(context.Background(), s.opts.LoginGrace)
	defer authCancel()
	st := &authState{ctx: authCtx}
	sconn, chans, reqs, err := ssh.NewServerConn(dc, s.newSSHConfig(st))
	if err != nil {
		s.handshakeFailed(c, st, err)
		return
	}
	defer sconn.Close()
	dc.setIdle(s.opts.IdleTimeout)
	l, ok := loginOf(sconn.Permissions)
	if !ok {
		s.log.Error("authenticated connection without user", "remote", c.remote)
		return
	}
	u := l.user
	if why := s.acquireUser(c, u.Name); why != "" {
		s.log.Warn("connection refused: "+why, "user", u.Name, "remote", c.remote,
			"max_sessions", s.opts.MaxSessions, "max_sessions_per_user", s.opts.MaxSessionsPerUser)
		return
	}
	defer s.releaseUser(u.Name)
	// The session id joins the log lines of the session with its audit
	// records and `session list`.
	sid := newSessionID()
	log := s.log.With("user", u.Name, "remote", c.remote, "session", sid)
	acc, reason, err := newAccess(s.opts.Users, s.opts.Store, log, l, func(string) { sconn.Close() })
	if err != nil {
		log.Error("open home failed", "err", err)
		return
	}
	if acc == nil {
		log.Info("connection closed: access revoked", "event", eventRevoked, "reason", reason)
		return
	}
	c.acc.Store(acc)
	start := time.Now()
	log.Info("session start", "event", eventSessionStart, "client", string(sconn.ClientVersion()))
	if r := s.opts.Recorder; r != nil {
		r.SessionStarted(proto)
		defer r.SessionEnded(proto)
	}
	sess := &session{
		srv:    s,
		conn:   c,
		acc:    acc,
		user:   u.Name,
		remote: c.remote,
		log:    log,
		id:     sid,
		start:  start,
		kill:   func() { sconn.Close() },
	}
	c.sess.Store(sess)
	sess.audit(audit.Record{Protocol: "ssh", Op: audit.OpSessionOpen, Result: audit.ResultOK, Detail: string(sconn.ClientVersion())})
	defer sess.auditEnd()
	go ssh.DiscardRequests(reqs)
	context.AfterFunc(ctx, func() { sconn.Close() })

	var chanWG sync.WaitGroup
	open := make(chan struct{}, maxChannelsPerConn)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only session channels are supported")
			continue
		}
		select {
		case open <- struct{}{}:
		default:
			nch.Reject(ssh.ResourceShortage, "too many sessions on this connection")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			<-open
			continue
		}
		chanWG.Add(1)
		go func() {
			defer chanWG.Done()
			defer func() { <-open }()
			sess.serveChannel(ctx, ch, creqs)
		}()
	}
	chanWG.Wait()
	log.Info("session end", "event", eventSessionEnd, "duration", time.Since(start).Round(time.Millisecond))
}
