package webui

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/audit"
)

// The admin page's view of the audit trail (/ui/admin/audit): filter by
// user, path (exact or a directory and below), operation and time; the
// newest matching records are shown (at most auditPageRows, newest first;
// the trail is read once, keeping only that many in memory), and
// /ui/admin/audit.csv streams every matching record as CSV, as `securefsd
// audit query --csv` does. Reading the trail is itself recorded
// (audit.query, with the filter), since the trail names every file.

// TrailReader reads the audit trail; *audit.Log implements it.
type TrailReader interface {
	Query(ctx context.Context, f audit.Filter, fn func(audit.Record) error) error
}

const auditPageRows = 500

type adminAuditPage struct {
	base
	Enabled                              bool
	User, Path, Under, Ops, Since, Until string
	Rows                                 []adminAuditRow
	More                                 bool // more matched than shown
	CSVURL                               string
}

type adminAuditRow struct {
	Time, Proto, Op, Result, User, Admin, Remote, Path, Path2, Bytes, Detail string
}

var errBadFilter = errors.New("webui: bad audit filter")

// auditFilter reads the filter from the query string.
func auditFilter(q url.Values) (audit.Filter, error) {
	f := audit.Filter{User: strings.TrimSpace(q.Get("user")), Path: strings.TrimSpace(q.Get("path")), Under: strings.TrimSpace(q.Get("under"))}
	if f.Path != "" && f.Under != "" {
		return f, fmt.Errorf("%w: a path or a directory, not both", errBadFilter)
	}
	for _, op := range strings.Split(q.Get("op"), ",") {
		if op = strings.TrimSpace(op); op != "" {
			f.Ops = append(f.Ops, op)
		}
	}
	for _, t := range []struct {
		v   string
		dst *time.Time
	}{{q.Get("since"), &f.Since}, {q.Get("until"), &f.Until}} {
		v := strings.TrimSpace(t.v)
		if v == "" {
			continue
		}
		ok := false
		for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02"} {
			if tm, err := time.ParseInLocation(layout, v, time.Local); err == nil {
				*t.dst, ok = tm, true
				break
			}
		}
		if !ok {
			return f, fmt.Errorf("%w: time %q", errBadFilter, v)
		}
	}
	return f, nil
}

func describeFilter(q url.Values) string {
	var parts []string
	for _, k := range []string{"user", "path", "under", "op", "since", "until"} {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

func (ui *UI) auditRead(r *http.Request, s *sessionView, kind string, err error) {
	if ui.opts.Audit != nil {
		ui.opts.Audit.Record(audit.Record{User: s.user.Name, Admin: s.user.Name, Remote: r.RemoteAddr, Protocol: "web", Session: sessionID(s.key),
			Op: audit.OpAuditQuery, Detail: strings.TrimSpace(kind + " " + describeFilter(r.URL.Query())), Result: audit.Result(err), Error: audit.Class(err)})
	}
	ui.log.Info("webui: admin audit "+kind, "admin", s.user.Name, "remote", r.RemoteAddr, "err", err)
}

// handleAdminAudit serves the view; the role was checked by the caller.
func (ui *UI) handleAdminAudit(w http.ResponseWriter, r *http.Request, s *sessionView) {
	q := r.URL.Query()
	p := adminAuditPage{base: ui.base("Audit trail", s), Enabled: ui.accounts.opts.Trail != nil,
		User: q.Get("user"), Path: q.Get("path"), Under: q.Get("under"), Ops: q.Get("op"), Since: q.Get("since"), Until: q.Get("until"),
		CSVURL: ui.opts.Prefix + "admin/audit.csv?" + r.URL.RawQuery}
	if !p.Enabled {
		ui.render(w, r, ui.accounts.audit, http.StatusOK, p)
		return
	}
	f, err := auditFilter(q)
	if err != nil {
		p.Error = "The filter is not understood: times are like 2026-01-02 or 2026-01-02T15:04; give a path or a directory, not both."
		ui.render(w, r, ui.accounts.audit, http.StatusBadRequest, p)
		return
	}
	// A ring of the newest auditPageRows matches: memory stays bounded
	// however long the trail is.
	ring := make([]audit.Record, 0, auditPageRows)
	next, n := 0, 0
	err = ui.accounts.opts.Trail.Query(r.Context(), f, func(rec audit.Record) error {
		n++
		if len(ring) < auditPageRows {
			ring = append(ring, rec)
			return nil
		}
		ring[next] = rec
		next = (next + 1) % auditPageRows
		return nil
	})
	ui.auditRead(r, s, "view", err)
	if err != nil {
		ui.log.Error("webui: admin audit view", "admin", s.user.Name, "err", err)
		p.Error = "The audit trail could not be read: " + auditReadError(err)
		ui.render(w, r, ui.accounts.audit, http.StatusInternalServerError, p)
		return
	}
	p.More = n > len(ring)
	for i := range ring {
		rec := ring[(next+len(ring)-1-i)%len(ring)] // newest first
		row := adminAuditRow{Time: rec.Time.Local().Format("2006-01-02 15:04:05"), Proto: rec.Protocol, Op: rec.Op, Result: rec.Result,
			User: rec.User, Admin: rec.Admin, Remote: rec.Remote, Path: rec.Path, Path2: rec.Path2, Detail: rec.Detail}
		if rec.Error != "" {
			row.Result += " (" + rec.Error + ")"
		}
		if rec.Bytes > 0 {
			row.Bytes = humanSize(rec.Bytes)
		}
		if rec.Link != "" {
			row.Detail = strings.TrimSpace("link=" + rec.Link + " " + row.Detail)
		}
		p.Rows = append(p.Rows, row)
	}
	ui.render(w, r, ui.accounts.audit, http.StatusOK, p)
}

// auditReadError says what went wrong without a path on the server.
func auditReadError(err error) string {
	if errors.Is(err, context.Canceled) {
		return "the request was cancelled."
	}
	return "it may have been tampered with; run `securefsd audit verify` on the server."
}

// handleAdminAuditCSV streams every matching record as CSV.
func (ui *UI) handleAdminAuditCSV(w http.ResponseWriter, r *http.Request, s *sessionView) {
	if ui.accounts.opts.Trail == nil {
		ui.renderError(w, r, s, http.StatusNotFound, "The audit trail is off on this server.")
		return
	}
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		ui.renderError(w, r, s, http.StatusBadRequest, "The filter is not understood.")
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="audit-`+ui.now().UTC().Format("20060102-150405")+`.csv"`)
	cw := csv.NewWriter(w)
	err = cw.Write(audit.CSVHeader)
	if err == nil {
		err = ui.accounts.opts.Trail.Query(r.Context(), f, func(rec audit.Record) error { return cw.Write(rec.CSVRow()) })
	}
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	// Headers are gone once rows stream: a failure cuts the download short
	// (the client sees a truncated body), and the log and trail say why.
	ui.auditRead(r, s, "export", err)
	if err != nil {
		ui.log.Error("webui: admin audit export", "admin", s.user.Name, "err", err)
	}
}
