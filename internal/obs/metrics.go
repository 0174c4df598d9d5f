package obs

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds one server's collectors in its own registry (no global
// state: tests run many servers in one process). Its methods implement
// the recorder interfaces of sftpd, davd, users and vfs and are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	sessionsActive *prometheus.GaugeVec
	sessionsTotal  *prometheus.CounterVec
	logins         *prometheus.CounterVec
	bans           *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	ops            *prometheus.CounterVec
	opSeconds      *prometheus.HistogramVec
	integrity      prometheus.Counter
	quota          prometheus.Counter
	rotationDone   prometheus.Gauge
	rotationTotal  prometheus.Gauge
}

const namespace = "securefsd"

// New returns Metrics registered, with the Go runtime and process
// collectors, in a registry of their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.sessionsActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "sessions_active",
		Help: "Sessions in progress: SSH connections logged in; WebDAV requests of a logged-in user in progress."}, []string{"proto"})
	m.sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sessions_total",
		Help: "Sessions started."}, []string{"proto"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "login_attempts_total",
		Help: "Authentication attempts by protocol, method and result (ok, failed, banned, error). WebDAV clients authenticate every request."},
		[]string{"proto", "method", "result"})
	m.bans = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "bans_total",
		Help: "Bans begun by the login defender, by the protocol of the failure that triggered them and kind (address, user)."},
		[]string{"proto", "kind"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "file_bytes_total",
		Help: "Plaintext file bytes read (direction=out) and written (direction=in) by clients."}, []string{"proto", "direction"})
	m.ops = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "operations_total",
		Help: "Operations by protocol, operation and result (ok, error)."}, []string{"proto", "op", "result"})
	m.opSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "operation_duration_seconds",
		Help:    "Operation latency (for SFTP/SCP transfers: open to close; for WebDAV: the request).",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 60, 300}}, []string{"proto", "op"})
	m.integrity = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "integrity_failures_total",
		Help: "Stored files or metadata that failed authentication when a client used them (tampering or corruption)."})
	m.quota = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "quota_refusals_total",
		Help: "Operations refused because a home's quota would be exceeded."})
	m.rotationDone = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "key_rotation_files_done",
		Help: "Files re-wrapped so far by the key rotation in progress or last run."})
	m.rotationTotal = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "key_rotation_files_total",
		Help: "Files the key rotation in progress or last run has found so far."})
	m.reg.MustRegister(m.sessionsActive, m.sessionsTotal, m.logins, m.bans, m.bytes, m.ops, m.opSeconds,
		m.integrity, m.quota, m.rotationDone, m.rotationTotal,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Store adds the store's gauges, read at each scrape: open handles
// (openHandles) and the size and free bytes of its file system
// (diskSpace). Call it once.
func (m *Metrics) Store(openHandles func() int64, diskSpace func() (total, free int64, err error)) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "open_handles",
		Help: "Files and directories open in the store, all protocols."}, func() float64 { return float64(openHandles()) }))
	m.reg.MustRegister(diskCollector{diskSpace})
}

var (
	diskSizeDesc = prometheus.NewDesc(namespace+"_store_filesystem_size_bytes", "Size of the file system holding the store.", nil, nil)
	diskFreeDesc = prometheus.NewDesc(namespace+"_store_filesystem_free_bytes", "Free bytes of the file system holding the store.", nil, nil)
)

// diskCollector reads the store's file system once per scrape.
type diskCollector struct {
	space func() (total, free int64, err error)
}

func (d diskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- diskSizeDesc; ch <- diskFreeDesc }

func (d diskCollector) Collect(ch chan<- prometheus.Metric) {
	total, free, err := d.space()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(diskSizeDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(diskSizeDesc, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(diskFreeDesc, prometheus.GaugeValue, float64(free))
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SessionStarted counts a session of proto that began.
func (m *Metrics) SessionStarted(proto string) {
	m.sessionsActive.WithLabelValues(proto).Inc()
	m.sessionsTotal.WithLabelValues(proto).Inc()
}

// SessionEnded counts a session of proto that ended.
func (m *Metrics) SessionEnded(proto string) { m.sessionsActive.WithLabelValues(proto).Dec() }

// FileIO counts n plaintext bytes read or written by a client of proto.
func (m *Metrics) FileIO(proto string, write bool, n int) {
	dir := "out"
	if write {
		dir = "in"
	}
	m.bytes.WithLabelValues(proto, dir).Add(float64(n))
}

// Op counts an operation and observes its latency.
func (m *Metrics) Op(proto, op string, ok bool, d time.Duration) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.ops.WithLabelValues(proto, op, result).Inc()
	m.opSeconds.WithLabelValues(proto, op).Observe(d.Seconds())
}

// LoginAttempt counts an authentication attempt.
func (m *Metrics) LoginAttempt(proto, method, result string) {
	m.logins.WithLabelValues(proto, method, result).Inc()
}

// Banned counts a ban that began.
func (m *Metrics) Banned(proto, kind string) { m.bans.WithLabelValues(proto, kind).Inc() }

// IntegrityFailure counts a stored file that failed authentication.
func (m *Metrics) IntegrityFailure() { m.integrity.Inc() }

// QuotaRefused counts an operation refused for quota.
func (m *Metrics) QuotaRefused() { m.quota.Inc() }

// KeyRotation records a key rotation's progress.
func (m *Metrics) KeyRotation(done, total int) {
	m.rotationDone.Set(float64(done))
	m.rotationTotal.Set(float64(total))
}
