package users

import (
	"fmt"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/testutil"
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

// BenchmarkEngines measures a cached login (one record read: what a
// WebDAV request costs) and an Update of one user (a write transaction
// with the revision) on bbolt and on a 3-member etcd cluster on loopback.
//
//	go test -run XXX -bench Engines -benchtime 3s ./internal/users/
func BenchmarkEngines(b *testing.B) {
	c := testutil.StartEtcd(b, 3)
	for _, engine := range []string{"bbolt", "etcd"} {
		open := func(b *testing.B) *DB {
			if engine == "etcd" {
				return etcdNode(b, c, fmt.Sprintf("bench/%s/u/", b.Name()), Options{Defender: DefenderOptions{Disabled: true}})
			}
			db, _ := openTest(b, Options{Defender: DefenderOptions{Disabled: true}})
			return db
		}
		b.Run(engine+"/cached-login", func(b *testing.B) {
			db := open(b)
			mustAdd(b, db, User{Name: "alice", Perms: PermAll}, "pw")
			for b.Loop() {
				if _, err := db.AuthPassword(b.Context(), "dav", "127.0.0.1", "alice", []byte("pw")); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(engine+"/update", func(b *testing.B) {
			db := open(b)
			mustAdd(b, db, User{Name: "alice", Perms: PermAll}, "")
			n := int64(0)
			for b.Loop() {
				n++
				if err := db.Update(b.Context(), "alice", func(u *User) error { u.QuotaFiles = n; return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
