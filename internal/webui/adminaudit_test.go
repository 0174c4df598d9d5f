package webui

import (
	"context"
	"encoding/csv"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/users"
)

// TestAdminAuditView: an admin filters the trail by user, operation, path
// and time, and exports the matches as CSV; a non-admin gets 404 for both;
// a bad filter is a 400; every read of the trail is itself recorded.
func TestAdminAuditView(t *testing.T) {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "audit")
	keys, err := audit.LoadKeys(dir, kr, true)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.Open(dir, keys, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close() })
	f := newFixture(t, func(_ *users.Options, o *Options) { o.Audit = alog })
	l := admin.NewLocal(f.db, f.store, admin.KeyFile{}, "", nil)
	if err := EnableAccounts(f.ui, AccountsOptions{Accounts: l, Trail: alog}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.addUser("boss", "boss-password-1", users.PermAll, 0)
	f.addUser("carol", "carol-password-1", users.PermAll, 0)
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	alog.Record(audit.Record{Time: old, User: "alice", Protocol: "sftp", Op: audit.OpRead, Path: "/cases/old-report.pdf", Bytes: 10, Result: audit.ResultOK})
	for i := range 3 {
		alog.Record(audit.Record{User: "alice", Protocol: "sftp", Op: audit.OpRead, Path: "/cases/report.pdf", Bytes: int64(1000 + i), Result: audit.ResultOK})
	}
	alog.Record(audit.Record{User: "bob", Protocol: "webdav", Op: audit.OpWrite, Path: "/bob/notes.txt", Result: audit.ResultOK})

	boss := f.client()
	boss.login("boss", "boss-password-1")
	r := boss.get("/ui/admin/audit?user=alice&op=read&since=2021-01-01")
	if r.StatusCode != http.StatusOK || strings.Count(r.body, `class="audit-row"`) != 3 || !strings.Contains(r.body, "/cases/report.pdf") ||
		strings.Contains(r.body, "old-report") || strings.Contains(r.body, "/bob/notes.txt") {
		t.Fatalf("filtered view: %d %s", r.StatusCode, r.body)
	}
	if r := boss.get("/ui/admin/audit?under=/bob"); strings.Count(r.body, `class="audit-row"`) != 1 {
		t.Fatalf("under /bob: %s", r.body)
	}
	if r := boss.get("/ui/admin/audit?since=yesterday"); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad time: %d", r.StatusCode)
	}
	r = boss.get("/ui/admin/audit.csv?user=alice")
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("csv: %d %v", r.StatusCode, r.Header)
	}
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	if err != nil || len(rows) != 5 || strings.Join(rows[0], ",") != strings.Join(audit.CSVHeader, ",") || rows[1][7] != "/cases/old-report.pdf" {
		t.Fatalf("csv rows %v: %v", rows, err)
	}

	carol := f.client()
	carol.login("carol", "carol-password-1")
	for _, p := range []string{"/ui/admin/audit", "/ui/admin/audit.csv"} {
		if r := carol.get(p); r.StatusCode != http.StatusNotFound || strings.Contains(r.body, "report.pdf") {
			t.Fatalf("a non-admin's %s: %d", p, r.StatusCode)
		}
	}

	reads := 0
	if err := alog.Query(ctx, audit.Filter{Ops: []string{audit.OpAuditQuery}}, func(rec audit.Record) error {
		if rec.Admin == "boss" && rec.Protocol == "web" {
			reads++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if reads != 3 { // two views and the export; the refused filter read nothing
		t.Fatalf("audit.query records: %d", reads)
	}
}

// recorder is an Auditor that keeps the records.
type recorder struct {
	mu sync.Mutex
	rs []audit.Record
}

func (r *recorder) Record(rec audit.Record) {
	r.mu.Lock()
	r.rs = append(r.rs, rec)
	r.mu.Unlock()
}

func (r *recorder) ends(user string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var whys []string
	for _, rec := range r.rs {
		if rec.Op == audit.OpSessionEnd && rec.User == user {
			whys = append(whys, rec.Detail)
		}
	}
	return whys
}

// TestSessionEndRecorded: a browser session that ends other than by
// sign-out (idle expiry, the user disabled) still gets its session.end.
func TestSessionEndRecorded(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, func(_ *users.Options, o *Options) {
		o.Audit = rec
		o.IdleTimeout = 30 * time.Minute
	})
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	f.addUser("bob", "bob-password-1", users.PermAll, 0)
	a := f.client()
	a.login("alice", "alice-password-1")
	f.clock.Advance(31 * time.Minute)
	if r := a.get("/ui/files/"); r.StatusCode == http.StatusOK {
		t.Fatalf("an idle session still works: %d", r.StatusCode)
	}
	if got := rec.ends("alice"); len(got) != 1 || got[0] != "why=expired" {
		t.Fatalf("alice's session.end records: %q", got)
	}
	b := f.client()
	b.login("bob", "bob-password-1")
	if err := f.db.Update(context.Background(), "bob", func(u *users.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := b.get("/ui/files/"); r.StatusCode == http.StatusOK {
		t.Fatalf("a disabled user's session still works: %d", r.StatusCode)
	}
	if got := rec.ends("bob"); len(got) != 1 || got[0] != "why=user-changed" {
		t.Fatalf("bob's session.end records: %q", got)
	}
}
