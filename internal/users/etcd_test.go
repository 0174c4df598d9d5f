package users

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

// The etcd engine's own tests: two handles on one prefix are two nodes
// of a cluster. They run in every run, on a real 3-member etcd cluster.

func etcdTestClient(t testing.TB, c *testutil.EtcdCluster) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// etcdNode opens the database under prefix as one node would: its own
// client, the shared key, tiny Argon2 parameters.
func etcdNode(t testing.TB, c *testutil.EtcdCluster, prefix string, opts Options) *DB {
	t.Helper()
	if opts.Argon2 == (Argon2Params{}) {
		opts.Argon2 = tinyParams
	}
	if opts.Key == nil {
		opts.Key = testKey
	}
	db, err := OpenEtcd(EtcdConfig{Client: etcdTestClient(t, c), Prefix: prefix}, opts)
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// eventually waits for cond, failing after 10 s: watches deliver within
// milliseconds; the bound only keeps a broken test from hanging.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEtcd(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	var n atomic.Int64
	prefix := func() string { return fmt.Sprintf("securefsd/%d/u/", n.Add(1)) }

	t.Run("TwoNodes", func(t *testing.T) {
		p := prefix()
		a, b := etcdNode(t, c, p, Options{}), etcdNode(t, c, p, Options{})
		ctx := t.Context()
		mustAdd(t, a, User{Name: "alice", Perms: PermAll}, "old-pw")
		eventually(t, "b sees a's add in its revision", func() bool { return b.Revision() == a.Revision() })
		if _, err := b.AuthPassword(ctx, "ssh", "10.0.0.1", "alice", []byte("old-pw")); err != nil {
			t.Fatalf("login on b: %v", err)
		}
		// A password change, a revoke of rights and a disable on one
		// node: the other's Revision moves (what open sessions poll) and
		// its next check sees the change.
		for i, change := range []func() error{
			func() error { return b.SetPassword(ctx, "alice", []byte("new-pw")) },
			func() error {
				return b.Update(ctx, "alice", func(u *User) error { u.Perms = PermReadOnly; return nil })
			},
			func() error { return b.Update(ctx, "alice", func(u *User) error { u.Disabled = true; return nil }) },
		} {
			before := a.Revision()
			if err := change(); err != nil {
				t.Fatalf("change %d: %v", i, err)
			}
			eventually(t, fmt.Sprintf("a sees change %d", i), func() bool { return a.Revision() > before && a.Revision() == b.Revision() })
		}
		if _, err := a.AuthPassword(ctx, "ssh", "10.0.0.1", "alice", []byte("old-pw")); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("old password on a after b changed it: %v", err)
		}
		u, err := a.Get(ctx, "alice")
		if err != nil || !u.Disabled || u.Perms != PermReadOnly {
			t.Errorf("a reads %+v, %v", u, err)
		}
		// A folder grant and its revoke: the same revision.
		mustAdd(t, a, User{Name: "bea"}, "")
		before := b.Revision()
		if err := a.AddFolder(ctx, Folder{Name: "team"}); err != nil {
			t.Fatal(err)
		}
		if err := a.SetGrant(ctx, "team", "bea", PermAll, false); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b sees the grant", func() bool { return b.Revision() >= before+2 })
		if acc, err := b.Access(ctx, "bea"); err != nil || len(acc) != 1 {
			t.Fatalf("b: access %v, %v", acc, err)
		}
		before = b.Revision()
		if err := a.Revoke(ctx, "team", "bea"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "b sees the revoke", func() bool { return b.Revision() > before })
		if acc, err := b.Access(ctx, "bea"); err != nil || len(acc) != 0 {
			t.Fatalf("b after the revoke: access %v, %v", acc, err)
		}
		// A node opened later starts at the cluster's revision.
		if c := etcdNode(t, c, p, Options{}); c.Revision() != a.Revision() {
			t.Errorf("a new node's revision %d, a's %d", c.Revision(), a.Revision())
		}
		// Links go through the same records.
		if err := a.PutLink(ctx, "link1", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Link(ctx, "link1"); err != nil || string(v) != "v1" {
			t.Errorf("b: link %q, %v", v, err)
		}
	})

	t.Run("NoLostUpdate", func(t *testing.T) {
		p := prefix()
		a, b := etcdNode(t, c, p, Options{}), etcdNode(t, c, p, Options{})
		ctx := t.Context()
		mustAdd(t, a, User{Name: "carol"}, "")
		start := a.Revision()
		// Both nodes add keys to one user at once: every key stays, and
		// every change counts once in the revision.
		const perNode = 8
		var wg sync.WaitGroup
		var want []string
		for _, db := range []*DB{a, b} {
			for i := range perNode {
				_, line := newKey(t, "")
				want = append(want, line)
				wg.Go(func() {
					if _, err := db.AddKey(ctx, "carol", line); err != nil {
						t.Errorf("AddKey %d: %v", i, err)
					}
				})
			}
		}
		wg.Wait()
		u, err := b.Get(ctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		if len(u.Keys) != len(want) {
			t.Fatalf("%d keys after %d concurrent AddKeys on two nodes", len(u.Keys), len(want))
		}
		for _, line := range want {
			if !strings.Contains(fmt.Sprint(u.Keys), strings.Fields(line)[1]) {
				t.Errorf("key lost: %s", line)
			}
		}
		eventually(t, "both nodes at the final revision", func() bool {
			return a.Revision() == start+2*perNode && b.Revision() == start+2*perNode
		})
		// Two nodes racing for one name: exactly one Add wins.
		var won atomic.Int32
		for _, db := range []*DB{a, b} {
			wg.Go(func() {
				err := db.Add(ctx, User{Name: "dave"}, nil)
				switch {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, ErrExists):
					t.Errorf("Add: %v", err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Errorf("%d Adds of one name won", won.Load())
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		p := prefix()
		a, b := etcdNode(t, c, p, Options{}), etcdNode(t, c, p, Options{})
		ctx := t.Context()
		mustAdd(t, a, User{Name: "erin"}, "")
		// b changes erin while a's Update of erin runs: a's commit
		// conflicts, its fn runs again on b's record, and both changes
		// stay.
		runs := 0
		err := a.Update(ctx, "erin", func(u *User) error {
			runs++
			if runs == 1 {
				if err := b.Update(ctx, "erin", func(u *User) error { u.QuotaFiles = 7; return nil }); err != nil {
					return err
				}
			}
			u.QuotaBytes = 1 << 20
			return nil
		})
		if err != nil || runs != 2 {
			t.Fatalf("Update: %v after %d runs, want 2 runs", err, runs)
		}
		if u, _ := b.Get(ctx, "erin"); u.QuotaFiles != 7 || u.QuotaBytes != 1<<20 {
			t.Errorf("after the conflict: quota %d bytes, %d files", u.QuotaBytes, u.QuotaFiles)
		}
		// A scanned bucket: a folder b adds while a drops frank's grants
		// (scanning folders and groups, as Delete does) conflicts, so no
		// grant of a deleted user is left behind.
		mustAdd(t, a, User{Name: "frank"}, "")
		runs = 0
		err = a.writeTx(ctx, func(tx *txn) error {
			runs++
			tx.Bucket(bucketUsers).Get([]byte("frank")) // the snapshot's revision
			if runs == 1 {
				if err := b.AddFolder(ctx, Folder{Name: "f"}); err != nil {
					return err
				}
				if err := b.SetGrant(ctx, "f", "frank", PermAll, false); err != nil {
					return err
				}
			}
			return dropGrants(tx, "frank")
		})
		if err != nil || runs != 2 {
			t.Fatalf("writeTx: %v after %d runs, want 2", err, runs)
		}
		if f, err := b.GetFolder(ctx, "f"); err != nil || len(f.Grants) != 0 {
			t.Errorf("folder after dropping frank's grants: %+v, %v", f, err)
		}
		// The same without meta/revision (links do not bump it): only
		// the compare on the scanned bucket catches a record b adds.
		runs = 0
		err = a.update(func(tx *txn) error {
			runs++
			lb, _ := tx.CreateBucketIfNotExists(bucketLinks)
			lb.Get([]byte("count"))
			if runs == 1 {
				if err := b.PutLink(ctx, "l2", []byte("x")); err != nil {
					return err
				}
			}
			n := 0
			if err := lb.ForEach(func(k, v []byte) error { n++; return nil }); err != nil {
				return err
			}
			return lb.Put([]byte("count"), []byte(fmt.Sprint(n)))
		})
		if v, _ := b.Link(ctx, "count"); err != nil || runs != 2 || string(v) != "1" {
			t.Errorf("count of links: %q after %d runs, %v; want 1 after 2", v, runs, err)
		}
		// One attempt only: the conflict is ErrConflict, nothing written.
		one, err := OpenEtcd(EtcdConfig{Client: etcdTestClient(t, c), Prefix: p, Attempts: 1}, Options{Argon2: tinyParams, Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		defer one.Close()
		err = one.Update(ctx, "erin", func(u *User) error {
			if err := b.Update(ctx, "erin", func(u *User) error { u.QuotaFiles = 9; return nil }); err != nil {
				return err
			}
			u.QuotaFiles = 1
			return nil
		})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("one attempt, conflict: %v, want ErrConflict", err)
		}
		if u, _ := b.Get(ctx, "erin"); u.QuotaFiles != 9 {
			t.Errorf("after the lost update: %d files, want b's 9", u.QuotaFiles)
		}
	})

	t.Run("Bans", func(t *testing.T) {
		p := prefix()
		clk := newClock()
		opts := Options{Now: clk.Now, Defender: DefenderOptions{
			AddrThreshold: 3, UserThreshold: 5, BanTime: 10 * time.Minute, Sleep: (&sleepRecorder{}).Sleep,
		}}
		a, b := etcdNode(t, c, p, opts), etcdNode(t, c, p, opts)
		ctx := t.Context()
		mustAdd(t, a, User{Name: "gina"}, "gina-pw")
		eventually(t, "b has gina", func() bool { return b.Revision() == a.Revision() })
		for range 3 {
			if _, err := a.AuthPassword(ctx, "ssh", "192.0.2.7:1000", "gina", []byte("wrong")); !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("failure on a: %v", err)
			}
		}
		if !a.Banned("192.0.2.7") {
			t.Fatal("a did not ban the address")
		}
		eventually(t, "b holds a's ban", func() bool { return b.Banned("192.0.2.7") })
		if _, err := b.AuthPassword(ctx, "dav", "192.0.2.7:2000", "gina", []byte("gina-pw")); !errors.Is(err, ErrBanned) {
			t.Errorf("right password on b from the address banned on a: %v", err)
		}
		if bans := b.Bans(); len(bans) != 1 || bans[0].Who != "192.0.2.7" || !bans[0].Until.Equal(a.Bans()[0].Until) {
			t.Errorf("b's bans %+v, a's %+v", bans, a.Bans())
		}
		// A node started after the ban holds it too.
		late := etcdNode(t, c, p, opts)
		if !late.Banned("192.0.2.7") {
			t.Error("a node opened after the ban does not hold it")
		}
		// A ban of the name, from failures on b.
		for i := range 5 {
			b.AuthPassword(ctx, "ssh", fmt.Sprintf("198.51.100.%d:1", i), "gina", []byte("wrong"))
		}
		eventually(t, "a holds b's ban of the name", func() bool {
			for _, x := range a.Bans() {
				if x.Kind == "user" && x.Who == "gina" {
					return true
				}
			}
			return false
		})
		// Lifting on b lifts everywhere.
		if err := b.Unban("192.0.2.7"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a lifts the ban lifted on b", func() bool { return !a.Banned("192.0.2.7") && !late.Banned("192.0.2.7") })
		if _, err := a.AuthPassword(ctx, "ssh", "192.0.2.7:3000", "gina", []byte("gina-pw")); err != nil && !errors.Is(err, ErrBanned) {
			t.Errorf("after unban: %v", err)
		}
		// The ban ends with its time on every node (the fake clock; etcd's
		// lease forgets the key by itself).
		clk.Advance(11 * time.Minute)
		for _, db := range []*DB{a, b, late} {
			if len(db.Bans()) != 0 {
				t.Errorf("bans after their time: %+v", db.Bans())
			}
		}
	})

	t.Run("OneTimeCodesOnce", func(t *testing.T) {
		// A TOTP code or a recovery code replayed on another node at
		// the same moment is accepted once: the second commit conflicts
		// and its re-run sees the code used.
		p := prefix()
		clk := newClock()
		opts := Options{Now: clk.Now, Defender: DefenderOptions{Sleep: (&sleepRecorder{}).Sleep}}
		a, b := etcdNode(t, c, p, opts), etcdNode(t, c, p, opts)
		mustAdd(t, a, User{Name: "kim"}, "kim-pw")
		secret, recovery := enrol(t, a, clk, "kim")
		clk.Advance(time.Minute)
		for _, cd := range []string{code(t, secret, clk.Now()), recovery[0]} {
			var ok, refused atomic.Int32
			var wg sync.WaitGroup
			for _, db := range []*DB{a, b, a, b} {
				wg.Go(func() {
					_, err := db.VerifySecondFactor(t.Context(), "web", "10.0.0.9", "kim", cd)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrAuthFailed):
						refused.Add(1)
					default:
						t.Errorf("VerifySecondFactor: %v", err)
					}
				})
			}
			wg.Wait()
			if ok.Load() != 1 || refused.Load() != 3 {
				t.Errorf("one code on two nodes four times: %d accepted, %d refused", ok.Load(), refused.Load())
			}
		}
	})

	t.Run("NothingInTheClear", func(t *testing.T) {
		p := prefix()
		clk := newClock()
		a := etcdNode(t, c, p, Options{Now: clk.Now, Defender: DefenderOptions{AddrThreshold: 2, UserThreshold: 2, Sleep: (&sleepRecorder{}).Sleep}})
		ctx := t.Context()
		_, line := newKey(t, "keycommentmarker")
		mustAdd(t, a, User{Name: "usermarker", Home: "homemarker", Keys: []Key{{Line: line}}}, "passwordmarker")
		if err := a.AddGroup(ctx, "groupmarker"); err != nil {
			t.Fatal(err)
		}
		if err := a.AddFolder(ctx, Folder{Name: "foldermarker"}); err != nil {
			t.Fatal(err)
		}
		if err := a.SetGrant(ctx, "foldermarker", "@groupmarker", PermAll, false); err != nil {
			t.Fatal(err)
		}
		if err := a.PutLink(ctx, "linkkeymarker", []byte("linkvaluemarker")); err != nil {
			t.Fatal(err)
		}
		if err := a.PutInvite(ctx, "invitekeymarker", []byte("invitevaluemarker")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			a.AuthPassword(ctx, "ssh", "203.0.113.99:1", "banmarker", []byte("x"))
		}
		pub := strings.Fields(line)[1]
		// Every key and value in the cluster (the bans are written by a
		// goroutine: wait for them first).
		var all []byte
		eventually(t, "the bans in etcd", func() bool {
			resp, err := a.etcd.client.Get(ctx, p+"bans/", clientv3.WithPrefix())
			return err == nil && len(resp.Kvs) == 2
		})
		resp, err := a.etcd.client.Get(ctx, "\x00", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			all = append(append(all, kv.Key...), kv.Value...)
		}
		for _, m := range []string{"usermarker", "homemarker", "keycommentmarker", "passwordmarker", "groupmarker",
			"foldermarker", "linkkeymarker", "linkvaluemarker", "invitekeymarker", "invitevaluemarker",
			"banmarker", "203.0.113.99", pub, pub[:20]} {
			if bytes.Contains(all, []byte(m)) {
				t.Errorf("%q in etcd", m)
			}
		}
		if len(all) < 1000 {
			t.Errorf("only %d bytes in etcd: nothing to grep", len(all))
		}
		// And the records open: Verify checks each one.
		n, err := a.Verify(func(b string, err error) { t.Errorf("Verify: %s: %v", b, err) })
		if err != nil || n < 6 {
			t.Errorf("Verify: %d records, %v", n, err)
		}
	})

	t.Run("KeysAndTamper", func(t *testing.T) {
		p := prefix()
		a := etcdNode(t, c, p, Options{})
		ctx := t.Context()
		mustAdd(t, a, User{Name: "hank"}, "hank-pw")
		mustAdd(t, a, User{Name: "ivy"}, "")
		cl := etcdTestClient(t, c)
		if _, err := OpenEtcd(EtcdConfig{Client: cl, Prefix: p}, Options{Argon2: tinyParams}); !errors.Is(err, ErrKeyRequired) {
			t.Errorf("without a key: %v", err)
		}
		if _, err := OpenEtcd(EtcdConfig{Client: cl, Prefix: p}, Options{Argon2: tinyParams, Key: bytes.Repeat([]byte{8}, KeySize)}); !errors.Is(err, ErrSealed) {
			t.Errorf("another key: %v", err)
		}
		// hank's sealed value put under ivy's key does not open: ivy
		// reads as missing, and Verify names the record.
		s := a.seal
		hk := p + "users/" + string(s.storedKey(bucketUsers, []byte("hank")))
		ik := p + "users/" + string(s.storedKey(bucketUsers, []byte("ivy")))
		resp, err := cl.Get(ctx, hk)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("hank's record: %v", err)
		}
		if _, err := cl.Put(ctx, ik, string(resp.Kvs[0].Value)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Get(ctx, "ivy"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ivy with hank's value: %v, want ErrNotFound", err)
		}
		bad := 0
		if _, err := a.Verify(func(string, error) { bad++ }); err != nil || bad != 1 {
			t.Errorf("Verify: %d damaged, %v", bad, err)
		}
		if err := a.CopyTo(t.TempDir() + "/x"); !errors.Is(err, ErrNotSupported) {
			t.Errorf("CopyTo on etcd: %v", err)
		}
		if err := a.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

// TestEtcdUnavailable: without a quorum every operation fails within the
// timeout (fail closed: no login from memory) and works again once the
// quorum is back; a change made meanwhile on the other side reaches the
// node's Revision after its watch comes back.
func TestEtcdUnavailable(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	a, err := OpenEtcd(EtcdConfig{Client: etcdTestClient(t, c), Prefix: "securefsd/u/", Timeout: time.Second}, Options{Argon2: tinyParams, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := t.Context()
	mustAdd(t, a, User{Name: "jack"}, "jack-pw")
	lost := a.Revision()
	c.Stop(1)
	c.Stop(2)
	// The watch breaks with the leader: Revision moves, so open sessions
	// re-check their user, which fails, and end.
	eventually(t, "Revision moving when the watch breaks", func() bool { return a.Revision() > lost })
	if _, err := a.Get(ctx, "jack"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get without quorum: %v, want ErrUnavailable", err)
	}
	if _, err := a.AuthPassword(ctx, "ssh", "10.0.0.1", "jack", []byte("jack-pw")); err == nil || errors.Is(err, ErrAuthFailed) {
		t.Errorf("login without quorum: %v, want an error that is not a wrong password", err)
	}
	if err := a.SetPassword(ctx, "jack", []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("SetPassword without quorum: %v", err)
	}
	if err := a.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping without quorum: %v", err)
	}
	c.Restart(1, 2)
	b := etcdNode(t, c, "securefsd/u/", Options{})
	before := a.Revision()
	if err := b.Update(ctx, "jack", func(u *User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's watch back after the outage", func() bool { return a.Revision() > before })
	if u, err := a.Get(ctx, "jack"); err != nil || !u.Disabled {
		t.Errorf("a after the outage: %+v, %v", u, err)
	}

}

// TestCopyToEtcd: a sealed users.db moves into an empty etcd prefix
// record for record; the cluster then serves the same users, folders,
// groups, links and revision. A prefix in use is refused; a copy cut
// short is not taken for a new database.
func TestCopyToEtcd(t *testing.T) {
	skipOnEtcd(t)
	c := testutil.StartEtcd(t, 1)
	cl := etcdTestClient(t, c)
	ctx := t.Context()
	src, _ := openTest(t, Options{})
	mustAdd(t, src, User{Name: "lena", Perms: PermAll}, "lena-pw")
	for i := range 5 {
		mustAdd(t, src, User{Name: fmt.Sprintf("u%d", i)}, "")
	}
	if err := src.AddGroup(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if err := src.SetMembers(ctx, "staff", []string{"lena"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := src.AddFolder(ctx, Folder{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	if err := src.SetGrant(ctx, "team", "@staff", PermAll, false); err != nil {
		t.Fatal(err)
	}
	if err := src.PutLink(ctx, "l1", []byte("link")); err != nil {
		t.Fatal(err)
	}
	// Transactions of 4 keys: several flushes.
	if err := src.CopyToEtcd(ctx, EtcdConfig{Client: cl, Prefix: "c/u/", MaxTxnOps: 4}); err != nil {
		t.Fatal(err)
	}
	if ok, err := src.MatchesEtcd(ctx, EtcdConfig{Client: cl, Prefix: "c/u/"}); !ok || err != nil {
		t.Errorf("MatchesEtcd of the copy: %v, %v", ok, err)
	}
	if ok, err := src.MatchesEtcd(ctx, EtcdConfig{Client: cl, Prefix: "none/u/"}); ok || err != nil {
		t.Errorf("MatchesEtcd of an empty prefix: %v, %v", ok, err)
	}
	dst := etcdNode(t, c, "c/u/", Options{})
	if dst.Revision() != src.Revision() {
		t.Errorf("revision %d in etcd, %d in the file", dst.Revision(), src.Revision())
	}
	if _, err := dst.AuthPassword(ctx, "ssh", "10.0.0.1", "lena", []byte("lena-pw")); err != nil {
		t.Errorf("login after the copy: %v", err)
	}
	us, err := dst.List(ctx)
	if err != nil || len(us) != 6 {
		t.Errorf("users after the copy: %d, %v", len(us), err)
	}
	if acc, err := dst.Access(ctx, "lena"); err != nil || len(acc) != 1 || acc[0].Folder != "team" {
		t.Errorf("access after the copy: %+v, %v", acc, err)
	}
	if v, err := dst.Link(ctx, "l1"); err != nil || string(v) != "link" {
		t.Errorf("link after the copy: %q, %v", v, err)
	}
	if n, err := dst.Verify(func(b string, err error) { t.Errorf("Verify: %s: %v", b, err) }); err != nil || n < 10 {
		t.Errorf("Verify: %d, %v", n, err)
	}
	if err := src.CopyToEtcd(ctx, EtcdConfig{Client: cl, Prefix: "c/u/"}); !errors.Is(err, ErrPrefixInUse) {
		t.Errorf("copy onto a database: %v, want ErrPrefixInUse", err)
	}
	mustAdd(t, src, User{Name: "late"}, "")
	if ok, err := src.MatchesEtcd(ctx, EtcdConfig{Client: cl, Prefix: "c/u/"}); ok || err != nil {
		t.Errorf("MatchesEtcd after a change of the file: %v, %v", ok, err)
	}
	// A copy cut short (everything but the schema): OpenEtcd refuses it.
	resp, err := cl.Get(ctx, "c/u/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Key) != "c/u/meta/schema" {
			cl.Put(ctx, "cut/u/"+string(kv.Key[len("c/u/"):]), string(kv.Value))
		}
	}
	if _, err := OpenEtcd(EtcdConfig{Client: cl, Prefix: "cut/u/"}, Options{Argon2: tinyParams, Key: testKey}); !errors.Is(err, ErrSchema) {
		t.Errorf("open a copy cut short: %v, want ErrSchema", err)
	}
	if err := src.CopyToEtcd(ctx, EtcdConfig{Client: cl, Prefix: "cut/u/"}); err != nil {
		t.Errorf("copy again over the cut copy: %v", err)
	}
	if _, err := OpenEtcd(EtcdConfig{Client: cl, Prefix: "cut/u/"}, Options{Argon2: tinyParams, Key: testKey}); err != nil {
		t.Errorf("open after the copy ran again: %v", err)
	}
}
