package davd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/securefsd/securefsd/internal/etcdseal"
)

// WebDAV locks shared by the nodes of a cluster (issue 21,
// docs/CLUSTER.md). Every lock is one etcd key,
//
//	PREFIX ‖ "l/" ‖ hex(keyed hash of the tree) ‖ "/" ‖ hex(keyed hash of the token)
//
// whose value is the lock (tree, root, user, owner, depth, timeout, end)
// sealed with XChaCha20-Poly1305 bound to the key: etcd sees no tree,
// path, user or token. Each lock is put under the lease of the node that
// last wrote it, which the node keeps alive: a node that dies takes its
// locks with it when the lease ends (EtcdLocksConfig.LeaseTTL).
//
// Each operation reads the tree's locks from etcd (linearizable, so a
// lock taken on any node before is seen) and runs the single-node logic
// of locks.go on them; a change commits in one Txn comparing what it read
// (each lock's mod revision, and no newer key under the tree's prefix),
// and runs again on a conflict: two nodes locking one resource at once,
// one wins.

// ErrLocksUnavailable: etcd did not answer within the timeout. Writes
// that must check locks fail (503), a lock token's condition is false:
// no write goes past a lock this node cannot see.
var ErrLocksUnavailable = errors.New("davd: lock table (etcd) unavailable")

var errLocksConflict = errors.New("davd: locking kept conflicting with other nodes")

// HKDF labels of the lock table's keys: changing one makes every stored
// lock unreadable (locks are short-lived; a node with another key fails
// its lock operations with ErrLocksUnavailable until it has the same).
const (
	labelLockNames = "securefsd davd locks names"
	labelLockSeal  = "securefsd davd locks values"
)

// EtcdLocksConfig says where the locks live and how long a dead node's
// locks outlive it.
type EtcdLocksConfig struct {
	Client *clientv3.Client // the caller's; Close leaves it open
	// Prefix is put before every key (docs/CLUSTER.md: "PREFIX/davlocks/");
	// nothing else may use it.
	Prefix string
	// Key (32 bytes) keys the hashes and seals the values; every node
	// has the same.
	Key []byte
	// LeaseTTL is the node lease's time to live (zero: 10 s): a node
	// that stops keeping it alive loses its locks after this long.
	LeaseTTL time.Duration
	// Timeout bounds every request to etcd (zero: 5 s).
	Timeout time.Duration
}

// EtcdLocks is the cluster's lock table (Options.Locks). Close it when
// the server stops: its lease is revoked, so this node's locks go at
// once.
type EtcdLocks struct {
	client  *clientv3.Client
	prefix  string
	sealer  *etcdseal.Sealer
	ttl     time.Duration
	timeout time.Duration

	mu     sync.Mutex
	lease  clientv3.LeaseID // 0: none yet, or lost
	ctx    context.Context  // ends at Close: the lease's keep-alive with it
	cancel context.CancelFunc
}

