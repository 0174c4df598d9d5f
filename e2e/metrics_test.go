package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// metricValue is the value of the series line `name{labels} value` in a
// Prometheus exposition (labels exactly as written, "" for none).
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestMetricsAndProbes is issue 22's metrics point against the real
// binary: with --metrics-addr, an OpenSSH sftp upload and download and a
// WebDAV PUT and GET by curl move the session, byte, operation and login
// series; a wrong password shows as a failed login; /healthz and /readyz
// answer 200; no user name or path appears in the exposition.
func TestMetricsAndProbes(t *testing.T) {
	NeedTool(t, "curl")
	s := StartServer(t, WithServeArgs("--metrics-addr", "127.0.0.1:0"))
	if s.MetricsURL == "" {
		t.Fatal("no metrics address printed")
	}
	const pw = "metrics-pw-e2e-Orchid"
	key := s.AddUser(t, "mira", pw)
	src := RandomFile(t, 300<<10)
	dir := t.TempDir()
	if out, err := s.SFTPBatch(t, "mira", key, "put "+src+" /secret-name.bin\nget /secret-name.bin "+dir+"/back\n"); err != nil {
		t.Fatalf("sftp: %v %s", err, out)
	}
	if out, err := s.Curl(t, "mira", pw, "-f", "-T", src, s.DAVURL+"/dav-secret.bin"); err != nil {
		t.Fatalf("PUT: %v %s", err, out)
	}
	if out, err := s.Curl(t, "mira", pw, "-f", "-o", dir+"/dav-back", s.DAVURL+"/dav-secret.bin"); err != nil {
		t.Fatalf("GET: %v %s", err, out)
	}
	if out, _ := s.Curl(t, "mira", "wrong-password", "-o", "/dev/null", "-w", "%{http_code}", s.DAVURL+"/"); out != "401" {
		t.Fatalf("wrong password: %s", out)
	}
	body, err := s.Curl(t, "", "", "-f", s.MetricsURL+"/metrics")
	if err != nil {
		t.Fatalf("scrape: %v %s", err, body)
	}
	for _, c := range []struct {
		series string
		min    float64
	}{
		{`securefsd_sessions_total{proto="ssh"}`, 1},
		{`securefsd_file_bytes_total{direction="in",proto="ssh"}`, 300 << 10},
		{`securefsd_file_bytes_total{direction="out",proto="ssh"}`, 300 << 10},
		{`securefsd_file_bytes_total{direction="in",proto="webdav"}`, 300 << 10},
		{`securefsd_file_bytes_total{direction="out",proto="webdav"}`, 300 << 10},
		{`securefsd_operations_total{op="upload",proto="ssh",result="ok"}`, 1},
		{`securefsd_operations_total{op="PUT",proto="webdav",result="ok"}`, 1},
		{`securefsd_login_attempts_total{method="publickey",proto="ssh",result="ok"}`, 1},
		{`securefsd_login_attempts_total{method="password",proto="webdav",result="failed"}`, 1},
		{`securefsd_open_handles`, 0},
	} {
		if v := metricValue(t, body, c.series); v < c.min || (c.min == 0 && !strings.Contains(body, c.series+" ")) {
			t.Errorf("%s = %v, want at least %v", c.series, v, c.min)
		}
	}
	for _, leak := range []string{"mira", "secret-name", "dav-secret"} {
		if strings.Contains(body, leak) {
			t.Errorf("the exposition names %q", leak)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if out, err := s.Curl(t, "", "", "-f", s.MetricsURL+p); err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("%s: %v %q", p, err, out)
		}
	}
}
