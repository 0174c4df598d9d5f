package users

// The cluster engine (issue 21, docs/CLUSTER.md): the same buckets and
// sealed records as users.db, kept under a key prefix in etcd, so several
// securefsd nodes share one user database. Every record is sealed exactly
// as in a sealed users.db (seal.go): etcd holds keyed hashes and
// ciphertext, never a name, a key or a secret. Only the meta bucket
// (schema, revision counter) is plain, as in the file.
//
// Layout: PREFIX ‖ bucket ‖ "/" ‖ stored key, with the stored value as
// value: "meta/schema", "meta/revision", "users/<16-byte keyed hash>",
// "folders/…", "groups/…", "invites/…", "links/…", "sealcheck/…". Bans
// shared between nodes live under PREFIX ‖ "bans/" (etcdbans.go).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of the etcd engine, for errors.Is.
var (
	// ErrUnavailable: etcd did not answer within EtcdConfig.Timeout (no
	// quorum, unreachable) or refused the request. Nothing is served from
	// memory: the operation fails (fail closed). A commit that timed out
	// may still have been applied; the next read tells.
	ErrUnavailable = errors.New("users: etcd unavailable")
	// ErrConflict: a change lost to other nodes' changes on every attempt.
	ErrConflict = errors.New("users: change kept conflicting with other nodes' changes")
	// ErrTooLarge: a change writes more records, or more bytes, than one
	// etcd transaction takes (EtcdConfig.MaxTxnOps, MaxRequestBytes).
	ErrTooLarge = errors.New("users: change too large for one etcd transaction")
	// ErrNotSupported: the operation needs the single-node file (CopyTo
	// on etcd).
	ErrNotSupported = errors.New("users: not supported by this database engine")
)

// Defaults of EtcdConfig (etcd's own server defaults where the setting is
// the server's).
const (
	DefaultEtcdTimeout  = 5 * time.Second
	DefaultMaxTxnOps    = 128         // etcd --max-txn-ops
	DefaultMaxReqBytes  = 1536 * 1024 // etcd --max-request-bytes
	DefaultEtcdAttempts = 64
	etcdPageSize        = 512
)

// EtcdConfig says where in etcd a user database lives.
type EtcdConfig struct {
	// Client is the caller's (Close leaves it open).
	Client *clientv3.Client
	// Prefix is put before every key (docs/CLUSTER.md: "PREFIX/u/"); it
	// must not be empty, and nothing else may use it.
	Prefix string
	// Timeout bounds every request to etcd (DefaultEtcdTimeout if zero).
	Timeout time.Duration
	// MaxTxnOps is the server's --max-txn-ops (DefaultMaxTxnOps if zero).
	MaxTxnOps int
	// MaxRequestBytes is the server's --max-request-bytes
	// (DefaultMaxReqBytes if zero).
	MaxRequestBytes int
	// Attempts bounds how often a conflicting change runs
	// (DefaultEtcdAttempts if zero).
	Attempts int
}

