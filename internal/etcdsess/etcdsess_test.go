package etcdsess

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

var testKey = bytes.Repeat([]byte{7}, 32)

// node is one node's store on c, with its own client.
func node(t testing.TB, c *testutil.EtcdCluster, name string) (*Store, *clientv3.Client) {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	s, err := New(Config{Client: cl, Prefix: "t/sessions/", Key: testKey, Node: name, LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cl
}

// eventually waits for cond, failing after 20 s (the bound only keeps a
// broken test from hanging).
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

// TestWeb: a session stored by one node is read by another; a change on
// one is read by the other; an end is reported by the other's watch; EndWeb ends what it
// matches once; etcd holds neither the key, the user, the CSRF token nor
// the address in the clear.
func TestWeb(t *testing.T) {
	c := testutil.StartEtcd(t, 1)
	a, cl := node(t, c, "node-a")
	b, _ := node(t, c, "node-b")
	ctx := t.Context()
	var mu sync.Mutex
	var gone []string
	resets := 0
	if err := b.WatchWeb(func(id string) { mu.Lock(); gone = append(gone, id); mu.Unlock() }, func() { mu.Lock(); resets++; mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	key := sha256.Sum256([]byte("cookie bytes"))
	ws := WebSession{ID: "web-1", User: "alice-marker", PwHash: "hash-marker", CSRF: "csrf-marker", Remote: "192.0.2.7:1", Created: time.Now()}
	if err := a.PutWeb(ctx, key, ws, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetWeb(ctx, key)
	if err != nil || got.User != ws.User || got.CSRF != ws.CSRF || got.Node != "node-a" {
		t.Fatalf("GetWeb on the other node: %+v, %v", got, err)
	}
	if _, err := b.GetWeb(ctx, sha256.Sum256([]byte("other"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	if err := b.TouchWeb(ctx, key); err != nil {
		t.Fatal(err)
	}
	all, err := cl.Get(ctx, "t/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range all.Kvs {
		for _, m := range []string{"marker", "192.0.2.7", string(key[:8])} {
			if bytes.Contains(kv.Key, []byte(m)) || bytes.Contains(kv.Value, []byte(m)) {
				t.Fatalf("etcd holds %q in the clear: %q", m, kv.Key)
			}
		}
	}
	ws.PwHash = "new"
	if err := a.UpdateWeb(ctx, key, ws); err != nil {
		t.Fatal(err)
	}
	if got, err := b.GetWeb(ctx, key); err != nil || got.PwHash != "new" {
		t.Fatalf("after UpdateWeb: %+v, %v", got, err)
	}
	ended, err := b.EndWeb(ctx, func(w WebSession) bool { return w.User == "alice-marker" })
	if err != nil || len(ended) != 1 {
		t.Fatalf("EndWeb: %v, %v", ended, err)
	}
	if ended, err := a.EndWeb(ctx, func(WebSession) bool { return true }); err != nil || len(ended) != 0 {
		t.Fatalf("EndWeb again: %v, %v", ended, err)
	}
	eventually(t, "the end reported", func() bool { mu.Lock(); defer mu.Unlock(); return len(gone) == 1 && gone[0] == "web-1" })
	if _, err := a.GetWeb(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after EndWeb: %v", err)
	}
	if err := a.UpdateWeb(ctx, key, ws); !errors.Is(err, ErrNotFound) {
		t.Fatalf("UpdateWeb after the end: %v", err)
	}

	// A session nobody keeps alive ends with its lease.
	key2 := sha256.Sum256([]byte("idle"))
	if err := a.PutWeb(ctx, key2, WebSession{ID: "web-2", User: "bob"}, time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the idle session's end reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(gone) == 2 && gone[1] == "web-2"
	})

	// Another key opens nothing.
	other, err := New(Config{Client: cl, Prefix: "t/sessions/", Key: bytes.Repeat([]byte{8}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	key3 := sha256.Sum256([]byte("third"))
	if err := a.PutWeb(ctx, key3, WebSession{ID: "web-3", User: "carol"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := other.GetWeb(ctx, key3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another key's store finds the session: %v", err)
	}
}

// TestLive: each node's published sessions are listed with its name by
// any node; a kill request from one node ends a session on another, and
// counts; a closed node's sessions leave the registry.
func TestLive(t *testing.T) {
	c := testutil.StartEtcd(t, 1)
	a, _ := node(t, c, "node-a")
	b, _ := node(t, c, "node-b")
	var mu sync.Mutex
	live := map[*Store][]LiveSession{
		a: {{ID: "ssh-a1", User: "alice", Proto: "ssh"}},
		b: {{ID: "ssh-b1", User: "alice", Proto: "ssh"}, {ID: "ssh-b2", User: "bob", Proto: "ssh"}},
	}
	serve := func(s *Store) {
		src := func() []LiveSession { mu.Lock(); defer mu.Unlock(); return append([]LiveSession(nil), live[s]...) }
		kill := func(r KillRequest) int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			kept := live[s][:0]
			for _, ls := range live[s] {
				if ls.ID == r.ID || ls.User == r.User {
					n++
					continue
				}
				kept = append(kept, ls)
			}
			live[s] = kept
			return n
		}
		if err := s.Serve(src, 50*time.Millisecond, kill); err != nil {
			t.Fatal(err)
		}
	}
	serve(a)
	serve(b)
	ctx := t.Context()
	list := func() string {
		ls, err := a.ListLive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range ls {
			out = append(out, l.Node+":"+l.ID)
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	if got := list(); got != "node-a:ssh-a1 node-b:ssh-b1 node-b:ssh-b2" {
		t.Fatalf("list: %s", got)
	}
	if n, err := a.Kill(ctx, KillRequest{ID: "ssh-b2"}); err != nil || n != 1 {
		t.Fatalf("kill on the other node: %d, %v", n, err)
	}
	if n, err := a.Kill(ctx, KillRequest{ID: "nope"}); err != nil || n != 0 {
		t.Fatalf("kill of nothing: %d, %v", n, err)
	}
	eventually(t, "the killed session unlisted", func() bool { return list() == "node-a:ssh-a1 node-b:ssh-b1" })
	if n, err := b.Kill(ctx, KillRequest{User: "alice"}); err != nil || n != 2 {
		t.Fatalf("kill of a user's sessions: %d, %v", n, err)
	}
	eventually(t, "the user's sessions unlisted", func() bool { return list() == "" })
	mu.Lock()
	live[b] = []LiveSession{{ID: "ssh-b3", User: "bob", Proto: "ssh"}}
	mu.Unlock()
	eventually(t, "a new session listed", func() bool { return list() == "node-b:ssh-b3" })
	b.Close()
	if got := list(); got != "" {
		t.Fatalf("a closed node's sessions listed: %s", got)
	}
	if n, err := a.Kill(ctx, KillRequest{ID: "ssh-b3"}); err != nil || n != 0 {
		t.Fatalf("kill with a node gone: %d, %v", n, err)
	}
}

// TestPending: a pending login put by one node is read by another; tries
// taken in parallel on both nodes add up to max, then it is gone; one
// delete wins.
func TestPending(t *testing.T) {
	c := testutil.StartEtcd(t, 1)
	a, _ := node(t, c, "node-a")
	b, _ := node(t, c, "node-b")
	ctx := t.Context()
	key := sha256.Sum256([]byte("pending"))
	if err := a.PutPending(ctx, key, PendingLogin{User: "alice", PwHash: "h", Expires: time.Now().Add(time.Minute)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if p, err := b.GetPending(ctx, key); err != nil || p.User != "alice" {
		t.Fatalf("GetPending on the other node: %+v, %v", p, err)
	}
	const max = 5
	var mu sync.Mutex
	taken := 0
	var wg sync.WaitGroup
	for i := range 12 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_, ok, err := s.TakePendingTry(ctx, key, max)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				taken++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if taken != max {
		t.Fatalf("%d tries taken over two nodes, want %d", taken, max)
	}
	if _, err := a.GetPending(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the last try: %v", err)
	}
	key2 := sha256.Sum256([]byte("pending 2"))
	if err := a.PutPending(ctx, key2, PendingLogin{User: "bob"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ok1, err1 := a.DeletePending(ctx, key2)
	ok2, err2 := b.DeletePending(ctx, key2)
	if err1 != nil || err2 != nil || !ok1 || ok2 {
		t.Fatalf("two deletes: %v %v, %v %v", ok1, err1, ok2, err2)
	}
}
