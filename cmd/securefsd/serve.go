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
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/davd"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/sftpd"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
	"github.com/securefsd/securefsd/internal/webui"
)

var serveFlags = []cli.Flag{
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
	altsrc.NewStringFlag(&cli.StringFlag{Name: "cipher", Value: "auto", Usage: "at-rest AEAD of new files: XAES-256-GCM, XChaCha20-Poly1305, or auto (XAES-256-GCM if the CPU has AES instructions); existing files keep theirs", EnvVars: []string{"SECUREFSD_CIPHER"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "upload-hashes", Usage: "digests computed while files are uploaded (md5,sha1,sha256); default none: computed when a client first asks (md5sum, oc:checksums) and cached", EnvVars: []string{"SECUREFSD_UPLOAD_HASHES"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "memory-limit", Value: 200, Usage: "soft memory target in MiB: the Go GC collects only near this size, or near twice the live heap if that is larger (fewer collections of SSH packets); 0 = Go defaults (also when GOGC or GOMEMLIMIT is set)", EnvVars: []string{"SECUREFSD_MEMORY_LIMIT"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-sessions", Value: 256, Usage: "logged-in SSH connections at once, in total", EnvVars: []string{"SECUREFSD_MAX_SESSIONS"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-sessions-per-user", Value: 32, Usage: "SSH connections at once, per user", EnvVars: []string{"SECUREFSD_MAX_SESSIONS_PER_USER"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-startups", Value: 256, Usage: "SSH connections still logging in, at once, in total (their own budget, apart from --max-sessions)", EnvVars: []string{"SECUREFSD_MAX_STARTUPS"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "max-startups-per-source", Value: 64, Usage: "SSH connections still logging in, at once, per source address (IPv4 address or IPv6 /64)", EnvVars: []string{"SECUREFSD_MAX_STARTUPS_PER_SOURCE"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long transfers may take to finish", EnvVars: []string{"SECUREFSD_SHUTDOWN_TIMEOUT"}}),
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

func (e *env) serve(c *cli.Context) error {
	log, err := newLogger(e.stderr, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return err
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	uploadHashes, err := vfs.ParseHashKinds(c.String("upload-hashes"))
	if err != nil {
		return fmt.Errorf("--upload-hashes: %w", err)
	}
	aead, err := envelope.ParseAEAD(c.String("cipher"))
	if err != nil {
		return fmt.Errorf("--cipher: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("data directory is readable by others; tightening to 0700", "dir", dir)
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
	}

	kr, kf, err := loadKeyring(c, e, dir, true, log)
	if err != nil {
		return err
	}
	if err := admin.CheckKey(filepath.Join(dir, keyCheckFileName), kr); err != nil {
		return err
	}
	db, err := users.Open(filepath.Join(dir, usersDBFileName), users.Options{Logger: log})
	if errors.Is(err, users.ErrLocked) {
		return fmt.Errorf("another securefsd is using %s", dir)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := vfs.NewStore(filepath.Join(dir, storeDirName), vfs.Options{Keyring: kr, Logger: log, UploadHashes: uploadHashes, AEAD: aead})
	if err != nil {
		return err
	}
	defer store.Close()

	firstUser, firstPassword, err := ensureFirstUser(c.Context, db, store)
	if err != nil {
		return err
	}
	defer clear(firstPassword)

	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	go tuneGC(ctx, c.Int("memory-limit"), log)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		serveErr error
	)
	fail := func(err error) {
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errOnce.Do(func() { serveErr = err })
			cancel()
		}
	}
	type shutdowner interface {
		Shutdown(context.Context) error
	}
	var servers []shutdowner

	var sftpAddr, davURL string
	if addr := c.String("sftp-addr"); addr != "" {
		keys, err := sftpd.LoadOrCreateHostKeys(filepath.Join(dir, "ssh"))
		if err != nil {
			return err
		}
		srv, err := sftpd.New(sftpd.Options{
			Store: store, Users: db, HostKeys: keys, Logger: log,
			IdleTimeout: c.Duration("idle-timeout"), LoginGrace: c.Duration("login-grace"), MaxSessions: c.Int("max-sessions"), MaxSessionsPerUser: c.Int("max-sessions-per-user"),
			MaxStartups: c.Int("max-startups"), MaxStartupsPerSource: c.Int("max-startups-per-source"),
		})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("sftp listen: %w", err)
		}
		sftpAddr = ln.Addr().String()
		servers = append(servers, srv)
		wg.Add(1)
		go func() { defer wg.Done(); fail(srv.Serve(ctx, ln)) }()
	}
	if addr := c.String("dav-addr"); addr != "" {
		insecure := c.Bool("insecure-http")
		var tlsCfg *tls.Config
		if !insecure {
			certFile, keyFile := c.String("tls-cert"), c.String("tls-key")
			if certFile == "" && keyFile == "" {
				if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
					return err
				}
				certFile, keyFile = filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
			}
			cert, fp, err := davd.LoadOrCreateCert(certFile, keyFile)
			if err != nil {
				return err
			}
			log.Info("tls certificate", "file", certFile, "sha256", fp)
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		} else {
			log.Warn("WebDAV over plain HTTP (--insecure-http): passwords and files cross the network in the clear unless a TLS proxy is in front")
		}
		ui, err := webui.New(webui.Options{Store: store, Users: db, Logger: log, Prefix: "/ui/", Secure: !insecure})
		if err != nil {
			return err
		}
		srv, err := davd.New(davd.Options{
			Store: store, Users: db, Logger: log, UI: ui,
			ReadHeaderTimeout: c.Duration("read-header-timeout"), BodyStallTimeout: cmp.Or(c.Duration("body-stall-timeout"), c.Duration("read-header-timeout")),
		})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("webdav listen: %w", err)
		}
		scheme := "https"
		if insecure {
			scheme = "http"
		}
		davURL = scheme + "://" + ln.Addr().String()
		servers = append(servers, srv)
		wg.Add(1)
		go func() { defer wg.Done(); fail(srv.Serve(ctx, ln, tlsCfg)) }()
	}

	local := admin.NewLocal(db, store, kf, filepath.Join(dir, keyCheckFileName), kr)
	adminLn, err := admin.Listen(dir)
	if err != nil {
		return err
	}
	adminSrv := &http.Server{Handler: admin.Handler(local, log), ReadHeaderTimeout: 10 * time.Second}
	wg.Add(1)
	go func() { defer wg.Done(); fail(adminSrv.Serve(adminLn)) }()
	defer os.Remove(filepath.Join(dir, admin.SocketName))

	if addr := c.String("pprof-addr"); addr != "" {
		if err := servePprof(ctx, addr, log); err != nil {
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
	log.Info("serving", "data_dir", dir, "sftp", sftpAddr, "webdav", davURL, "cipher", aead.String(), "version", buildVersion())
	if firstUser != "" {
		printWelcome(e, firstUser, string(firstPassword), sftpAddr, davURL)
	}
	fmt.Fprintln(e.stdout, "ready")

	<-ctx.Done()
	log.Info("shutting down", "timeout", c.Duration("shutdown-timeout"))
	sctx, scancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer scancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "err", err)
		}
	}
	_ = adminSrv.Shutdown(sctx)
	wg.Wait()
	log.Info("stopped")
	return serveErr
}

// ensureFirstUser creates a user with a random password when the database
// has none, so the quick start needs nothing else.
func ensureFirstUser(ctx context.Context, db *users.DB, store *vfs.Store) (string, []byte, error) {
	us, err := db.List(ctx)
	if err != nil || len(us) > 0 {
		return "", nil, err
	}
	const name = "securefsd"
	pw := []byte(rand.Text())
	if err := db.Add(ctx, users.User{Name: name, Home: name, Perms: users.PermAll}, pw); err != nil {
		return "", nil, fmt.Errorf("first user: %w", err)
	}
	if _, err := store.Home(name, vfs.HomeOptions{Perm: vfs.PermList}); err != nil {
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

// servePprof exposes the profiler on a loopback address only.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--pprof-addr must be a loopback address")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); srv.Close() }()
	log.Info("pprof", "addr", ln.Addr().String())
	return nil
}