// OpenEtcd opens (creating) the user database under cfg.Prefix in etcd.
// Every node of a cluster opens the same prefix with the same
// Options.Key, which is required: the records are sealed as in a sealed
// users.db, and a prefix sealed with another key is ErrSealed. The DB it
// returns is the one Open returns, with the same methods; it also watches
// the prefix, so other nodes' changes move Revision (within the watch's
// delivery, milliseconds) and other nodes' bans hold here. Close stops
// the watch; the client stays the caller's.
func OpenEtcd(cfg EtcdConfig, opts Options) (*DB, error) {
	if cfg.Client == nil || cfg.Prefix == "" {
		return nil, errors.New("users: etcd needs a client and a non-empty prefix")
	}
	if opts.Key == nil {
		return nil, fmt.Errorf("users: etcd prefix %q: %w", cfg.Prefix, ErrKeyRequired)
	}
	e := &etcdEngine{
		client: cfg.Client, prefix: cfg.Prefix, timeout: cfg.Timeout, maxOps: cfg.MaxTxnOps,
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
	db, err := newDB(opts)
	if err != nil {
		return nil, err
	}
	db.etcd = e
	if err := db.initEtcd(); err != nil {
		return nil, fmt.Errorf("users: open etcd prefix %q: %w", cfg.Prefix, err)
	}
	e.bans = newEtcdBans(e, db)
	db.def.share = e.bans
	if err := e.startWatch(db); err != nil {
		e.close()
		return nil, fmt.Errorf("users: open etcd prefix %q: %w", cfg.Prefix, err)
	}
	return db, nil
}

// initEtcd makes a new prefix a sealed database of schema sealedSchema,
// or checks an existing one (schema, key), and loads the revision.
func (db *DB) initEtcd() error {
	var rev uint64
	err := db.etcd.update(func(tx rawTx) error {
		meta := tx.bucket(bucketMeta)
		switch v, ok := getU64(meta, keySchema); {
		case !ok && meta.Get(keySchema) != nil:
			return fmt.Errorf("users: meta without a valid schema version: %w", ErrSchema)
		case !ok:
			// No schema: a new prefix, unless records are there already
			// (a CopyToEtcd that did not finish).
			var partial bool
			tx.bucket(bucketSealCheck).ForEach(func(k, v []byte) error { partial = true; return nil })
			if partial {
				return fmt.Errorf("users: records without a schema (an interrupted copy? run it again): %w", ErrSchema)
			}
			check := &bucket{b: tx.bucket(bucketSealCheck), name: bucketSealCheck, s: db.seal, db: db}
			if err := check.Put(keySealCheck, keySealCheck); err != nil {
				return err
			}
			rev = 0
			return putU64(meta, keySchema, sealedSchema)
		case v != sealedSchema:
			return fmt.Errorf("users: database schema %d in etcd, this securefsd keeps %d there: %w", v, sealedSchema, ErrSchema)
		default:
			rev, _ = getU64(meta, keyRevision)
			return db.checkSeal(tx)
		}
	})
	if err != nil {
		return err
	}
	db.noteRev(rev)
	return nil
}

// etcdEngine keeps the database under a prefix in etcd.
//
// An update is optimistic (etcd's usual pattern, as the namespace
// index's engine): it reads at one revision (its first read's), records
// the mod revision of every key it reads and the buckets it scans, and
// commits in one Txn that compares them (a key's mod revision unchanged,
// 0 for a key read as absent; no key of a scanned bucket newer than the
// read revision) and applies its puts and deletes. If anything changed,
// fn runs again from scratch. Every change of users, folders or groups
// also reads and writes meta/revision, so those are serializable among
// themselves whatever they scanned.
type etcdEngine struct {
	client   *clientv3.Client
	prefix   string
	timeout  time.Duration
	maxOps   int
	maxBytes int
	attempts int
	// mu serializes this node's updates: they would only conflict with
	// each other on meta/revision.
	mu sync.Mutex

	bans *etcdBans

	stop context.CancelFunc
	done chan struct{}
}

func (e *etcdEngine) close() {
	if e.stop != nil {
		e.stop()
		<-e.done
		e.stop = nil
	}
	if e.bans != nil {
		e.bans.close()
	}
}

func (e *etcdEngine) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.timeout)
}

func (e *etcdEngine) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if _, err := e.client.Get(ctx, e.prefix+string(bucketMeta)+"/"+string(keySchema)); err != nil {
		return etcdErr("ping", err)
	}
	return nil
}

// errCompacted: a revision read was compacted away meanwhile; an update
// runs again, a view fails with ErrUnavailable.
var errCompacted = errors.New("users: the revision read was compacted in etcd")

func etcdErr(op string, err error) error {
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("users: etcd %s: %w: %w", op, errCompacted, err)
	}
	return fmt.Errorf("users: etcd %s: %w: %w", op, ErrUnavailable, err)
}

func (e *etcdEngine) view(fn func(rawTx) error) error {
	t := &etcdTx{e: e}
	err := fn(t)
	if t.err != nil {
		return t.err // a failed read reads as missing: never trust fn's outcome then
	}
	return err
}

func (e *etcdEngine) update(fn func(rawTx) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for attempt := range e.attempts {
		t := &etcdTx{e: e, writable: true, reads: map[string]int64{}, writes: map[string]etcdWrite{}}
		err := fn(t)
		if t.err != nil {
			err = t.err
		}
		if errors.Is(err, errCompacted) && attempt+1 < e.attempts {
			continue
		}
		if err != nil {
			return err
		}
		ok, err := t.commit()
		if err != nil || ok {
			return err
		}
		// Another node committed first: back off a little, at random,
		// so two nodes do not meet again at once.
		time.Sleep(time.Duration(rand.Int64N(int64(min(attempt+1, 20)) * int64(time.Millisecond))))
	}
	return fmt.Errorf("users: %d attempts: %w", e.attempts, ErrConflict)
}

type etcdWrite struct {
	v   []byte
	del bool
}

