package sftpd

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pkg/sftp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/users"
)

// TestRevocationFromAnotherNode (issue 21): with the user database in
// etcd, a change made on another node (its own users.DB handle on the same
// prefix) ends this node's SSH sessions that it concerns, busy and idle,
// as a change made here does: the watch moves Revision, which the server
// polls.
func TestRevocationFromAnotherNode(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	node := func() *users.DB {
		cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		db, err := users.OpenEtcd(users.EtcdConfig{Client: cl, Prefix: "securefsd/u/"},
			users.Options{Argon2: users.Argon2Params{Time: 1, Memory: 64, Threads: 1}, Key: bytes.Repeat([]byte{3}, users.KeySize)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	here, other := node(), node()
	ts := startServer(t, func(o *Options) { o.Users = here })
	ts.db = here
	ctx := context.Background()

	for i, change := range []func(name string) error{
		func(name string) error {
			return other.Update(ctx, name, func(u *users.User) error { u.Disabled = true; return nil })
		},
		func(name string) error { return other.SetPassword(ctx, name, []byte("changed elsewhere")) },
		func(name string) error { return other.Delete(ctx, name) },
	} {
		u := ts.addUser("n"+string(rune('a'+i)), users.PermAll)
		busy := ts.dialAs(u, pwLogin(u))
		idle := ts.dialAs(u, pwLogin(u))
		cl, err := sftp.NewClient(busy)
		must(t, err)
		must(t, put(cl, "/before", []byte("ok")))
		must(t, change(u.name))
		connEnds(t, busy, "the busy connection")
		connEnds(t, idle, "the idle connection")
	}
	// Rights taken away on the other node apply to the next request here.
	u := ts.addUser("ro", users.PermAll)
	conn := ts.dialAs(u, keyLogin(u))
	cl, err := sftp.NewClient(conn)
	must(t, err)
	must(t, put(cl, "/a", []byte("a")))
	before := here.Revision()
	must(t, other.Update(ctx, u.name, func(x *users.User) error { x.Perms = users.PermReadOnly; return nil }))
	for deadline := time.Now().Add(10 * time.Second); here.Revision() == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) { // a bound against hanging, not a timing threshold
			t.Fatal("the change on the other node never reached this node's Revision")
		}
	}
	if err := put(cl, "/b", []byte("b")); err == nil {
		t.Error("an upload after the rights went read-only on another node succeeded")
	}
}
