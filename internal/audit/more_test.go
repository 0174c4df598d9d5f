package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

func TestRollbackNewestSegment(t *testing.T) {
	dir := t.TempDir()
	k, _ := testKeys(t, dir)
	l, err := Open(dir, k, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		l.Record(Record{User: "a", Protocol: "sftp", Op: OpRead, Path: fmt.Sprint(i), Result: ResultOK})
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join(dir, segName(1)))
	for range 5 {
		l.Record(Record{User: "a", Protocol: "sftp", Op: OpRemove, Path: "x", Result: ResultOK})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir, k)
	write(t, dir, 1, old) // the older copy, e.g. from a backup
	expect(t, problems(t, dir, k), 1, 6, "rolled back")
}

func TestRetentionAnchor(t *testing.T) {
	dir := t.TempDir()
	k, _ := testKeys(t, dir)
	c := &clock{t: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	o := Options{Now: c.now, MaxSegmentAge: 24 * time.Hour, Retention: 72 * time.Hour}
	l, err := Open(dir, k, o)
	if err != nil {
		t.Fatal(err)
	}
	for day := range 10 {
		for i := range 3 {
			l.Record(Record{User: "a", Protocol: "sftp", Op: OpWrite, Path: fmt.Sprintf("/%d/%d", day, i), Result: ResultOK})
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		c.add(25 * time.Hour)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	if segs[0] == 1 {
		t.Fatalf("retention removed nothing: %v", segs)
	}
	rep := mustVerify(t, dir, k)
	if rep.AnchoredAfter != segs[0]-1 {
		t.Fatalf("anchor after %d, first segment %d", rep.AnchoredAfter, segs[0])
	}
	var got []Record
	if err := Query(t.Context(), dir, k, Filter{Ops: []string{OpAuditRetain}}, func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !strings.Contains(got[len(got)-1].Detail, "removed segments") {
		t.Fatalf("no retention record: %+v", got)
	}
	// Removing one more segment than retention did is seen.
	os.Remove(filepath.Join(dir, segName(segs[0])))
	expect(t, problems(t, dir, k), segs[0], -1, "missing")
}

func TestKeyRotationKeepsTrailReadable(t *testing.T) {
	dir := t.TempDir()
	k, kr := testKeys(t, dir)
	l, err := Open(dir, k, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Record{User: "a", Protocol: "web", Op: OpRead, Path: "/x", Result: ResultOK})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Rotate: new active KEK, re-wrap the key file, retire the old KEK.
	old := kr.Active()
	if _, err := kr.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := RewrapKey(dir, kr); err != nil {
		t.Fatal(err)
	}
	if err := kr.Remove(old); err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKeys(dir, kr, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir, k2); rep.Records != 1 {
		t.Fatalf("records %d", rep.Records)
	}
	if k2.NameToken("x") != k.NameToken("x") {
		t.Fatal("name tokens changed with the KEK")
	}
	other, _ := envelope.NewKeyring()
	if _, err := LoadKeys(dir, other, false); err == nil {
		t.Fatal("a foreign keyring opens the trail")
	}
	if _, err := LoadKeys(t.TempDir(), kr, false); !errors.Is(err, ErrNoAudit) {
		t.Fatalf("missing trail: %v", err)
	}
}

// A crash in the middle of a write leaves a torn frame; the next start
// chains past it (without rewriting it) and the trail verifies.
func TestTornTailAfterCrash(t *testing.T) {
	dir, k, _ := trail(t, 10, Options{MaxSegmentBytes: 1 << 20})
	f, err := os.OpenFile(filepath.Join(dir, segName(1)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 1, 2, 3}) // a length and a few bytes
	f.Close()
	// Query and Verify while "serving": the tail is being written.
	rep := mustVerify(t, dir, k)
	if len(rep.Notes) == 0 {
		t.Fatal("no note about the incomplete frame")
	}
	l, err := Open(dir, k, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Record{User: "z", Protocol: "ssh", Op: OpLogin, Result: ResultOK})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, dir, k)
	if rep.Records != 11 || !strings.Contains(strings.Join(rep.Notes, ";"), "torn tail") {
		t.Fatalf("report %+v", rep)
	}
}

func TestQueryFilters(t *testing.T) {
	dir, k, _ := trail(t, 300, Options{})
	q := func(f Filter) []string {
		var out []string
		err := Query(context.Background(), dir, k, f, func(r Record) error { out = append(out, r.User+r.Path); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if n := len(q(Filter{})); n != 300 {
		t.Fatalf("all: %d", n)
	}
	if got := q(Filter{User: "u1"}); len(got) != 100 || got[0] != "u1/d/f1" || got[99] != "u1/d/f298" {
		t.Fatalf("user: %d %v", len(got), got)
	}
	if got := q(Filter{Path: "/d/f7"}); !slices.Equal(got, []string{"u1/d/f7"}) {
		t.Fatalf("path: %v", got)
	}
	if got := q(Filter{Under: "/d"}); len(got) != 300 {
		t.Fatalf("under: %d", len(got))
	}
	if got := q(Filter{Under: "/d/f1"}); !slices.Equal(got, []string{"u1/d/f1"}) {
		t.Fatalf("under a file name prefix: %v", got)
	}
	if got := q(Filter{Ops: []string{OpRead}}); len(got) != 0 {
		t.Fatalf("ops: %v", got)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := q(Filter{Since: start.Add(100 * time.Second), Until: start.Add(103 * time.Second)}); len(got) != 3 || got[0] != "u1/d/f100" {
		t.Fatalf("time: %v", got)
	}
	// An edited record stops a query with the place.
	d, s := frames(t, dir, 2)
	d[s[1][1]-3] ^= 1
	write(t, dir, 2, d)
	err := Query(context.Background(), dir, k, Filter{}, func(Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "segment 2 record 1") {
		t.Fatalf("query over a damaged record: %v", err)
	}
}

func TestForwardAndNoSecretsInFiles(t *testing.T) {
	dir := t.TempDir()
	k, _ := testKeys(t, dir)
	var fwd bytes.Buffer
	l, err := Open(dir, k, Options{Forward: func(b []byte) error { fwd.Write(b); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Record{User: "alice", Protocol: "sftp", Op: OpWrite, Path: "/Patient Smith.pdf", Result: ResultOK})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fwd.String(), `"path":"/Patient Smith.pdf"`) || strings.Count(fwd.String(), "\n") != 1 {
		t.Fatalf("forwarded: %q", fwd.String())
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if bytes.Contains(b, []byte("Smith")) || bytes.Contains(b, []byte("alice")) {
			t.Fatalf("%s holds a name in the clear", e.Name())
		}
	}
}

// A failing write keeps the records and says so; they are written once the
// disk works again.
func TestWriteFailureIsLoudAndRetried(t *testing.T) {
	dir := t.TempDir()
	k, _ := testKeys(t, dir)
	l, err := Open(dir, k, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := l.f
	bad, _ := os.Open(os.DevNull) // read-only: writes fail
	l.f = bad
	l.Record(Record{User: "a", Protocol: "sftp", Op: OpWrite, Result: ResultOK})
	if err := l.Sync(); err == nil || l.Err() == nil {
		t.Fatal("a failed write is not reported")
	}
	_ = good
	if err := l.Sync(); err != nil { // retried in a new segment
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir, k); rep.Records != 1 {
		t.Fatalf("records %d", rep.Records)
	}
}
