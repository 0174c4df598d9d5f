// Package obs is what an operator watches: Prometheus metrics (with the
// official client library), the /healthz and /readyz probes, and systemd's
// readiness and watchdog notifications.
//
// The packages that do the work never import obs or the Prometheus client:
// each declares the small recorder interface it calls (sftpd.Recorder,
// davd.Recorder, users.LoginObserver, vfs.Observer, vfs.IOObserver) and
// cmd/securefsd passes a *Metrics, which implements them all.
//
// Label values are bounded sets chosen by the code (protocol, method,
// result, direction, operation): never a user name, an address or a path,
// which would make the series unbounded and leak who does what to anyone
// who can scrape. obs imports nothing of ours.
package obs
