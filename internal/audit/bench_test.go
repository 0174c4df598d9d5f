package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// queryTrail is a trail of 1M records (about 330 MB), made once per run.
var queryTrail struct {
	once sync.Once
	dir  string
	keys *Keys
}

// BenchmarkQuery1M measures a query over 1,000,000 records:
//
//	go test -run '^$' -bench Query1M -benchtime 3x ./internal/audit
//
// (docs/PERFORMANCE.md, "Audit trail"). "all" decrypts, parses and matches
// every record; "user" finds one user's records among 100 users.
func BenchmarkQuery1M(b *testing.B) {
	const n = 1_000_000
	queryTrail.once.Do(func() {
		dir := b.TempDir()
		k, _ := testKeys(b, dir)
		l, err := Open(dir, k, Options{MaxPending: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			l.Record(Record{User: fmt.Sprintf("user%02d", i%100), Remote: "192.0.2.7:51234", Protocol: "sftp",
				Session: "s-8f2c1a", Op: OpRead, Path: fmt.Sprintf("/clients/case-%05d/scan-%d.pdf", i%5000, i), Bytes: int64(i), Result: ResultOK})
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		queryTrail.dir, queryTrail.keys = dir, k
	})
	for _, tc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{Under: "/clients"}, n},
		{"user", Filter{User: "user42"}, n / 100},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				got := 0
				err := Query(context.Background(), queryTrail.dir, queryTrail.keys, tc.f, func(Record) error { got++; return nil })
				if err != nil || got != tc.want {
					b.Fatalf("got %d, %v", got, err)
				}
			}
		})
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			rep, err := Verify(queryTrail.dir, queryTrail.keys, VerifyOptions{})
			if err != nil || rep.Records != n {
				b.Fatalf("%+v %v", rep, err)
			}
		}
	})
}

// BenchmarkRecord measures what the trail costs per operation: the caller's
// Record (JSON encoding, queueing) and, amortized, the writer's sealing,
// hashing, write and fsync at each 1 s flush (here: one flush per 4096
// records; fsync cost per record falls with more records per second).
//
//	go test -run '^$' -bench Record -benchtime 200000x ./internal/audit
func BenchmarkRecord(b *testing.B) {
	dir := b.TempDir()
	k, _ := testKeys(b, dir)
	l, err := Open(dir, k, Options{MaxPending: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	r := Record{User: "alice", Remote: "192.0.2.7:51234", Protocol: "sftp", Session: "ssh-8f2c1a0b9d3e4f5a",
		Op: OpWrite, Path: "/clients/case-00042/scan-1234.pdf", Bytes: 34816, Result: ResultOK}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Record(r)
		if i++; i%4096 == 0 {
			if err := l.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}
