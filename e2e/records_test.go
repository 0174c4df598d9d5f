package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/users"
)

// Records returns the server's log records so far, parsed from its text
// log: tests assert on levels and attributes, not on log text.
func (s *Server) Records() []testutil.Record { return testutil.ParseText(s.Log()) }

// records returns the server's log records that keep accepts.
func records(srv *Server, keep func(testutil.Record) bool) []testutil.Record {
	var out []testutil.Record
	for _, r := range srv.Records() {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// attrs matches the records that have every key/value pair of kv.
func attrs(kv ...string) func(testutil.Record) bool {
	return func(r testutil.Record) bool {
		for i := 0; i+1 < len(kv); i += 2 {
			if !r.Has(kv[i]) || r.Attr(kv[i]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// banned matches the log record of a ban of the address or user (key
// "address" or "user").
func banned(key, who string) func(testutil.Record) bool {
	return attrs("event", users.EventBanned, key, who)
}

// waitRecord waits until the server has logged a record that keep accepts.
func waitRecord(t testing.TB, srv *Server, within time.Duration, what string, keep func(testutil.Record) bool) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("a server log record: %s", what), func() bool {
		return len(records(srv, keep)) > 0
	})
}

// integrityLogged matches the records of an integrity failure (vfs marks
// them integrity=true; davd's carry event=integrity_failure) that name s in
// one of their values and have every key/value pair of kv.
func integrityLogged(s string, kv ...string) func(testutil.Record) bool {
	has := attrs(kv...)
	return func(r testutil.Record) bool {
		return (r.Attr("integrity") == "true" || r.Attr("event") == "integrity_failure") && r.Text(s) && has(r)
	}
}
