package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/davd"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/obs"
	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/sftpd"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
	"github.com/securefsd/securefsd/internal/webui"
)

// serveFlags are serve's flags: its own, then those of the features that
// keep their flags beside their code.
var serveFlags = slices.Concat(serveOwnFlags, auditServeFlags, clusterFlags, acmeFlags)

var serveOwnFlags = []cli.Flag{
	altsrc.NewStringFlag(&cli.StringFlag{Name: "sftp-addr", Value: "127.0.0.1:2022", Usage: "SFTP/SCP listen address (port 0 picks a free port; empty disables)", EnvVars: []string{"SECUREFSD_SFTP_ADDR"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "dav-addr", Value: "127.0.0.1:8443", Usage: "WebDAV and web client listen address (port 0 picks a free port; empty disables)", EnvVars: []string{"SECUREFSD_DAV_ADDR"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate (PEM) for WebDAV (default: DATA-DIR/tls/cert.pem, self-signed on first run)", EnvVars: []string{"SECUREFSD_TLS_CERT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "tls-key", Usage: "TLS private key (PEM) for WebDAV (default: DATA-DIR/tls/key.pem)", EnvVars: []string{"SECUREFSD_TLS_KEY"}}),
	altsrc.NewBoolFlag(&cli.BoolFlag{Name: "insecure-http", Usage: "serve WebDAV over plain HTTP (only behind a TLS-terminating proxy)", EnvVars: []string{"SECUREFSD_INSECURE_HTTP"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"SECUREFSD_LOG_LEVEL"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"SECUREFSD_LOG_FORMAT"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "idle-timeout", Value: 15 * time.Minute, Usage: "close SSH connections idle this long", EnvVars: []string{"SECUREFSD_IDLE_TIMEOUT"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "login-grace", Value: 30 * time.Second, Usage: "SSH connections must log in within this time", EnvVars: []string{"SECUREFSD_LOGIN_GRACE"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "read-header-timeout", Value: 30 * time.Second, Usage: "HTTPS: time allowed for the TLS handshake and request head", EnvVars: []string{"SECUREFSD_READ_HEADER_TIMEOUT"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "body-stall-timeout", Usage: "HTTPS: end an upload whose body sends nothing for this long (default: the --read-header-timeout value)", EnvVars: []string{"SECUREFSD_BODY_STALL_TIMEOUT"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-http-conns", Value: davd.DefaultMaxConns, Usage: "HTTPS: open connections at once, in total (more are closed when accepted)", EnvVars: []string{"SECUREFSD_MAX_HTTP_CONNS"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-http-conns-per-source", Value: davd.DefaultMaxConnsPerSource, Usage: "HTTPS: open connections at once per source address (IPv6: per /64)", EnvVars: []string{"SECUREFSD_MAX_HTTP_CONNS_PER_SOURCE"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-http-requests-per-user", Value: davd.DefaultMaxRequestsPerUser, Usage: "HTTPS: one user's requests in progress at once (more get 503)", EnvVars: []string{"SECUREFSD_MAX_HTTP_REQUESTS_PER_USER"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "cipher", Value: "auto", Usage: "at-rest AEAD of new files: XAES-256-GCM, XChaCha20-Poly1305, or auto (XAES-256-GCM if the CPU has AES instructions); existing files keep theirs", EnvVars: []string{"SECUREFSD_CIPHER"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "shared-prefix", Value: vfs.DefaultSharedPrefix, Usage: "the directory of every user's tree where the shared folders they may reach appear (it shadows a home entry of that name)", EnvVars: []string{"SECUREFSD_SHARED_PREFIX"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "storage", Value: "v1", Usage: "layout of a new data directory: v1 (a directory per home, names in the clear) or v2 (docs/STORAGE.md: names, tree, sizes and times in an encrypted index, contents in blobs; a preview); an existing store keeps its own (securefsd migrate turns v1 into v2)", EnvVars: []string{"SECUREFSD_STORAGE"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "durability", Value: "strict", Usage: "storage v2: strict (an upload, rename or removal is answered once it is on disk) or relaxed (answered once it is in memory and in a write-ahead log; on disk within --durability-window: a crash of the process loses nothing, a power cut at most that window; docs/SECURITY.md)", EnvVars: []string{"SECUREFSD_DURABILITY"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "durability-window", Value: time.Second, Usage: "with --durability relaxed: the longest an answered change waits to be on disk", EnvVars: []string{"SECUREFSD_DURABILITY_WINDOW"}}),
	altsrc.NewBoolFlag(&cli.BoolFlag{Name: "pad", Usage: "storage v2: pad stored file sizes with Padmé (at most 12% more space; docs/SECURITY.md)", EnvVars: []string{"SECUREFSD_PAD"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "upload-hashes", Usage: "digests computed while files are uploaded (md5,sha1,sha256); default none: computed when a client first asks (md5sum, oc:checksums) and cached", EnvVars: []string{"SECUREFSD_UPLOAD_HASHES"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "memory-limit", Value: 200, Usage: "soft memory target in MiB: the Go GC collects only near this size, or near twice the live heap if that is larger (fewer collections of SSH packets); 0 = Go defaults (also when GOGC or GOMEMLIMIT is set)", EnvVars: []string{"SECUREFSD_MEMORY_LIMIT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "procs", Value: "auto", Usage: "CPUs the server runs on at once (GOMAXPROCS): auto (fewer while the load is light, all as soon as it needs them; docs/PERFORMANCE.md), 0 (Go's default: every CPU, or the container's limit) or a number; ignored when GOMAXPROCS is set", EnvVars: []string{"SECUREFSD_PROCS"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-sessions", Value: 256, Usage: "logged-in SSH connections at once, in total", EnvVars: []string{"SECUREFSD_MAX_SESSIONS"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-sessions-per-user", Value: 32, Usage: "SSH connections at once, per user", EnvVars: []string{"SECUREFSD_MAX_SESSIONS_PER_USER"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-handles-per-user", Value: vfs.DefaultMaxHandlesPerHome, Usage: "files and directories one user may hold open at once, over all sessions and protocols (all users together: half the file descriptor limit)", EnvVars: []string{"SECUREFSD_MAX_HANDLES_PER_USER"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "max-file-size", Value: "1T", Usage: "largest file a client may write or truncate to, e.g. 100G (binary units)", EnvVars: []string{"SECUREFSD_MAX_FILE_SIZE"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-startups", Value: 256, Usage: "SSH connections still logging in, at once, in total (their own budget, apart from --max-sessions)", EnvVars: []string{"SECUREFSD_MAX_STARTUPS"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-startups-per-source", Value: 64, Usage: "SSH connections still logging in, at once, per source address (IPv4 address or IPv6 /64)", EnvVars: []string{"SECUREFSD_MAX_STARTUPS_PER_SOURCE"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "password-policy", Usage: "rules for passwords set through the running server, e.g. min-length=12,common=on,name=on (the defaults)", EnvVars: []string{"SECUREFSD_PASSWORD_POLICY"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long transfers may take to finish", EnvVars: []string{"SECUREFSD_SHUTDOWN_TIMEOUT"}}),
	publicURLFlag("base URL people reach the web pages at (behind a proxy or under a public name), e.g. https://files.example.org: share links and invitations (CLI and browser) start with it (default: the browser's address; the CLI gets this server's address)"),
	loginSafelistFlag,
	signupFlag, signupPermsFlag, signupQuotaFlag,
	rollbackAnchorFlag,
	altsrc.NewBoolFlag(&cli.BoolFlag{Name: "require-2fa", Usage: "every account must set up two-factor login at its next browser sign-in; until then WebDAV and SFTP password logins are refused (SSH keys keep working)", EnvVars: []string{"SECUREFSD_REQUIRE_2FA"}}),
	metricsAddrFlag,
	&cli.StringFlag{Name: "pprof-addr", Usage: "serve net/http/pprof on this loopback address (profiling only)", Hidden: true, EnvVars: []string{"SECUREFSD_PPROF_ADDR"}},
}

func (e *env) serveCommand() *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "run the SFTP/SCP and WebDAV servers (first run creates the data dir, keys, host keys and TLS certificate)",
		Flags:  serveFlags,
		Before: altsrc.InitInputSourceWithContext(serveFlags, altsrc.NewYamlSourceFromFlagFunc("config")),
		Action: e.serve,
	}
}

// serve runs until the context ends or a server fails. Whatever path it
// leaves by, everything it started is stopped first, newest first: a late
// failure (an occupied port) never leaves an earlier listener open or the
// admin socket behind.
func (e *env) serve(c *cli.Context) (err error) {
	names, err := parseLogNames(defaultLogNames(c))
	if err != nil {
		return err
	}
	log, err := newLogger(e.stderr, c.String("log-level"), c.String("log-format"), names.replace)
	if err != nil {
		return err
	}
	var publicURL string
	if u := c.String("public-url"); u != "" {
		if publicURL, err = parsePublicURL(u); err != nil {
			return fmt.Errorf("--public-url: %w", err)
		}
	}
	procs, err := parseProcs(c.String("procs"))
	if err != nil {
		return err
	}
	core, closeCore, err := e.openCore(c, log, names)
	if err != nil {
		return err
	}
	defer closeCore()
	core.publicURL = publicURL
	dir := core.dir

	firstUser, firstPassword, err := ensureFirstUser(c.Context, core.users, core.store, log)
	if err != nil {
		return err
	}
	defer clear(firstPassword)

	// Deferred after closeCore, so it runs before the store and database close.
	g := newGroup(c.Context, log)
	defer func() {
		if serr := g.shutdown(c.Duration("shutdown-timeout")); err == nil {
			err = serr
		}
	}()
	g.run(func(ctx context.Context) error { tuneGC(ctx, c.Int("memory-limit"), log); return nil }, nil)
	g.run(func(ctx context.Context) error { tuneProcs(ctx, procs, log); return nil }, nil)
	keepAnchor(g, core.users, c.String("rollback-anchor"), log)
	keepIndexAnchor(g, core.store, c.String("rollback-anchor"), log)
	keepRefreshed(g, core.store, core.remote, log)

	sftpAddr, err := startSFTP(c, g, core)
	if err != nil {
		return err
	}
	davURL, err := startDAV(c, g, core)
	if err != nil {
		return err
	}
	base := core.publicURL
	if base == "" && davURL != "" {
		base = localBaseURL(davURL)
	}
	local, err := startAdmin(g, core, base)
	if err != nil {
		return err
	}
	if err := serveLiveSessions(core); err != nil {
		return err
	}
	metricsAddr, err := startMetrics(c, g, core, local)
	if err != nil {
		return err
	}
	if addr := c.String("pprof-addr"); addr != "" {
		if err := startPprof(g, addr, log); err != nil {
			return err
		}
	}

	// Lines a script can read; see e2e/harness_test.go and scripts/bench.sh.
	if sftpAddr != "" {
		fmt.Fprintf(e.stdout, "listening sftp %s\n", sftpAddr)
	}
	if davURL != "" {
		fmt.Fprintf(e.stdout, "listening webdav %s\n", davURL)
	}
	if metricsAddr != "" {
		fmt.Fprintf(e.stdout, "listening metrics http://%s\n", metricsAddr)
	}
	log.Info("serving", "data_dir", dir, "sftp", sftpAddr, "webdav", davURL, "cipher", core.aead.String(), "version", buildVersion())
	if firstUser != "" {
		printWelcome(e, firstUser, string(firstPassword), sftpAddr, davURL)
	}
	fmt.Fprintln(e.stdout, "ready")
	defer notifySystemd(core)()

	<-g.ctx.Done()
	log.Info("shutting down", "timeout", c.Duration("shutdown-timeout"))
	return nil // the deferred shutdown reports a server's failure
}

// serverCore is what every server is built on.
type serverCore struct {
	// sessions gathers the live sessions of the protocols started (session
	// list/kill, the admin page).
	sessions *sessionHub
	dir      string
	// remote: a node's object store and etcd (nil on a single node).
	remote  *remote
	keyring *envelope.Keyring
	keyFile admin.KeyFile
	aead    envelope.AEAD // of new files
	store   *vfs.Store
	users   *users.DB
	log     *slog.Logger
	policy  pwpolicy.Policy // of passwords set through the server
	audit   *audit.Log      // nil with --audit=false
	audDir  string
	// publicURL is --public-url, checked, without a trailing slash ("": none).
	publicURL string
	metrics   *obs.Metrics // nil: --metrics-addr not set
}

// auditor is the trail as the protocols' Auditor interfaces take it: a nil
// interface (not a typed nil pointer) when there is none.
func (core serverCore) auditor() interface{ Record(audit.Record) } {
	if core.audit == nil {
		return nil
	}
	return core.audit
}

// openCore checks the data directory and opens the keyring, the user
// database and the store. The returned close closes them; on error nothing
// stays open.
func (e *env) openCore(c *cli.Context, log *slog.Logger, names *logNames) (core serverCore, closeCore func(), err error) {
	core.log = log
	core.sessions = &sessionHub{}
	if c.String("metrics-addr") != "" {
		core.metrics = obs.New()
	}
	rec := recorders{core.metrics}
	dir, err := dataDir(c)
	if err != nil {
		return core, nil, err
	}
	uploadHashes, err := vfs.ParseHashKinds(c.String("upload-hashes"))
	if err != nil {
		return core, nil, fmt.Errorf("--upload-hashes: %w", err)
	}
	if core.policy, err = pwpolicy.Parse(c.String("password-policy")); err != nil {
		return core, nil, fmt.Errorf("--password-policy: %w", err)
	}
	maxFileSize, err := parseSize(c.String("max-file-size"))
	if err == nil && maxFileSize <= 0 {
		err = errors.New("must be positive")
	}
	if err != nil {
		return core, nil, fmt.Errorf("--max-file-size: %w", err)
	}
	if c.Int("max-handles-per-user") <= 0 {
		return core, nil, errors.New("--max-handles-per-user: must be positive")
	}
	if err := prepareServeOS(log); err != nil {
		return core, nil, err
	}
	aead, err := envelope.ParseAEAD(c.String("cipher"))
	if err != nil {
		return core, nil, fmt.Errorf("--cipher: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("data directory is readable by others; tightening to 0700", "dir", dir)
		if err := os.Chmod(dir, 0o700); err != nil {
			return core, nil, err
		}
	}

	kr, kf, err := loadKeyring(c, e, dir, true, log)
	if err != nil {
		return core, nil, err
	}
	if err := admin.CheckKey(filepath.Join(dir, keyCheckFileName), kr); err != nil {
		return core, nil, err
	}
	safelist, err := parseSafelist(c.String("login-safelist"))
	if err != nil {
		return core, nil, err
	}
	uopts := users.Options{Logger: log, Defender: users.DefenderOptions{Safelist: safelist}, Require2FA: c.Bool("require-2fa")}
	var storage int
	switch c.String("storage") {
	case "v1", "":
		storage = vfs.StorageV1
	case "v2":
		storage = vfs.StorageV2
	default:
		return core, nil, fmt.Errorf("--storage %q: v1 or v2", c.String("storage"))
	}
	var relaxed time.Duration
	switch c.String("durability") {
	case "strict", "":
	case "relaxed":
		relaxed = c.Duration("durability-window")
		if relaxed <= 0 || relaxed > time.Minute {
			return core, nil, fmt.Errorf("--durability-window %s: between 1ms and 1m", relaxed)
		}
	default:
		return core, nil, fmt.Errorf("--durability %q: strict or relaxed", c.String("durability"))
	}
	if err := migrationUnderWay(dir); err != nil {
		return core, nil, err
	}
	// The users database's lock says whether another server runs here:
	// take it before opening the trail, which only one process may append to.
	// A cluster node holds it too, though its users are etcd's.
	db, err := openUsers(dir, kr, uopts)
	if errors.Is(err, users.ErrLocked) {
		return core, nil, fmt.Errorf("another securefsd is using %s", dir)
	}
	if err != nil {
		return core, nil, err
	}
	sopts := vfs.Options{Keyring: kr, Logger: log, UploadHashes: uploadHashes, AEAD: aead,
		MaxHandlesPerHome: c.Int("max-handles-per-user"), MaxFileSize: maxFileSize, SharedPrefix: c.String("shared-prefix"), Observer: rec.vfs(),
		Storage: storage, Pad: c.Bool("pad"), Relaxed: relaxed}
	var rem *remote
	// undo closes what is open so far (db is the one in use: users.db,
	// or etcd's on a cluster node, whose users.db rem holds).
	undo := func() {
		db.Close()
		rem.close()
	}
	if wantsRemote(c) {
		if rem, err = openRemote(c, dir, kr, log, &sopts); err != nil {
			undo()
			return core, nil, err
		}
		if rem.clustered() {
			edb, err := openClusterUsers(c.Context, c, dir, kr, db, uopts, rem, log)
			if err != nil {
				undo()
				return core, nil, err
			}
			db = edb
		}
	}
	if err := checkAnchor(db, c.String("rollback-anchor"), log); err != nil {
		undo()
		return core, nil, err
	}
	alog, closeAudit, err := e.openAudit(c, dir, kr, names, log)
	if err != nil {
		undo()
		return core, nil, fmt.Errorf("audit: %w", err)
	}
	// Logins and bans go to the trail and to the metrics.
	var hooks []func(users.LoginEvent)
	if alog != nil {
		hooks = append(hooks, onLogin(alog))
	}
	if core.metrics != nil {
		hooks = append(hooks, metricsLogin(core.metrics))
	}
	if len(hooks) > 0 {
		db.SetLoginHook(func(ev users.LoginEvent) {
			for _, h := range hooks {
				h(ev)
			}
		})
	}
	store, err := openStore(dir, kr, sopts)
	if err != nil {
		undo()
		closeAudit()
		return core, nil, err
	}
	if store.StorageVersion() == vfs.StorageV1 {
		log.Info("storage version 1: names, the tree, sizes and times are in the clear on disk; securefsd migrate (server stopped) turns the store into storage version 2 (docs/STORAGE.md)")
	}
	if err := checkIndexAnchor(store, c.String("rollback-anchor"), log); err != nil {
		store.Close()
		undo()
		closeAudit()
		return core, nil, err
	}
	core.dir, core.keyring, core.keyFile, core.aead, core.store, core.users = dir, kr, kf, aead, store, db
	core.audit, core.audDir, core.remote = alog, auditDir(c, dir), rem
	if core.metrics != nil {
		core.metrics.Store(store.OpenHandles, store.DiskSpace)
	}
	return core, func() {
		store.Close()
		db.Close() // before rem's etcd client, which a cluster's db uses
		rem.close()
		closeAudit() // last: the servers' final records (session ends) are in
	}, nil
}

// group holds the servers serve started: each runs in its own goroutine
// until the group's context ends, and the first unexpected error of any of
// them ends the group. shutdown stops them newest first.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	wg     sync.WaitGroup

	mu    sync.Mutex
	err   error                         // first serving error
	stops []func(context.Context) error // in start order
}

func newGroup(parent context.Context, log *slog.Logger) *group {
	ctx, cancel := context.WithCancel(parent)
	return &group{ctx: ctx, cancel: cancel, log: log}
}

// run registers stop (nil: serve ends with the context alone) and starts
// serve in a goroutine. Call it as soon as a listener is open, so no
// failure path can leave the listener unowned.
func (g *group) run(serve func(context.Context) error, stop func(context.Context) error) {
	if stop != nil {
		g.mu.Lock()
		g.stops = append(g.stops, stop)
		g.mu.Unlock()
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.fail(serve(g.ctx))
	}()
}

// fail records a server's error and ends the group; the errors of an
// orderly stop are not failures.
func (g *group) fail(err error) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return
	}
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.cancel()
}

// shutdown ends the group's context, stops every server newest first
// (in-flight transfers get timeout to finish), waits for their goroutines
// and returns the first serving error.
func (g *group) shutdown(timeout time.Duration) error {
	g.cancel()
	sctx, scancel := context.WithTimeout(context.Background(), timeout)
	defer scancel()
	g.mu.Lock()
	stops := g.stops
	g.stops = nil
	g.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		if err := stops[i](sctx); err != nil {
			g.log.Warn("shutdown", "err", err)
		}
	}
	g.wg.Wait()
	g.log.Info("stopped")
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// startSFTP starts the SSH server unless --sftp-addr is empty, and returns
// the address it listens on.
func startSFTP(c *cli.Context, g *group, core serverCore) (string, error) {
	addr := c.String("sftp-addr")
	if addr == "" {
		return "", nil
	}
	dir, store, db, log := core.dir, core.store, core.users, core.log
	keys, err := sftpd.LoadOrCreateHostKeys(filepath.Join(dir, "ssh"))
	if err != nil {
		return "", err
	}
	srv, err := sftpd.New(sftpd.Options{
		Store: store, Users: db, HostKeys: keys, Logger: log, Audit: core.auditor(),
		IdleTimeout: c.Duration("idle-timeout"), LoginGrace: c.Duration("login-grace"), MaxSessions: c.Int("max-sessions"), MaxSessionsPerUser: c.Int("max-sessions-per-user"),
		MaxStartups: c.Int("max-startups"), MaxStartupsPerSource: c.Int("max-startups-per-source"),
		Recorder: recorders{core.metrics}.sftpd(),
	})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("sftp listen: %w", err)
	}
	g.run(func(ctx context.Context) error { return srv.Serve(ctx, ln) }, srv.Shutdown)
	core.sessions.addSSH(srv)
	return ln.Addr().String(), nil
}

// startDAV starts the WebDAV server and the web client unless --dav-addr
// is empty, and returns its base URL.
func startDAV(c *cli.Context, g *group, core serverCore) (string, error) {
	addr := c.String("dav-addr")
	if addr == "" {
		return "", nil
	}
	dir, store, db, log := core.dir, core.store, core.users, core.log
	insecure := c.Bool("insecure-http")
	var tlsCfg *tls.Config
	if !insecure {
		certFile, keyFile := c.String("tls-cert"), c.String("tls-key")
		if certFile == "" && keyFile == "" {
			if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
				return "", err
			}
			certFile, keyFile = filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
		}
		cert, fp, err := davd.LoadOrCreateCert(certFile, keyFile)
		if err != nil {
			return "", err
		}
		log.Info("tls certificate", "file", certFile, "sha256", fp)
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		acmeCfg, err := acmeTLS(c, g, dir, cert, log)
		if err != nil {
			return "", err
		}
		if acmeCfg != nil {
			tlsCfg = acmeCfg
		}
	} else {
		log.Warn("WebDAV over plain HTTP (--insecure-http): passwords and files cross the network in the clear unless a TLS proxy is in front")
	}
	ui, err := webui.New(webui.Options{Store: store, Users: db, Logger: log, Audit: core.auditor(), Prefix: "/ui/", Secure: !insecure, PublicURL: core.publicURL,
		Shared: core.remote.webSessions()})
	if err != nil {
		return "", err
	}
	links, err := webui.NewLinks(ui, shares.New(db, shares.Options{}))
	if err != nil {
		return "", err
	}
	core.sessions.addWeb(ui)
	if err := enableAccounts(c, ui, core); err != nil {
		return "", err
	}
	srv, err := davd.New(davd.Options{
		Store: store, Users: db, Logger: log, Audit: core.auditor(), UI: ui, Links: links,
		ReadHeaderTimeout: c.Duration("read-header-timeout"), BodyStallTimeout: cmp.Or(c.Duration("body-stall-timeout"), c.Duration("read-header-timeout")),
		MaxConns: c.Int("max-http-conns"), MaxConnsPerSource: c.Int("max-http-conns-per-source"), MaxRequestsPerUser: c.Int("max-http-requests-per-user"),
		Recorder: recorders{core.metrics}.davd(),
		Locks:    core.remote.davLocks(),
	})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("webdav listen: %w", err)
	}
	g.run(func(ctx context.Context) error { return srv.Serve(ctx, ln, tlsCfg) }, srv.Shutdown)
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	return scheme + "://" + ln.Addr().String(), nil
}

// startAdmin serves the management API on DATA-DIR/admin.sock; stopping
// removes the socket file. baseURL, where this server's web pages are reached ("" without WebDAV),
// goes with the links and invitations it creates, so the CLI prints them
// with the server's setting.
func startAdmin(g *group, core serverCore, baseURL string) (*admin.Local, error) {
	dir, log := core.dir, core.log
	m := admin.NewLocal(core.users, core.store, core.keyFile, filepath.Join(dir, keyCheckFileName), core.keyring)
	m.UsersKey = filepath.Join(dir, usersKeyFileName)
	if m.Store.StorageVersion() == vfs.StorageV2 {
		m.IndexKey = filepath.Join(dir, indexKeyFileName)
	}
	m.Policy = &core.policy
	m.BaseURL = baseURL
	m.Sessions = []admin.SessionSource{core.sessions}
	if core.metrics != nil {
		m.RotationProgress = core.metrics.KeyRotation
	}
	var mgr admin.Manager = m
	if core.audit != nil {
		m.AuditDir = core.audDir
		mgr = admin.Audited(m, core.audit)
	}
	ln, err := admin.Listen(dir)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: admin.Handler(mgr, log), ReadHeaderTimeout: 10 * time.Second, ConnContext: admin.PeerContext}
	g.run(func(context.Context) error { return srv.Serve(ln) }, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if rerr := os.Remove(filepath.Join(dir, admin.SocketName)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
		return err
	})
	return m, nil
}

// ensureFirstUser creates a user with a random password when the database
// has none, so the quick start needs nothing else. It does not when the
// store holds a home of that name (left by `user del` without --purge):
// the new account would get the old files.
func ensureFirstUser(ctx context.Context, db *users.DB, store *vfs.Store, log *slog.Logger) (string, []byte, error) {
	us, err := db.List(ctx)
	if err != nil || len(us) > 0 {
		return "", nil, err
	}
	const name = "securefsd"
	switch leftover, err := store.HasHome(name); {
	case err != nil:
		return "", nil, fmt.Errorf("first user: %w", err)
	case leftover:
		log.Warn("no users, but the store holds the files of a deleted user of the first user's name: not creating a first user; add one with `securefsd user add`", "home", name)
		return "", nil, nil
	}
	pw := []byte(rand.Text())
	u := users.User{Name: name, Home: name, Perms: users.PermAll}
	switch err := db.Add(ctx, u, pw); {
	case errors.Is(err, users.ErrExists):
		// Another node of a cluster, starting at the same time, made it.
		return "", nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("first user: %w", err)
	}
	if _, err := account.Open(store, u); err != nil {
		return "", nil, err
	}
	return name, pw, nil
}

func printWelcome(e *env, user, pw, sftpAddr, davURL string) {
	w := e.stdout
	fmt.Fprintf(w, "\nFirst run: created user %q with password %s\n", user, pw)
	fmt.Fprintln(w, "It is shown only this once. Change it with: securefsd user passwd "+user)
	if sftpAddr != "" {
		host, port, _ := net.SplitHostPort(sftpAddr)
		fmt.Fprintf(w, "  sftp -P %s %s@%s\n", port, user, host)
		fmt.Fprintf(w, "  scp -P %s FILE %s@%s:\n", port, user, host)
	}
	if davURL != "" {
		k := ""
		if strings.HasPrefix(davURL, "https") {
			k = "-k "
		}
		fmt.Fprintf(w, "  curl %s-u %s:%s -T FILE %s/\n", k, user, pw, davURL)
		fmt.Fprintf(w, "  rclone lsf :webdav: --webdav-url %s/ --webdav-vendor owncloud --webdav-user %s --webdav-pass \"$(rclone obscure %s)\" --no-check-certificate\n", davURL, user, pw)
		fmt.Fprintf(w, "  browser: %s/ui/\n", davURL)
	}
	fmt.Fprintln(w)
}

// startPprof exposes the profiler on a loopback address only.
func startPprof(g *group, addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--pprof-addr must be a loopback address")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// A profile in progress is not worth waiting for: Close, not Shutdown.
	g.run(func(context.Context) error { return srv.Serve(ln) }, func(context.Context) error { return srv.Close() })
	log.Info("pprof", "addr", ln.Addr().String())
	return nil
}
