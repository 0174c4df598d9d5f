package etcdsess

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/securefsd/securefsd/internal/etcdseal"
)

// ErrNotFound: no such browser session.
var ErrNotFound = errors.New("etcdsess: no such session")

// ErrUnavailable: etcd did not answer, or a value did not open. Callers
// fail closed: no session is served that could not be checked.
var ErrUnavailable = errors.New("etcdsess: sessions (etcd) unavailable")

// HKDF labels of the subkeys; changing one makes every stored session
// unreadable.
const (
	labelNames = "securefsd etcdsess names"
	labelSeal  = "securefsd etcdsess values"
)

// Config says where the sessions live.
type Config struct {
	Client *clientv3.Client // the caller's; Close leaves it open
	// Prefix is put before every key; nothing else may use it.
	Prefix string
	// Key (32 bytes, the users key every node has) keys the names and
	// seals the values. Store keeps subkeys only.
	Key []byte
	// Node names this node in `session list` (a host name).
	Node string
	// LeaseTTL is the node lease's time to live (zero: 10 s): a node
	// that dies leaves the registry this long after.
	LeaseTTL time.Duration
	// Timeout bounds every request to etcd (zero: 5 s).
	Timeout time.Duration
	Logger  *slog.Logger // nil: discard
}

// Store is a node's view of the cluster's sessions. Safe for concurrent
// use. Close it when the server stops: its node lease is revoked, so its
// live sessions leave the registry at once.
type Store struct {
	client  *clientv3.Client
	prefix  string
	node    string
	sealer  *etcdseal.Sealer
	ttl     time.Duration
	timeout time.Duration
	log     *slog.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	lease     clientv3.LeaseID  // the node lease; 0: none yet, or lost
	published map[string][]byte // what l/ holds of this node: key → plaintext
}

// New returns the store under cfg.Prefix. Nothing is read or written
// until it is used.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil || cfg.Prefix == "" || len(cfg.Key) != 32 {
		return nil, errors.New("etcdsess: need a client, a non-empty prefix and a 32-byte key")
	}
	sl, err := etcdseal.New(cfg.Key, labelNames, labelSeal)
	if err != nil {
		return nil, err
	}
	s := &Store{client: cfg.Client, prefix: cfg.Prefix, node: cfg.Node, sealer: sl, ttl: cfg.LeaseTTL, timeout: cfg.Timeout, log: cfg.Logger}
	if s.ttl <= 0 {
		s.ttl = 10 * time.Second
	}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Node is this node's name ("" for a nil store: one server).
func (s *Store) Node() string {
	if s == nil {
		return ""
	}
	return s.node
}

// Close stops the watches and revokes the node lease (this node's live
// sessions leave the registry). Browser sessions stay: they are the
// users', not the node's.
func (s *Store) Close() error {
	s.mu.Lock()
	lease := s.lease
	s.lease = 0
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if lease == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if _, err := s.client.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("etcdsess: revoke the node lease: %w", err)
	}
	return nil
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) hash(kind string, v []byte) string {
	return s.sealer.Name(kind, v)
}

// seal encrypts v's JSON, bound to key.
func (s *Store) seal(key string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.sealer.Seal(key, plain), nil
}

// open decrypts what seal made under key into v.
func (s *Store) open(key string, sealed []byte, v any) error {
	plain, err := s.sealer.Open(key, sealed)
	if err != nil {
		return fmt.Errorf("etcdsess: %w: a value does not open (another users key, or damaged)", ErrUnavailable)
	}
	return json.Unmarshal(plain, v)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("etcdsess: %s: %w: %w", op, ErrUnavailable, err)
}

// watch follows prefix from rev on, calling fn with each response's
// events, until the store closes. When the watch breaks, reset is called
// (what the caller learnt from events may be stale) and it goes on from
// the current revision, backing off between tries.
func (s *Store) watch(prefix string, rev int64, fn func([]*clientv3.Event), reset func(), opts ...clientv3.OpOption) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		from := rev
		for backoff := 50 * time.Millisecond; s.ctx.Err() == nil; {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
			wch := s.client.Watch(wctx, prefix, append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(from)}, opts...)...)
			for resp := range wch {
				if err := resp.Err(); err != nil {
					s.log.Warn("etcdsess: watch broke; reading again", "err", err)
					break
				}
				backoff = 50 * time.Millisecond
				fn(resp.Events)
				from = resp.Header.Revision + 1
			}
			cancel()
			if s.ctx.Err() != nil {
				return
			}
			reset() // fail closed while the watch is down
			t := time.NewTimer(backoff)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 2*time.Second)
			// Go on from etcd's revision now, the events in between may be
			// compacted: read it, forget what was learnt before it, watch
			// from after it. What is learnt after the read is watched.
			ctx, cancel := s.opCtx(s.ctx)
			resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			cancel()
			if err != nil {
				continue
			}
			reset()
			from = resp.Header.Revision + 1
		}
	}()
}

// errConflict: a record kept changing under a transaction.
var errConflict = errors.New("etcdsess: kept conflicting with other nodes")
