package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/davd"
	"github.com/securefsd/securefsd/internal/obs"
	"github.com/securefsd/securefsd/internal/sftpd"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Operations wiring (issue 22): metrics, health probes, systemd.

var metricsAddrFlag = altsrc.NewStringFlag(&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9100 (empty: off)", EnvVars: []string{"SECUREFSD_METRICS_ADDR"}})

// recorders are the metrics as each package's recorder interface: nil
// interfaces when metrics are off (a nil *obs.Metrics in an interface
// would not compare equal to nil).
type recorders struct {
	m *obs.Metrics
}

func (r recorders) sftpd() sftpd.Recorder {
	if r.m == nil {
		return nil
	}
	return r.m
}

func (r recorders) davd() davd.Recorder {
	if r.m == nil {
		return nil
	}
	return r.m
}

// metricsLogin counts logins and bans from the users database's login
// hook. Label values are bounded: users' protocol and method names.
func metricsLogin(m *obs.Metrics) func(users.LoginEvent) {
	return func(ev users.LoginEvent) {
		proto := protoName(ev.Proto)
		if ev.Ban != "" {
			m.Banned(proto, ev.Ban)
			return
		}
		method := cmp.Or(ev.Method, "none")
		switch {
		case ev.Err == nil:
			m.LoginAttempt(proto, method, "ok")
		case errors.Is(ev.Err, users.ErrBanned):
			m.LoginAttempt(proto, method, "banned")
		default:
			m.LoginAttempt(proto, method, "failed")
		}
	}
}

func (r recorders) vfs() vfs.Observer {
	if r.m == nil {
		return nil
	}
	return r.m
}

// readiness is what /readyz and the systemd watchdog check: the store
// takes a write, the keyring opens the key-check file, the user database
// answers.
func readiness(core serverCore, l *admin.Local) []obs.Check {
	return []obs.Check{
		{Name: "store", Fn: func(context.Context) error { return core.store.CheckWritable() }},
		{Name: "keyring", Fn: func(context.Context) error {
			return admin.CheckKey(filepath.Join(core.dir, keyCheckFileName), l.Keyring())
		}},
		{Name: "database", Fn: core.users.Ping},
	}
}

// startMetrics serves the metrics and probes on --metrics-addr, and starts
// the systemd watchdog (when systemd asks for one).
func startMetrics(c *cli.Context, g *group, core serverCore, l *admin.Local) (string, error) {
	checks := readiness(core, l)
	g.run(func(ctx context.Context) error { obs.Watchdog(ctx, checks, core.log); return nil }, nil)
	addr := c.String("metrics-addr")
	if addr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics listen: %w", err)
	}
	srv := &http.Server{Handler: obs.Mux(core.metrics, checks, core.log), ReadHeaderTimeout: 10 * time.Second}
	g.run(func(context.Context) error { return srv.Serve(ln) }, srv.Shutdown)
	return ln.Addr().String(), nil
}

// notifySystemd tells systemd the service is ready (Type=notify); the
// returned function tells it the service is stopping.
func notifySystemd(core serverCore) func() {
	if err := obs.NotifyReady(); err != nil {
		core.log.Warn("systemd notify", "err", err)
	}
	return func() {
		if err := obs.NotifyStopping(); err != nil && !errors.Is(err, net.ErrClosed) {
			core.log.Warn("systemd notify", "err", err)
		}
	}
}
