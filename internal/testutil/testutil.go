// Package testutil holds the helpers the packages' tests share: a
// goroutine-safe buffer and a slog handler that records structured log
// records, so tests assert on levels and attributes rather than on log
// text. Subpackages hold the heavier fixtures (fixture: a store and a
// user database; browser: headless Chromium).
//
// Only _test.go files import it (scripts/check-imports.sh enforces that).
// It imports no package of this module, so every package's own tests can
// use it without an import cycle.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent Write and String: a log
// sink written by server goroutines and read by the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Record is one log record as the code under test emitted it: level,
// message and attributes, group names joined with dots ("g.key").
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]slog.Value
}

// Attr returns the attribute's value as text ("" if absent).
func (r Record) Attr(key string) string {
	v, ok := r.Attrs[key]
	if !ok {
		return ""
	}
	return v.String()
}

// Has reports whether the record has the attribute.
func (r Record) Has(key string) bool {
	_, ok := r.Attrs[key]
	return ok
}

// String is the record in the text handler's spirit, for failure messages.
func (r Record) String() string {
	keys := make([]string, 0, len(r.Attrs))
	for k := range r.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "level=%s msg=%q", r.Level, r.Message)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", k, r.Attrs[k].String())
	}
	return b.String()
}

// Text reports whether s occurs in the message or in any attribute's value:
// for negative checks ("no secret anywhere in the logs").
func (r Record) Text(s string) bool {
	if strings.Contains(r.Message, s) {
		return true
	}
	for _, v := range r.Attrs {
		if strings.Contains(v.String(), s) {
			return true
		}
	}
	return false
}

// Logs records every slog record handled by its Logger. Safe for
// concurrent use. The zero value is not usable: call NewLogs.
type Logs struct {
	st *logState
	// attrs and group are this handler's WithAttrs/WithGroup state.
	attrs []slog.Attr
	group string
}

type logState struct {
	mu   sync.Mutex
	recs []Record
	also slog.Handler // optional: records are also written here
}

// NewLogs returns an empty recorder. Records at every level (Debug up) are
// kept.
func NewLogs() *Logs { return &Logs{st: &logState{}} }

// Tee also writes every record through h (e.g. a text handler on a
// SyncBuffer a harness exposes). It returns l.
func (l *Logs) Tee(h slog.Handler) *Logs {
	l.st.mu.Lock()
	l.st.also = h
	l.st.mu.Unlock()
	return l
}

// Logger returns a logger writing to l.
func (l *Logs) Logger() *slog.Logger { return slog.New(l) }

// Enabled implements slog.Handler: every level.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *Logs) Handle(ctx context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Message: r.Message, Attrs: map[string]slog.Value{}}
	for _, a := range l.attrs {
		addAttr(rec.Attrs, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(rec.Attrs, l.group, a)
		return true
	})
	l.st.mu.Lock()
	l.st.recs = append(l.st.recs, rec)
	also := l.st.also
	l.st.mu.Unlock()
	if also != nil {
		return also.Handle(ctx, r.Clone())
	}
	return nil
}

func addAttr(m map[string]slog.Value, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	key := a.Key
	if prefix != "" {
		key = prefix + "." + key
	}
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			addAttr(m, key, g)
		}
		return
	}
	m[key] = v
}

// WithAttrs implements slog.Handler.
func (l *Logs) WithAttrs(as []slog.Attr) slog.Handler {
	n := *l
	n.attrs = slices.Clone(l.attrs)
	for _, a := range as {
		if l.group != "" {
			a = slog.Attr{Key: l.group + "." + a.Key, Value: a.Value}
		}
		n.attrs = append(n.attrs, a)
	}
	return &n
}

// WithGroup implements slog.Handler.
func (l *Logs) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	n := *l
	if l.group != "" {
		name = l.group + "." + name
	}
	n.group = name
	return &n
}

// Records returns a copy of the records so far, oldest first.
func (l *Logs) Records() []Record {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	return slices.Clone(l.st.recs)
}

// Match returns the records for which keep is true.
func (l *Logs) Match(keep func(Record) bool) []Record {
	var out []Record
	for _, r := range l.Records() {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Msg returns the records with message msg.
func (l *Logs) Msg(msg string) []Record {
	return l.Match(func(r Record) bool { return r.Message == msg })
}

// Count is len(l.Match(keep)).
func (l *Logs) Count(keep func(Record) bool) int { return len(l.Match(keep)) }

// AnyText reports whether s occurs in any record's message or attribute
// value: for checks that something (a secret) is never logged.
func (l *Logs) AnyText(s string) bool {
	return l.Count(func(r Record) bool { return r.Text(s) }) > 0
}

// Dump is every record, one a line, for failure messages.
func (l *Logs) Dump() string {
	var b strings.Builder
	for _, r := range l.Records() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Clock is an injectable Options.Now that moves only when told (Advance).
// Safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
