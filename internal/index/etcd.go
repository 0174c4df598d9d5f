package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of the etcd engine, for errors.Is.
var (
	// ErrUnavailable: the etcd cluster did not answer within the timeout
	// (no quorum, unreachable) or refused the request. Nothing is assumed
	// and nothing is served from memory: the operation fails (fail
	// closed). A commit that times out may still have been applied.
	ErrUnavailable = errors.New("index: etcd unavailable")
	// ErrConflict: an Update lost to other nodes' updates on every
	// attempt.
	ErrConflict = errors.New("index: update kept conflicting with other nodes' updates")
	// ErrCompacted: etcd compacted away the revision a View reads (a View
	// that ran across a compaction); running it again reads the newest.
	// An Update runs again by itself.
	ErrCompacted = errors.New("index: the revision read was compacted in etcd")
	// ErrTooLarge: an Update writes more records, or more bytes, than one
	// etcd transaction takes (EtcdConfig.MaxTxnOps, MaxRequestBytes).
	ErrTooLarge = errors.New("index: update too large for one etcd transaction")
)

// Defaults of EtcdConfig, matching etcd's own server defaults where the
// setting is the server's.
const (
	DefaultEtcdTimeout  = 5 * time.Second
	DefaultMaxTxnOps    = 128         // etcd --max-txn-ops
	DefaultMaxReqBytes  = 1536 * 1024 // etcd --max-request-bytes
	DefaultEtcdAttempts = 64
	etcdPageSize        = 1024
)

// EtcdConfig says where in etcd an index lives and how long to wait.
type EtcdConfig struct {
	// Client is the caller's (Close leaves it open).
	Client *clientv3.Client
	// Prefix is put before every stored key (docs/CLUSTER.md: "PREFIX/i/");
	// it must not be empty, and no other index or data may use it.
	Prefix string
	// Timeout bounds every request to etcd (DefaultEtcdTimeout if zero):
	// past it the operation fails with ErrUnavailable.
	Timeout time.Duration
	// MaxTxnOps is the server's --max-txn-ops (DefaultMaxTxnOps if zero):
	// an Update writing more records (plus the state record) fails with
	// ErrTooLarge before it is sent. It is never split: splitting would
	// give up the one transaction an Update is.
	MaxTxnOps int
	// MaxRequestBytes is the server's --max-request-bytes
	// (DefaultMaxReqBytes if zero); an Update whose keys and values come
	// near it fails with ErrTooLarge.
	MaxRequestBytes int
	// Attempts bounds how often a conflicting Update runs
	// (DefaultEtcdAttempts if zero).
	Attempts int
}

// OpenEtcd opens (creating) the index under cfg.Prefix in etcd with its
// root key; several nodes open the same prefix with the same root key to
// share one index. The stored keys and sealed values are the ones Open
// keeps in its bbolt file. Like Open, it refuses another index's key
// (ErrAuth).
func OpenEtcd(cfg EtcdConfig, rootKey []byte) (*Index, error) {
	if cfg.Client == nil || cfg.Prefix == "" {
		return nil, errors.New("index: etcd needs a client and a non-empty prefix")
	}
	e := &etcdEngine{
		kv: cfg.Client.KV, prefix: cfg.Prefix, timeout: cfg.Timeout, maxOps: cfg.MaxTxnOps,
		maxBytes: cfg.MaxRequestBytes, attempts: cfg.Attempts,
	}
	if e.timeout <= 0 {
		e.timeout = DefaultEtcdTimeout
	}
	if e.maxOps <= 0 {
		e.maxOps = DefaultMaxTxnOps
	}
	if e.maxBytes <= 0 {
		e.maxBytes = DefaultMaxReqBytes
	}
	if e.attempts <= 0 {
		e.attempts = DefaultEtcdAttempts
	}
	x, err := newIndex(rootKey)
	if err != nil {
		return nil, err
	}
	if err := x.start(e); err != nil {
		return nil, fmt.Errorf("index: open etcd prefix %q: %w", cfg.Prefix, err)
	}
	return x, nil
}

// etcdEngine keeps the index under a prefix in etcd.
//
// An update is optimistic: it reads at one revision (the one of its first
// read, the state record), remembers the mod revision of every key it
// reads, and commits in one Txn that compares them all and applies its
// puts and deletes; if any changed, it runs again. Every update reads and
// writes the state record (epoch, root hash), so two updates never both
// commit from the same state: updates are serializable, scans included
// (a record added to a scanned range moved the state too). The other
// compares say locally what the update depends on.
type etcdEngine struct {
	kv       clientv3.KV
	prefix   string
	timeout  time.Duration
	maxOps   int
	maxBytes int
	attempts int
	// mu serializes this node's updates: they would only conflict with
	// each other on the state record.
	mu sync.Mutex
}

func (e *etcdEngine) close() error { return nil }

func (e *etcdEngine) view(fn func(store) error) error {
	return fn(&etcdStore{e: e})
}

func (e *etcdEngine) update(fn func(store) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for attempt := range e.attempts {
		s := &etcdStore{e: e, writable: true, reads: map[string]int64{}, writes: map[string]write{}}
		if err := fn(s); err != nil {
			if errors.Is(err, ErrCompacted) && attempt+1 < e.attempts {
				continue // read at a revision compacted meanwhile: from the start
			}
			return err
		}
		ok, err := s.commit()
		if err != nil || ok {
			return err
		}
		// Another node committed first: back off a little, at random,
		// so two nodes do not meet again at once.
		time.Sleep(time.Duration(rand.Int64N(int64(min(attempt+1, 20)) * int64(time.Millisecond))))
	}
	return fmt.Errorf("index: %d attempts: %w", e.attempts, ErrConflict)
}

