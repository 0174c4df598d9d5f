package users

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bans shared between the nodes of a cluster (the etcd engine). A ban
// begun on one node, or lifted there by an operator, is put under
// PREFIX ‖ "bans/" ‖ keyed hash of the defender's key ("a:<address>",
// "u:<name>", "l:<link id>"), sealed like a record (bucket "bans"): the
// value holds the key, the ban's end (zero: lifted) and the node that
// wrote it. Every node watches the prefix and applies the others' (its
// own come back and are skipped): a ban holds on every node within the
// watch's delivery. Each key lives under a lease of the ban time, so etcd
// forgets a ban when it ends, whatever happens to the node.
//
// Failure scores stay per node (a shared score would cost an etcd write
// per failed login): an attacker spreading guesses over n nodes gets n
// times the budget before the first ban, and then is banned everywhere.

const etcdBanBucket = "bans/"

var bucketBans = []byte("bans")

type banNote struct {
	key   string
	until time.Time // zero: lifted
}

type etcdBans struct {
	e    *etcdEngine
	db   *DB
	node [16]byte // this node's random id, to skip its own bans coming back
	ttl  time.Duration

	mu      sync.Mutex
	queue   []banNote
	dropped int // notes dropped from a full queue, logged by run
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped bool
}

func newEtcdBans(e *etcdEngine, db *DB) *etcdBans {
	b := &etcdBans{e: e, db: db, ttl: db.def.opts.BanTime, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	rand.Read(b.node[:])
	go b.run()
	return b
}

// banned and lifted queue a note for run: the defender calls them with
// its lock held.
func (b *etcdBans) banned(key string, until time.Time) { b.note(banNote{key, until}) }
func (b *etcdBans) lifted(key string)                  { b.note(banNote{key: key}) }

// maxBanQueue bounds the notes waiting for etcd (while it does not
// answer): past it the oldest are dropped, and those bans hold on this
// node only.
const maxBanQueue = 4096

func (b *etcdBans) note(n banNote) {
	b.mu.Lock()
	if len(b.queue) >= maxBanQueue {
		b.queue = b.queue[1:]
		b.dropped++
	}
	b.queue = append(b.queue, n)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// run puts the queued notes in etcd, in order, until close; close lets it
// put what is queued first.
func (b *etcdBans) run() {
	defer close(b.done)
	for {
		b.mu.Lock()
		q, dropped := b.queue, b.dropped
		b.queue, b.dropped = nil, 0
		b.mu.Unlock()
		if dropped > 0 {
			b.db.log.Error("users: bans not shared with the other nodes (etcd did not answer, queue full)", "dropped", dropped)
		}
		for _, n := range q {
			if err := b.put(n); err != nil {
				b.db.log.Error("users: could not share a ban with the other nodes", "kind", banKind(n.key), "err", err)
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-b.wake:
		case <-b.stop:
			b.mu.Lock()
			empty := len(b.queue) == 0
			b.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

func (b *etcdBans) close() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.stopped = true
	b.mu.Unlock()
	close(b.stop)
	<-b.done
}

// put writes n under a lease of the ban time (a lifting too, so a node
// reading the bans after a break of its watch learns of it).
func (b *etcdBans) put(n banNote) error {
	s := b.db.seal
	sk := s.storedKey(bucketBans, []byte(n.key))
	v := make([]byte, 0, 8+len(b.node))
	var ns int64
	if !n.until.IsZero() {
		ns = n.until.UnixNano()
	}
	v = binary.BigEndian.AppendUint64(v, uint64(ns))
	v = append(v, b.node[:]...)
	sealed := s.seal(bucketBans, sk, []byte(n.key), v)
	ctx, cancel := b.e.ctx()
	defer cancel()
	lease, err := b.e.client.Grant(ctx, int64((b.ttl+time.Second-1)/time.Second))
	if err != nil {
		return etcdErr("ban lease", err)
	}
	if _, err := b.e.client.Put(ctx, b.e.prefix+etcdBanBucket+string(sk), string(sealed), clientv3.WithLease(lease.ID)); err != nil {
		return etcdErr("ban", err)
	}
	return nil
}

// apply hands another node's ban (etcd key k, sealed value v) to the
// defender. A value that does not open under its key is logged and
// ignored: it cannot ban anyone.
func (b *etcdBans) apply(k, v []byte) {
	sk := k[len(b.e.prefix)+len(etcdBanBucket):]
	key, val, err := b.db.seal.open(bucketBans, sk, v)
	if err != nil || !bytes.Equal(sk, b.db.seal.storedKey(bucketBans, key)) || len(val) != 8+len(b.node) {
		b.db.log.Error("users: a shared ban does not open (damaged or moved): ignored")
		return
	}
	if bytes.Equal(val[8:], b.node[:]) {
		return // our own, applied when it began
	}
	var until time.Time
	if ns := int64(binary.BigEndian.Uint64(val)); ns != 0 {
		until = time.Unix(0, ns)
	}
	b.db.def.remoteBan(string(key), until)
}

// load applies every shared ban etcd holds at rev.
func (b *etcdBans) load(rev int64) error {
	from := b.e.prefix + etcdBanBucket
	end := clientv3.GetPrefixRangeEnd(from)
	for {
		ctx, cancel := b.e.ctx()
		resp, err := b.e.client.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(etcdPageSize))
		cancel()
		if err != nil {
			return etcdErr("bans", err)
		}
		for _, kv := range resp.Kvs {
			b.apply(kv.Key, kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
