package obs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: the recorders move the series they name, every series of
// ours is registered under the securefsd namespace, and no label carries
// anything but the bounded values the code chooses.
func TestMetrics(t *testing.T) {
	m := New()
	m.SessionStarted("ssh")
	m.SessionStarted("ssh")
	m.SessionEnded("ssh")
	m.FileIO("webdav", true, 1000)
	m.FileIO("webdav", false, 10)
	m.Op("ssh", "upload", true, 30*time.Millisecond)
	m.Op("ssh", "upload", false, time.Second)
	m.LoginAttempt("dav", "password", "failed")
	m.Banned("ssh", "address")
	m.IntegrityFailure()
	m.QuotaRefused()
	m.KeyRotation(3, 7)
	m.Store(func() int64 { return 5 }, func() (int64, int64, error) { return 100, 40, nil })

	for _, c := range []struct {
		got  float64
		want float64
		name string
	}{
		{testutil.ToFloat64(m.sessionsActive.WithLabelValues("ssh")), 1, "sessions_active"},
		{testutil.ToFloat64(m.sessionsTotal.WithLabelValues("ssh")), 2, "sessions_total"},
		{testutil.ToFloat64(m.bytes.WithLabelValues("webdav", "in")), 1000, "file_bytes_total in"},
		{testutil.ToFloat64(m.ops.WithLabelValues("ssh", "upload", "error")), 1, "operations_total error"},
		{testutil.ToFloat64(m.logins.WithLabelValues("dav", "password", "failed")), 1, "login_attempts_total"},
		{testutil.ToFloat64(m.bans.WithLabelValues("ssh", "address")), 1, "bans_total"},
		{testutil.ToFloat64(m.integrity), 1, "integrity_failures_total"},
		{testutil.ToFloat64(m.quota), 1, "quota_refusals_total"},
		{testutil.ToFloat64(m.rotationTotal), 7, "key_rotation_files_total"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{"securefsd_open_handles 5", "securefsd_store_filesystem_free_bytes 40", "securefsd_operation_duration_seconds_bucket",
		"go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"proto": true, "op": true, "result": true, "direction": true, "method": true, "kind": true}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "securefsd_") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %q", mf.GetName(), l.GetName())
				}
			}
		}
	}
}

// TestProbes: /healthz answers while the process runs; /readyz is 200 when
// every check passes and 503 naming the failed check otherwise, without
// the error's text (it may name paths); a hanging check is a failure, not
// a hung probe.
func TestProbes(t *testing.T) {
	fail := errors.New("open /var/lib/secret-path: read-only file system")
	var storeErr error
	checks := []Check{
		{Name: "store", Fn: func(context.Context) error { return storeErr }},
		{Name: "database", Fn: func(context.Context) error { return nil }},
	}
	srv := httptest.NewServer(Mux(nil, checks, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, b := get("/readyz"); c != 200 {
		t.Fatalf("readyz %d %s", c, b)
	}
	storeErr = fail
	if c, b := get("/readyz"); c != 503 || !strings.Contains(b, "store") || strings.Contains(b, "secret-path") {
		t.Fatalf("readyz with a failing store: %d %q", c, b)
	}
	if c, _ := get("/metrics"); c != 404 {
		t.Fatalf("/metrics without metrics: %d", c)
	}
	failed, err := Ready(context.Background(), []Check{{Name: "hang", Fn: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}})
	if len(failed) != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a hanging check: %v %v", failed, err)
	}
}

// TestSystemdNotify speaks systemd's notify protocol: a unixgram socket in
// NOTIFY_SOCKET receives READY=1, STOPPING=1 and, with WATCHDOG_USEC set,
// WATCHDOG=1 pings carrying the readiness status.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	read := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		n, err := conn.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:n])
	}
	if err := NotifyReady(); err != nil {
		t.Fatal(err)
	}
	if m := read(); m != "READY=1" {
		t.Fatalf("ready message %q", m)
	}
	t.Setenv("WATCHDOG_USEC", "200000") // 0.2 s: pings every 0.1 s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	failing := errors.New("disk full")
	go func() {
		defer close(done)
		Watchdog(ctx, []Check{{Name: "store", Fn: func(context.Context) error { return failing }}}, slog.New(slog.DiscardHandler))
	}()
	if m := read(); !strings.HasPrefix(m, "WATCHDOG=1") || !strings.Contains(m, "STATUS=not ready: store") {
		t.Fatalf("watchdog message %q", m)
	}
	cancel()
	<-done
	if err := NotifyStopping(); err != nil {
		t.Fatal(err)
	}
	for {
		m := read()
		if m == "STOPPING=1" {
			break
		}
		if !strings.HasPrefix(m, "WATCHDOG=1") {
			t.Fatalf("stopping message %q", m)
		}
	}
}

// TestConfigsNameRealSeries: every securefsd_ series the example dashboard
// and alert rules in configs/ query is one the server exports.
func TestConfigsNameRealSeries(t *testing.T) {
	m := New()
	m.Store(func() int64 { return 0 }, func() (int64, int64, error) { return 1, 1, nil })
	// Touch every vector so Gather lists it.
	m.SessionStarted("ssh")
	m.FileIO("ssh", true, 1)
	m.Op("ssh", "upload", true, time.Millisecond)
	m.LoginAttempt("ssh", "password", "ok")
	m.Banned("ssh", "address")
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	re := regexp.MustCompile(`securefsd_[a-z_]+`)
	for _, f := range []string{"../../configs/grafana-dashboard.json", "../../configs/prometheus-alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := re.FindAllString(string(b), -1)
		if len(names) == 0 {
			t.Fatalf("%s names no series", f)
		}
		for _, n := range names {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if !have[base] && n != "securefsd_readyz" {
				t.Errorf("%s queries %s, which the server does not export", f, n)
			}
		}
	}
}