func (e *etcdEngine) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.timeout)
}

// etcdErr wraps an error of the etcd client: a compacted revision is
// ErrCompacted, anything else (no answer within the timeout, no quorum,
// a refusal) ErrUnavailable.
func etcdErr(op string, err error) error {
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("index: etcd %s: %w: %w", op, ErrCompacted, err)
	}
	return fmt.Errorf("index: etcd %s: %w: %w", op, ErrUnavailable, err)
}

type write struct {
	sealed []byte // nil: delete
}

// etcdStore is one transaction on etcd. rev is the revision every read is
// at (0 until the first read sets it), so a transaction sees one
// snapshot.
type etcdStore struct {
	e        *etcdEngine
	rev      int64
	writable bool
	reads    map[string]int64 // key → mod revision read (0: absent)
	writes   map[string]write
}

func (s *etcdStore) get(sk []byte) ([]byte, error) {
	key := s.e.prefix + string(sk)
	if w, ok := s.writes[key]; ok {
		return w.sealed, nil
	}
	opts := []clientv3.OpOption{}
	if s.rev != 0 {
		opts = append(opts, clientv3.WithRev(s.rev))
	}
	ctx, cancel := s.e.ctx()
	defer cancel()
	resp, err := s.e.kv.Get(ctx, key, opts...)
	if err != nil {
		return nil, etcdErr("get", err)
	}
	if s.rev == 0 {
		s.rev = resp.Header.Revision
	}
	var mod int64
	var v []byte
	if len(resp.Kvs) == 1 {
		mod, v = resp.Kvs[0].ModRevision, resp.Kvs[0].Value
	}
	if s.writable {
		if _, seen := s.reads[key]; !seen {
			s.reads[key] = mod
		}
	}
	return v, nil
}

func (s *etcdStore) put(sk, sealed []byte) error {
	if !s.writable {
		return errors.New("index: put in a view")
	}
	s.writes[s.e.prefix+string(sk)] = write{sealed: sealed} // kept, as store.put allows
	return nil
}

func (s *etcdStore) delete(sk []byte) error {
	if !s.writable {
		return errors.New("index: delete in a view")
	}
	s.writes[s.e.prefix+string(sk)] = write{}
	return nil
}

// scan pages through the range in key order (etcd returns a range sorted
// by key; no sort option is given, since a sorted request makes the server
// read the whole range before applying the limit), merging the
// transaction's own writes in, as bbolt's cursor shows them.
func (s *etcdStore) scan(prefix []byte, fn func(sk, sealed []byte) error) error {
	from := s.e.prefix + string(prefix)
	end := clientv3.GetPrefixRangeEnd(from)
	var pending []string
	for k := range s.writes {
		if len(k) >= len(from) && k[:len(from)] == from {
			pending = append(pending, k)
		}
	}
	slices.Sort(pending)
	emit := func(key string, sealed []byte) error {
		if sealed == nil {
			return nil
		}
		return fn([]byte(key[len(s.e.prefix):]), sealed)
	}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(etcdPageSize)}
		if s.rev != 0 {
			opts = append(opts, clientv3.WithRev(s.rev))
		}
		ctx, cancel := s.e.ctx()
		resp, err := s.e.kv.Get(ctx, from, opts...)
		cancel()
		if err != nil {
			return etcdErr("scan", err)
		}
		if s.rev == 0 {
			s.rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			for len(pending) > 0 && pending[0] < key {
				if err := emit(pending[0], s.writes[pending[0]].sealed); err != nil {
					return err
				}
				pending = pending[1:]
			}
			if len(pending) > 0 && pending[0] == key {
				pending = pending[1:]
				if err := emit(key, s.writes[key].sealed); err != nil {
					return err
				}
				continue
			}
			if err := emit(key, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for _, k := range pending {
		if err := emit(k, s.writes[k].sealed); err != nil {
			return err
		}
	}
	return nil
}

// commit applies the writes if nothing read changed since (true), or
// reports a conflict (false).
func (s *etcdStore) commit() (bool, error) {
	if len(s.writes) == 0 {
		return true, nil
	}
	keys := make([]string, 0, len(s.writes))
	size := 0
	for k, w := range s.writes {
		keys = append(keys, k)
		size += len(k) + len(w.sealed) + 16
	}
	slices.Sort(keys)
	if len(keys) > s.e.maxOps {
		return false, fmt.Errorf("index: %d records written in one update, etcd takes %d: %w", len(keys), s.e.maxOps, ErrTooLarge)
	}
	cmpKeys := make([]string, 0, len(s.reads))
	for k := range s.reads {
		cmpKeys = append(cmpKeys, k)
	}
	if len(cmpKeys) > s.e.maxOps {
		// The state record's compare alone keeps updates serializable
		// (see etcdEngine); the others do not fit in one Txn.
		cmpKeys = []string{s.e.prefix + string(stateKey)}
	}
	cmps := make([]clientv3.Cmp, len(cmpKeys))
	for i, k := range cmpKeys {
		cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", s.reads[k])
		size += len(k) + 16
	}
	// The margin covers the request's framing around keys and values.
	if size > s.e.maxBytes-4096 {
		return false, fmt.Errorf("index: update of %d bytes, etcd takes %d: %w", size, s.e.maxBytes, ErrTooLarge)
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		if w := s.writes[k]; w.sealed != nil {
			ops[i] = clientv3.OpPut(k, string(w.sealed))
		} else {
			ops[i] = clientv3.OpDelete(k)
		}
	}
	ctx, cancel := s.e.ctx()
	defer cancel()
	resp, err := s.e.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, etcdErr("commit", err)
	}
	return resp.Succeeded, nil
}
