package davd

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

var testLocksKey = bytes.Repeat([]byte{9}, 32)

// etcdLocksNode is one node's lock table on the cluster c under prefix,
// with its own client.
func etcdLocksNode(t testing.TB, c *testutil.EtcdCluster, prefix string, cfg EtcdLocksConfig) *EtcdLocks {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	cfg.Client, cfg.Prefix = cl, prefix
	if cfg.Key == nil {
		cfg.Key = testLocksKey
	}
	l, err := NewEtcdLocks(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// at is env with requests going to another node's URL.
func (e *testEnv) at(url string) *testEnv {
	c := *e
	c.URL = url
	return &c
}

// eventually waits for cond, failing after 20 s (a lease's end is etcd's
// to tell; the bound only keeps a broken test from hanging).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 20 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEtcdLocks: two WebDAV nodes with their lock tables in one etcd
// cluster honour each other's locks, at once (no watch delay: every
// check reads etcd).
func TestEtcdLocks(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	env := newTestEnv(t)
	var n atomic.Int64
	prefix := func() string { return fmt.Sprintf("securefsd/%d/davlocks/", n.Add(1)) }

	t.Run("TwoNodes", func(t *testing.T) {
		p := prefix()
		n1 := env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, p, EtcdLocksConfig{})}))
		n2 := env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, p, EtcdLocksConfig{})}))
		n1.do(t, "PUT", "/shared.txt", strings.NewReader("x"))
		resp, body := n1.do(t, "LOCK", "/shared.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")), "Timeout", "Second-600")
		wantStatus(t, resp, body, 200)
		tok := resp.Header.Get("Lock-Token")
		resp, body = n2.do(t, "PUT", "/shared.txt", strings.NewReader("y"))
		wantStatus(t, resp, body, 423)
		resp, body = n2.do(t, "LOCK", "/shared.txt", strings.NewReader(fmt.Sprintf(lockBody, "shared")))
		wantStatus(t, resp, body, 423)
		resp, body = n2.doAs(t, otherUser, otherPass, "PUT", "/shared.txt", strings.NewReader("y"), "If", "("+tok+")")
		wantStatus(t, resp, body, 412) // bob's home is another tree
		resp, body = n2.do(t, "PUT", "/shared.txt", strings.NewReader("y"), "If", "("+tok+")")
		wantStatus(t, resp, body, 204)
		resp, body = n2.do(t, "PROPFIND", "/shared.txt", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>`), "Depth", "0")
		if !strings.Contains(body, tok[1:len(tok)-1]) || !strings.Contains(body, `<href xmlns="DAV:">me</href>`) {
			t.Errorf("lockdiscovery on node 2:\n%s", body)
		}
		// Refreshed through node 2, unlocked through node 1.
		resp, body = n2.do(t, "LOCK", "/shared.txt", nil, "If", "("+tok+")", "Timeout", "Second-100")
		wantStatus(t, resp, body, 200)
		if !strings.Contains(body, "Second-100") {
			t.Errorf("refresh on node 2:\n%s", body)
		}
		resp, body = n1.do(t, "UNLOCK", "/shared.txt", nil, "Lock-Token", tok)
		wantStatus(t, resp, body, 204)
		resp, body = n2.do(t, "PUT", "/shared.txt", strings.NewReader("z"))
		wantStatus(t, resp, body, 204)
		// A collection lock on node 2 covers new members on node 1; a
		// DELETE on node 1 drops it for node 2.
		n2.do(t, "MKCOL", "/col", nil)
		resp, body = n2.do(t, "LOCK", "/col", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
		wantStatus(t, resp, body, 200)
		ct := resp.Header.Get("Lock-Token")
		resp, body = n1.do(t, "PUT", "/col/m", strings.NewReader("m"))
		wantStatus(t, resp, body, 423)
		resp, body = n1.do(t, "DELETE", "/col", nil, "If", "("+ct+")")
		wantStatus(t, resp, body, 204)
		resp, body = n2.do(t, "PUT", "/col", strings.NewReader("free"))
		wantStatus(t, resp, body, 201)
	})

	t.Run("OneWinner", func(t *testing.T) {
		// Exclusive LOCKs of one file sent to both nodes at once: one
		// gets it.
		p := prefix()
		nodes := []*testEnv{
			env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, p, EtcdLocksConfig{})})),
			env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, p, EtcdLocksConfig{})})),
		}
		nodes[0].do(t, "PUT", "/race.txt", strings.NewReader("x"))
		var won, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				resp, body := nodes[i%2].do(t, "LOCK", "/race.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
				switch resp.StatusCode {
				case 200:
					won.Add(1)
				case 423:
					refused.Add(1)
				default:
					t.Errorf("LOCK: %d %s", resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || refused.Load() != 7 {
			t.Errorf("%d LOCKs won, %d refused; want 1 and 7", won.Load(), refused.Load())
		}
	})

	t.Run("NodeDies", func(t *testing.T) {
		// Node 1 takes a lock and dies (stops keeping its lease alive,
		// revokes nothing): the lock goes with the lease, and node 2 lets
		// the write through.
		p := prefix()
		l1 := etcdLocksNode(t, c, p, EtcdLocksConfig{LeaseTTL: 2 * time.Second})
		n1 := env.at(env.serveWith(t, Options{Locks: l1}))
		n2 := env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, p, EtcdLocksConfig{})}))
		n1.do(t, "PUT", "/dies.txt", strings.NewReader("x"))
		resp, body := n1.do(t, "LOCK", "/dies.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")), "Timeout", "Infinite")
		wantStatus(t, resp, body, 200)
		resp, body = n2.do(t, "PUT", "/dies.txt", strings.NewReader("y"))
		wantStatus(t, resp, body, 423)
		l1.cancel() // the keep-alive stops, as when the process is killed
		eventually(t, "the dead node's lock gone", func() bool {
			resp, _ := n2.do(t, "PUT", "/dies.txt", strings.NewReader("y"))
			return resp.StatusCode == 204
		})
	})

	t.Run("NothingInTheClear", func(t *testing.T) {
		p := prefix()
		n1 := env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, p, EtcdLocksConfig{})}))
		n1.do(t, "MKCOL", "/dirmarker", nil)
		body := strings.Replace(fmt.Sprintf(lockBody, "exclusive"), "<D:href>me</D:href>", "<D:href>ownermarker</D:href>", 1)
		resp, rb := n1.do(t, "LOCK", "/dirmarker/filemarker.txt", strings.NewReader(body))
		wantStatus(t, resp, rb, 201)
		tok := resp.Header.Get("Lock-Token")
		cl := etcdLocksNode(t, c, p, EtcdLocksConfig{}).client
		all, err := cl.Get(t.Context(), "\x00", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		for _, kv := range all.Kvs {
			if strings.HasPrefix(string(kv.Key), p) {
				b = append(append(b, kv.Key...), kv.Value...)
			}
		}
		if len(b) == 0 {
			t.Fatal("no lock in etcd")
		}
		for _, m := range []string{"dirmarker", "filemarker", "ownermarker", testUser, tok[len("<opaquelocktoken:") : len(tok)-1]} {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("%q in etcd", m)
			}
		}
	})

	t.Run("Litmus", func(t *testing.T) {
		// The litmus lock suite against a node whose locks are in etcd.
		if _, err := exec.LookPath("litmus"); err != nil {
			t.Fatalf("litmus is not installed (scripts/test.sh installs it): %v", err)
		}
		url := env.serveWith(t, Options{Locks: etcdLocksNode(t, c, prefix(), EtcdLocksConfig{})})
		cmd := exec.Command("litmus", url+"/", testUser, testPass)
		cmd.Env = append(cmd.Environ(), "TESTS=locks", "HTDOCS=/usr/share/litmus/htdocs", "TESTROOT=/usr/libexec/litmus")
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err != nil || !litmusClean(string(out)) {
			t.Errorf("litmus locks: %v\n%s", err, out)
		}
	})
}

// TestEtcdLocksUnavailable: without a quorum a write that must check
// locks is refused with 503, never let through.
func TestEtcdLocksUnavailable(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	env := newTestEnv(t)
	n1 := env.at(env.serveWith(t, Options{Locks: etcdLocksNode(t, c, "securefsd/davlocks/", EtcdLocksConfig{Timeout: time.Second})}))
	n1.do(t, "PUT", "/f.txt", strings.NewReader("x"))
	c.Stop(1)
	c.Stop(2)
	resp, body := n1.do(t, "PUT", "/f.txt", strings.NewReader("y"))
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	resp, body = n1.do(t, "LOCK", "/f.txt", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	c.Restart(1, 2)
	eventually(t, "writes back with the quorum", func() bool {
		resp, _ := n1.do(t, "PUT", "/f.txt", strings.NewReader("z"))
		return resp.StatusCode == 204
	})
}

// countingTable counts the reads of a lock table.
type countingTable struct {
	lockTable
	reads atomic.Int64
}

func (c *countingTable) with(home string, write bool, fn func(map[string]*davLock) error) error {
	if !write {
		c.reads.Add(1)
	}
	return c.lockTable.with(home, write, fn)
}

// TestListingReadsLocksOnce: a Depth 1 allprop listing reads its tree's
// locks once, not once per member (in a cluster each read is an etcd
// round trip), and still shows each member's lock.
func TestListingReadsLocksOnce(t *testing.T) {
	env := newTestEnv(t)
	ct := &countingTable{lockTable: env.Srv.locks.table}
	env.Srv.locks.table = ct
	env.do(t, "MKCOL", "/many", nil)
	for i := range 40 {
		env.do(t, "PUT", fmt.Sprintf("/many/f%02d", i), strings.NewReader("x"))
	}
	resp, body := env.do(t, "LOCK", "/many/f07", strings.NewReader(fmt.Sprintf(lockBody, "exclusive")))
	wantStatus(t, resp, body, 200)
	tok := resp.Header.Get("Lock-Token")
	before := ct.reads.Load()
	resp, body = env.do(t, "PROPFIND", "/many", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`), "Depth", "1")
	wantStatus(t, resp, body, 207)
	if n := ct.reads.Load() - before; n != 1 {
		t.Errorf("%d reads of the lock table for a 41-entry listing, want 1", n)
	}
	if strings.Count(body, tok[1:len(tok)-1]) != 1 || strings.Count(body, "<D:response>") != 41 {
		t.Errorf("listing: the lock shown %d times in %d responses", strings.Count(body, tok[1:len(tok)-1]), strings.Count(body, "<D:response>"))
	}
}

// BenchmarkLockCheck measures the lock check every modifying request
// makes, on a tree holding one lock: in memory and in a 3-member etcd
// cluster on loopback.
//
//	go test -run XXX -bench LockCheck -benchtime 3s ./internal/davd/
func BenchmarkLockCheck(b *testing.B) {
	c := testutil.StartEtcd(b, 3)
	for _, tt := range []struct {
		name  string
		table func(b *testing.B) lockTable
	}{
		{"memory", func(*testing.B) lockTable { return nil }},
		{"etcd", func(b *testing.B) lockTable { return etcdLocksNode(b, c, "bench/davlocks/", EtcdLocksConfig{}) }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			m := newLockManager(time.Now, tt.table(b))
			if _, err := m.create("alice", "alice", "/locked", false, false, "", time.Hour); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := m.check("alice", "alice", nil, writeScope{name: "/free.txt", parent: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