// etcdTx is one transaction on etcd. rev is the revision every read is at
// (0 until the first read sets it), so a transaction sees one snapshot;
// the first read is linearizable, so it sees every change committed
// before it began. A read that fails sets err and reads as missing; the
// transaction then fails with err whatever fn returns.
type etcdTx struct {
	e        *etcdEngine
	rev      int64
	writable bool
	reads    map[string]int64 // key → mod revision read (0: absent)
	scanned  []string         // bucket prefixes scanned
	writes   map[string]etcdWrite
	err      error
}

// Buckets always exist in etcd: an empty one reads as an empty bucket.
func (t *etcdTx) bucket(name []byte) rawBucket {
	return &etcdBucket{t: t, prefix: t.e.prefix + string(name) + "/"}
}

func (t *etcdTx) createBucketIfNotExists(name []byte) (rawBucket, error) {
	return t.bucket(name), nil
}

func (t *etcdTx) readOpts(opts ...clientv3.OpOption) []clientv3.OpOption {
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	return opts
}

func (t *etcdTx) get(key string) []byte {
	if w, ok := t.writes[key]; ok {
		return w.v
	}
	if t.err != nil {
		return nil
	}
	ctx, cancel := t.e.ctx()
	defer cancel()
	resp, err := t.e.client.Get(ctx, key, t.readOpts()...)
	if err != nil {
		t.err = etcdErr("get", err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	var mod int64
	var v []byte
	if len(resp.Kvs) == 1 {
		mod, v = resp.Kvs[0].ModRevision, resp.Kvs[0].Value
	}
	if t.writable {
		if _, seen := t.reads[key]; !seen {
			t.reads[key] = mod
		}
	}
	return v
}

func (t *etcdTx) put(key string, v []byte) error {
	if !t.writable {
		return errors.New("users: put in a read-only transaction")
	}
	t.writes[key] = etcdWrite{v: bytes.Clone(v)}
	return nil
}

func (t *etcdTx) del(key string) error {
	if !t.writable {
		return errors.New("users: delete in a read-only transaction")
	}
	t.writes[key] = etcdWrite{del: true}
	return nil
}

// scan calls fn for every record under prefix in key order, paging
// through the range and merging the transaction's own writes in, as
// bbolt's ForEach shows them.
func (t *etcdTx) scan(prefix string, fn func(k, v []byte) error) error {
	if t.err != nil {
		return t.err
	}
	var pending []string
	for k := range t.writes {
		if strings.HasPrefix(k, prefix) {
			pending = append(pending, k)
		}
	}
	slices.Sort(pending)
	emit := func(key string, w etcdWrite) error {
		if w.del {
			return nil
		}
		return fn([]byte(key[len(prefix):]), w.v)
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		ctx, cancel := t.e.ctx()
		resp, err := t.e.client.Get(ctx, from, t.readOpts(clientv3.WithRange(end), clientv3.WithLimit(etcdPageSize))...)
		cancel()
		if err != nil {
			t.err = etcdErr("scan", err)
			return t.err
		}
		if t.rev == 0 {
			t.rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			if t.writable {
				if _, seen := t.reads[key]; !seen {
					t.reads[key] = kv.ModRevision
				}
			}
			for len(pending) > 0 && pending[0] < key {
				if err := emit(pending[0], t.writes[pending[0]]); err != nil {
					return err
				}
				pending = pending[1:]
			}
			if len(pending) > 0 && pending[0] == key {
				pending = pending[1:]
				if err := emit(key, t.writes[key]); err != nil {
					return err
				}
				continue
			}
			if err := emit(key, etcdWrite{v: kv.Value}); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if t.writable && !slices.Contains(t.scanned, prefix) {
		t.scanned = append(t.scanned, prefix)
	}
	for _, k := range pending {
		if err := emit(k, t.writes[k]); err != nil {
			return err
		}
	}
	return nil
}

// commit applies the writes if nothing read changed since (true), or
// reports a conflict (false).
func (t *etcdTx) commit() (bool, error) {
	if len(t.writes) == 0 {
		return true, nil
	}
	keys := make([]string, 0, len(t.writes))
	size := 0
	for k, w := range t.writes {
		keys = append(keys, k)
		size += len(k) + len(w.v) + 16
	}
	slices.Sort(keys)
	if len(keys) > t.e.maxOps {
		return false, fmt.Errorf("users: %d records written in one change, etcd takes %d: %w", len(keys), t.e.maxOps, ErrTooLarge)
	}
	var cmps []clientv3.Cmp
	for _, p := range t.scanned {
		// No key of a scanned bucket created or changed since the read.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", t.rev+1).WithPrefix())
	}
	revKey := t.e.prefix + string(bucketMeta) + "/" + string(keyRevision)
	cmpKeys := make([]string, 0, len(t.reads))
	for k := range t.reads {
		cmpKeys = append(cmpKeys, k)
	}
	if len(cmpKeys)+len(cmps) > t.e.maxOps {
		// Too many to compare one by one. meta/revision alone keeps the
		// changes that bump it serializable (with the scanned buckets'
		// compares); a change that does not read it cannot be checked.
		if _, ok := t.reads[revKey]; !ok || len(cmps)+1 > t.e.maxOps {
			return false, fmt.Errorf("users: %d records read in one change, etcd compares %d: %w", len(cmpKeys), t.e.maxOps, ErrTooLarge)
		}
		cmpKeys = []string{revKey}
	}
	for _, k := range cmpKeys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", t.reads[k]))
		size += len(k) + 16
	}
	if size > t.e.maxBytes-4096 {
		return false, fmt.Errorf("users: change of %d bytes, etcd takes %d: %w", size, t.e.maxBytes, ErrTooLarge)
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		if w := t.writes[k]; w.del {
			ops[i] = clientv3.OpDelete(k)
		} else {
			ops[i] = clientv3.OpPut(k, string(w.v))
		}
	}
	ctx, cancel := t.e.ctx()
	defer cancel()
	resp, err := t.e.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, etcdErr("commit", err)
	}
	return resp.Succeeded, nil
}

// etcdBucket is one bucket of an etcdTx: the keys under its prefix.
type etcdBucket struct {
	t      *etcdTx
	prefix string
}

func (b *etcdBucket) Get(k []byte) []byte   { return b.t.get(b.prefix + string(k)) }
func (b *etcdBucket) Put(k, v []byte) error { return b.t.put(b.prefix+string(k), v) }
func (b *etcdBucket) Delete(k []byte) error { return b.t.del(b.prefix + string(k)) }
func (b *etcdBucket) ForEach(fn func(k, v []byte) error) error {
	return b.t.scan(b.prefix, fn)
}

// startWatch loads nothing (initEtcd did) and watches the prefix from
// now on: meta/revision raises Revision, bans/ goes to the defender.
func (e *etcdEngine) startWatch(db *DB) error {
	ctx, cancel := e.ctx()
	resp, err := e.client.Get(ctx, e.prefix+string(bucketMeta)+"/"+string(keyRevision))
	cancel()
	if err != nil {
		return etcdErr("watch", err)
	}
	if len(resp.Kvs) == 1 && len(resp.Kvs[0].Value) == 8 {
		db.noteRev(binary.BigEndian.Uint64(resp.Kvs[0].Value))
	}
	if err := e.bans.load(resp.Header.Revision); err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.Background())
	e.stop, e.done = stop, make(chan struct{})
	go e.watch(wctx, db, resp.Header.Revision+1)
	return nil
}

// watch follows the prefix until ctx ends. When the watch breaks (etcd
// unreachable, the leader lost, a compaction past where it was), it
// reads the current revision and bans again and watches on from there,
// so nothing is missed for long; it backs off between tries.
func (e *etcdEngine) watch(ctx context.Context, db *DB, from int64) {
	defer close(e.done)
	revKey := e.prefix + string(bucketMeta) + "/" + string(keyRevision)
	banPrefix := e.prefix + etcdBanBucket
	for backoff := 50 * time.Millisecond; ctx.Err() == nil; {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := e.client.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				db.log.Warn("users: etcd watch broke; reading again", "err", err)
				break
			}
			backoff = 50 * time.Millisecond
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				switch {
				case ev.Type != clientv3.EventTypePut:
				case key == revKey && len(ev.Kv.Value) == 8:
					db.noteRev(binary.BigEndian.Uint64(ev.Kv.Value))
				case strings.HasPrefix(key, banPrefix):
					e.bans.apply(ev.Kv.Key, ev.Kv.Value)
				}
			}
			from = resp.Header.Revision + 1
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		db.unsure.Add(1) // sessions re-check: see Revision
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
		// Catch up from what etcd holds now: a compaction may have taken
		// the events in between.
		rctx, rcancel := e.ctx()
		resp, err := e.client.Get(rctx, revKey)
		rcancel()
		if err != nil {
			continue
		}
		if len(resp.Kvs) == 1 && len(resp.Kvs[0].Value) == 8 {
			db.noteRev(binary.BigEndian.Uint64(resp.Kvs[0].Value))
		}
		if err := e.bans.load(resp.Header.Revision); err != nil {
			continue
		}
		from = resp.Header.Revision + 1
	}
}
