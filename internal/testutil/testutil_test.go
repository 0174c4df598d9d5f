package testutil

import (
	"log/slog"
	"strings"
	"testing"
)

func TestLogsRecordsAttrs(t *testing.T) {
	l := NewLogs()
	var text SyncBuffer
	l.Tee(slog.NewTextHandler(&text, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := l.Logger().With("user", "alice").WithGroup("req")
	log.Debug("hello", "n", 3, slog.Group("sub", "k", "v"))
	log.Warn("second")
	recs := l.Records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2:\n%s", len(recs), l.Dump())
	}
	r := recs[0]
	if r.Level != slog.LevelDebug || r.Message != "hello" || r.Attr("user") != "alice" || r.Attr("req.n") != "3" || r.Attr("req.sub.k") != "v" {
		t.Errorf("record %s", r)
	}
	if r.Has("n") || !r.Text("alice") || r.Text("bob") {
		t.Errorf("Has/Text wrong on %s", r)
	}
	if n := len(l.Msg("second")); n != 1 {
		t.Errorf("Msg(second) = %d records", n)
	}
	if !l.AnyText("alice") || l.AnyText("nobody") {
		t.Error("AnyText")
	}
	if !strings.Contains(text.String(), "msg=hello") {
		t.Errorf("tee: %q", text.String())
	}
}

func TestParseText(t *testing.T) {
	var text SyncBuffer
	log := slog.New(slog.NewTextHandler(&text, nil))
	log.Warn("users: login banned", "event", "login_banned", "address", "127.0.0.1", "note", `two "words"`, "n", 3)
	text.Write([]byte("\nFirst run: created user \"x\" with password y\n"))
	log.Info("plain")
	recs := ParseText(text.String())
	if len(recs) != 2 {
		t.Fatalf("%d records from %q", len(recs), text.String())
	}
	r := recs[0]
	if r.Level != slog.LevelWarn || r.Message != "users: login banned" || r.Attr("event") != "login_banned" ||
		r.Attr("address") != "127.0.0.1" || r.Attr("note") != `two "words"` || r.Attr("n") != "3" || r.Has("time") {
		t.Errorf("parsed %s", r)
	}
	if recs[1].Message != "plain" || recs[1].Level != slog.LevelInfo {
		t.Errorf("parsed %s", recs[1])
	}
}