// NewEtcdLocks returns the lock table under cfg.Prefix. The node's lease
// is granted at the first lock.
func NewEtcdLocks(cfg EtcdLocksConfig) (*EtcdLocks, error) {
	if cfg.Client == nil || cfg.Prefix == "" || len(cfg.Key) != 32 {
		return nil, errors.New("davd: etcd locks need a client, a non-empty prefix and a 32-byte key")
	}
	sl, err := etcdseal.New(cfg.Key, labelLockNames, labelLockSeal)
	if err != nil {
		return nil, err
	}
	e := &EtcdLocks{client: cfg.Client, prefix: cfg.Prefix, sealer: sl,
		ttl: cfg.LeaseTTL, timeout: cfg.Timeout}
	if e.ttl <= 0 {
		e.ttl = 10 * time.Second
	}
	if e.timeout <= 0 {
		e.timeout = 5 * time.Second
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Close revokes the node's lease (its locks go) and stops keeping it
// alive.
func (e *EtcdLocks) Close() error {
	e.mu.Lock()
	lease := e.lease
	e.lease = 0
	e.mu.Unlock()
	e.cancel()
	if lease == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	if _, err := e.client.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("davd: revoke the locks' lease: %w", err)
	}
	return nil
}

// leaseID is the node's live lease, granted (and kept alive) if needed.
func (e *EtcdLocks) leaseID() (clientv3.LeaseID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease != 0 {
		return e.lease, nil
	}
	if e.ctx.Err() != nil {
		return 0, fmt.Errorf("davd: locks closed: %w", ErrLocksUnavailable)
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	g, err := e.client.Grant(ctx, int64((e.ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("davd: locks' lease: %w: %w", ErrLocksUnavailable, err)
	}
	ch, err := e.client.KeepAlive(e.ctx, g.ID)
	if err != nil {
		return 0, fmt.Errorf("davd: locks' lease: %w: %w", ErrLocksUnavailable, err)
	}
	e.lease = g.ID
	go func() {
		for range ch {
		}
		// The lease ended (expired while etcd was out of reach, revoked)
		// or Close: the next lock takes a new one.
		e.leaseLost(g.ID)
	}()
	return g.ID, nil
}

func (e *EtcdLocks) leaseLost(id clientv3.LeaseID) {
	e.mu.Lock()
	if e.lease == id {
		e.lease = 0
	}
	e.mu.Unlock()
}

func (e *EtcdLocks) hash(kind string, v string) string {
	return e.sealer.Name(kind, []byte(v))
}

func (e *EtcdLocks) treePrefix(home string) string {
	return e.prefix + "l/" + e.hash("tree", home) + "/"
}

// storedLock is a lock's sealed form.
type storedLock struct {
	Token    string        `json:"token"`
	Home     string        `json:"home"`
	Root     string        `json:"root"`
	User     string        `json:"user"`
	Shared   bool          `json:"shared,omitempty"`
	Infinite bool          `json:"infinite,omitempty"`
	Owner    string        `json:"owner,omitempty"`
	Timeout  time.Duration `json:"timeout"`
	Expires  time.Time     `json:"expires"`
}

func (e *EtcdLocks) seal(key string, l *davLock) ([]byte, error) {
	plain, err := json.Marshal(storedLock{Token: l.token, Home: l.home, Root: l.root, User: l.user, Shared: l.shared,
		Infinite: l.infinite, Owner: l.owner, Timeout: l.timeout, Expires: l.expires})
	if err != nil {
		return nil, err
	}
	return e.sealer.Seal(key, plain), nil
}

func (e *EtcdLocks) open(key string, v []byte, home string) (*davLock, error) {
	plain, err := e.sealer.Open(key, v)
	if err != nil {
		return nil, err
	}
	var s storedLock
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, err
	}
	if s.Home != home || !strings.HasSuffix(key, "/"+e.hash("token", s.Token)) {
		return nil, errors.New("lock stored under another name")
	}
	return &davLock{token: s.Token, home: s.Home, root: s.Root, user: s.User, shared: s.Shared,
		infinite: s.Infinite, owner: s.Owner, timeout: s.Timeout, expires: s.Expires}, nil
}

// with implements lockTable: read home's locks, run fn, commit its
// changes if nothing read changed meanwhile, else run again.
func (e *EtcdLocks) with(home string, write bool, fn func(map[string]*davLock) error) error {
	prefix := e.treePrefix(home)
	for attempt := range 64 {
		ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
		resp, err := e.client.Get(ctx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			return fmt.Errorf("davd: read locks: %w: %w", ErrLocksUnavailable, err)
		}
		locks := make(map[string]*davLock, len(resp.Kvs))
		before := make(map[string]*davLock, len(resp.Kvs))
		mods := make(map[string]int64, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			l, err := e.open(string(kv.Key), kv.Value, home)
			if err != nil {
				// Fail closed: a lock that does not open may be one this
				// node must honour.
				return fmt.Errorf("davd: a stored lock does not open (another key, or damaged): %w: %w", ErrLocksUnavailable, err)
			}
			locks[l.token], before[l.token], mods[l.token] = l, l, kv.ModRevision
		}
		if err := fn(locks); err != nil || !write {
			return err
		}
		ok, err := e.commit(prefix, resp.Header.Revision, before, mods, locks)
		if err != nil || ok {
			return err
		}
		time.Sleep(time.Duration(mrand.Int64N(int64(min(attempt+1, 20)) * int64(time.Millisecond))))
	}
	return errLocksConflict
}

// commit writes what fn changed: a lock whose pointer changed or that is
// new is put under the node's lease, a lock gone is deleted.
func (e *EtcdLocks) commit(prefix string, rev int64, before map[string]*davLock, mods map[string]int64, after map[string]*davLock) (bool, error) {
	var ops []clientv3.Op
	for tok, l := range after {
		if before[tok] == l {
			continue
		}
		lease, err := e.leaseID()
		if err != nil {
			return false, err
		}
		key := prefix + e.hash("token", tok)
		v, err := e.seal(key, l)
		if err != nil {
			return false, err
		}
		ops = append(ops, clientv3.OpPut(key, string(v), clientv3.WithLease(lease)))
	}
	for tok := range before {
		if _, ok := after[tok]; !ok {
			ops = append(ops, clientv3.OpDelete(prefix+e.hash("token", tok)))
		}
	}
	if len(ops) == 0 {
		return true, nil
	}
	// No lock of the tree new or changed since the read (a range
	// compare), and every lock this rewrites still there: a lock another
	// node removed meanwhile is not brought back. A lock removed that this
	// leaves alone changes nothing this decided on but to refuse more.
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix()}
	for tok, l := range after {
		if b := before[tok]; b != nil && b != l {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(prefix+e.hash("token", tok)), "=", mods[tok]))
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	resp, err := e.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease ended while etcd was out of reach: take a new one
		// and run again.
		e.mu.Lock()
		e.lease = 0
		e.mu.Unlock()
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("davd: write locks: %w: %w", ErrLocksUnavailable, err)
	}
	return resp.Succeeded, nil
}
