package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Check is one readiness condition (store writable, keyring open,
// database reachable). Fn must honour ctx.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// checkTimeout bounds one readiness probe: a check that hangs (a wedged
// disk) is a failure, not a hung probe.
const checkTimeout = 5 * time.Second

// Ready runs every check and returns the names of those that failed,
// with their errors joined.
func Ready(ctx context.Context, checks []Check) (failed []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var errs []error
	for _, c := range checks {
		if e := c.Fn(ctx); e != nil {
			failed = append(failed, c.Name)
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, e))
		}
	}
	return failed, errors.Join(errs...)
}

// Mux serves /metrics (m may be nil: then no metrics), /healthz (the
// process answers) and /readyz (every check passes: 200, else 503 naming
// the failed checks; the errors, which may name disk paths, go to log
// only).
func Mux(m *Metrics, checks []Check, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		failed, err := Ready(r.Context(), checks)
		if err != nil {
			log.Warn("not ready", "event", EventNotReady, "failed", strings.Join(failed, ","), "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(failed, ", "))
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// EventNotReady is the stable event name of a failed readiness probe.
const EventNotReady = "not_ready"

// NotifyReady tells systemd (Type=notify) that the service is up; outside
// systemd (no NOTIFY_SOCKET) it does nothing.
func NotifyReady() error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyReady)
	return err
}

// NotifyStopping tells systemd that the service is stopping.
func NotifyStopping() error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

// Watchdog pings systemd's watchdog (WatchdogSec) at half its interval
// until ctx ends, as long as the readiness checks complete: a process
// whose store or database hangs stops pinging and systemd restarts it. A
// check that fails quickly (a full or read-only disk) still pings, since
// a restart would not mend it; the failure is in STATUS= and /readyz.
// Without a watchdog (WATCHDOG_USEC unset) it returns at once.
func Watchdog(ctx context.Context, checks []Check, log *slog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done := make(chan []string, 1)
		go func() {
			failed, _ := Ready(ctx, checks)
			done <- failed
		}()
		select {
		case <-ctx.Done():
			return
		case failed := <-done:
			status := "STATUS=ready"
			if len(failed) > 0 {
				status = "STATUS=not ready: " + strings.Join(failed, ", ")
			}
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog+"\n"+status); err != nil {
				log.Warn("systemd watchdog notify", "err", err)
			}
		case <-time.After(interval / 2):
			log.Error("readiness checks hang: not pinging the watchdog", "event", EventNotReady)
		}
	}
}
