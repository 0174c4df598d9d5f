package users

import (
	"testing"
	"time"
)

// BenchmarkAuthPassword measures a login with the default Argon2id
// parameters (t=3, m=64 MiB, p=4), uncached and cached.
//
//	go test -run XXX -bench AuthPassword -benchtime 5x ./internal/users/
func BenchmarkAuthPassword(b *testing.B) {
	for _, tt := range []struct {
		name string
		ttl  time.Duration
	}{{"argon2id-default", -1}, {"cached", 0}} {
		b.Run(tt.name, func(b *testing.B) {
			db, _ := openTest(b, Options{Argon2: Argon2Params{}.withDefaults(), CacheTTL: tt.ttl, Defender: DefenderOptions{Disabled: true}})
			mustAdd(b, db, User{Name: "alice", Perms: PermAll}, "pw")
			if _, err := db.AuthPassword(b.Context(), "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := db.AuthPassword(b.Context(), "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
