package etcdsess

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The registry of live sessions. Each node publishes its live sessions
// under its own lease (Serve, every interval, writing only what changed),
// so a node that dies leaves the registry when its lease expires. `session
// kill` on one node reaches a session on another through etcd: a kill
// request key, which every node watches; each answers under the request
// with how many of its sessions it ended, and the request's short lease
// takes request and answers away.

// LiveSession is one of a node's live sessions, as `session list` shows it.
type LiveSession struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Proto   string    `json:"proto"`
	Remote  string    `json:"remote,omitempty"`
	Start   time.Time `json:"start"`
	Bytes   int64     `json:"bytes"`
	Current string    `json:"current,omitempty"`
	Node    string    `json:"node"` // set by Publish
	Self    bool      `json:"-"`    // ListLive: published by this store
}

// KillRequest asks every node to end the session ID, or every session
// of User.
type KillRequest struct {
	ID   string `json:"id,omitempty"`
	User string `json:"user,omitempty"`
	From string `json:"from"` // the node that asks, for the logs
}

type killAnswer struct {
	Ended int `json:"ended"`
}

func leaseHex(id clientv3.LeaseID) string { return strconv.FormatInt(int64(id), 16) }

// nodeLease is the node's live lease, granted, kept alive and announced
// under n/ if needed. A lost lease (expired while etcd was out of reach)
// is replaced, and everything is published again.
func (s *Store) nodeLease(ctx context.Context) (clientv3.LeaseID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease != 0 {
		return s.lease, nil
	}
	if s.ctx.Err() != nil {
		return 0, fmt.Errorf("etcdsess: closed: %w", ErrUnavailable)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	g, err := s.client.Grant(ctx, ttlSeconds(s.ttl))
	if err != nil {
		return 0, unavailable("node lease", err)
	}
	k := s.prefix + "n/" + leaseHex(g.ID)
	v, err := s.seal(k, s.node)
	if err != nil {
		return 0, err
	}
	if _, err := s.client.Put(ctx, k, string(v), clientv3.WithLease(g.ID)); err != nil {
		return 0, unavailable("announce node", err)
	}
	ch, err := s.client.KeepAlive(s.ctx, g.ID)
	if err != nil {
		return 0, unavailable("node lease", err)
	}
	s.lease, s.published = g.ID, map[string][]byte{}
	go func() {
		for range ch {
		}
		s.mu.Lock()
		if s.lease == g.ID {
			s.lease = 0
		}
		s.mu.Unlock()
	}()
	return g.ID, nil
}

// Publish makes the registry hold ss as this node's live sessions,
// writing only what changed since the last call.
func (s *Store) Publish(ctx context.Context, ss []LiveSession) error {
	lease, err := s.nodeLease(ctx)
	if err != nil {
		return err
	}
	pfx := s.prefix + "l/" + leaseHex(lease) + "/"
	want := make(map[string][]byte, len(ss))
	for _, ls := range ss {
		ls.Node = s.node
		b, err := json.Marshal(ls)
		if err != nil {
			return err
		}
		want[pfx+s.hash("live", []byte(ls.ID))] = b
	}
	s.mu.Lock()
	have := s.published
	s.mu.Unlock()
	var ops []clientv3.Op
	for k, b := range want {
		if string(have[k]) == string(b) {
			continue
		}
		var ls LiveSession
		_ = json.Unmarshal(b, &ls)
		v, err := s.seal(k, ls)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(k, string(v), clientv3.WithLease(lease)))
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 100) // under etcd's --max-txn-ops default (128)
		ctx, cancel := s.opCtx(ctx)
		_, err := s.client.Txn(ctx).Then(ops[:n]...).Commit()
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.mu.Lock()
			if s.lease == lease {
				s.lease = 0
			}
			s.mu.Unlock()
			return unavailable("publish sessions", err)
		}
		if err != nil {
			// What was written is unknown: write everything next time.
			s.mu.Lock()
			s.published = map[string][]byte{}
			s.mu.Unlock()
			return unavailable("publish sessions", err)
		}
		ops = ops[n:]
	}
	s.mu.Lock()
	if s.lease == lease {
		s.published = want
	}
	s.mu.Unlock()
	return nil
}

// ListLive lists every live node's sessions as their nodes last
// published them.
func (s *Store) ListLive(ctx context.Context) ([]LiveSession, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, s.prefix+"l/", clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list live sessions", err)
	}
	s.mu.Lock()
	self := s.prefix + "l/" + leaseHex(s.lease) + "/"
	s.mu.Unlock()
	out := make([]LiveSession, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var ls LiveSession
		if err := s.open(string(kv.Key), kv.Value, &ls); err != nil {
			return nil, err
		}
		ls.Self = strings.HasPrefix(string(kv.Key), self)
		out = append(out, ls)
	}
	return out, nil
}

// Serve publishes source's sessions every interval and answers kill
// requests with kill (how many sessions it ended), until the store
// closes. It returns once this node is announced and watches for
// requests: a request made after it returns is answered.
func (s *Store) Serve(source func() []LiveSession, interval time.Duration, kill func(KillRequest) int) error {
	if _, err := s.nodeLease(s.ctx); err != nil {
		return err
	}
	if err := s.Publish(s.ctx, source()); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(s.ctx)
	resp, err := s.client.Get(ctx, s.prefix+"k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return unavailable("watch kill requests", err)
	}
	s.watch(s.prefix+"k/", resp.Header.Revision+1, func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if ev.IsCreate() {
				s.answer(string(ev.Kv.Key), ev.Kv.Value, clientv3.LeaseID(ev.Kv.Lease), kill)
			}
		}
	}, func() {})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			err := s.Publish(s.ctx, source())
			if err != nil && !failing && s.ctx.Err() == nil {
				s.log.Warn("etcdsess: publishing this node's live sessions", "err", err)
			}
			failing = err != nil
		}
	}()
	return nil
}

// answer runs one kill request and says under it how many ended.
func (s *Store) answer(key string, value []byte, reqLease clientv3.LeaseID, kill func(KillRequest) int) {
	var req KillRequest
	if err := s.open(key, value, &req); err != nil {
		s.log.Warn("etcdsess: a kill request does not open", "err", err)
		return
	}
	n := kill(req)
	lease, err := s.nodeLease(s.ctx)
	if err != nil {
		s.log.Warn("etcdsess: answering a kill request", "err", err)
		return
	}
	reqID := strings.TrimPrefix(key, s.prefix+"k/")
	k := s.prefix + "a/" + reqID + "/" + leaseHex(lease)
	v, err := s.seal(k, killAnswer{Ended: n})
	if err != nil {
		return
	}
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	if _, err := s.client.Put(ctx, k, string(v), clientv3.WithLease(reqLease)); err != nil {
		s.log.Warn("etcdsess: answering a kill request", "err", err)
	}
}

// minKillWait is the least time Kill waits for the nodes' answers.
const minKillWait = 10 * time.Second

// ErrNoAnswer: a live node did not answer a kill request in time.
var ErrNoAnswer = errors.New("etcdsess: a node did not answer")

// Kill asks every live node (this one too, if it Serves) to end what
// req names, and returns how many sessions they ended. A node that stays
// live and does not answer within twice the timeout (at least 10 s)
// makes it ErrNoAnswer, with the others' count.
func (s *Store) Kill(ctx context.Context, req KillRequest) (int, error) {
	req.From = s.node
	var id [16]byte
	_, _ = rand.Read(id[:])
	reqID := hex.EncodeToString(id[:])
	k := s.prefix + "k/" + reqID
	v, err := s.seal(k, req)
	if err != nil {
		return 0, err
	}
	// The other nodes answer from their watch: give a busy node time.
	wait := max(2*s.timeout, minKillWait)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	g, err := s.client.Grant(ctx, ttlSeconds(wait+time.Second))
	if err != nil {
		return 0, unavailable("kill request", err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), s.timeout)
		_, _ = s.client.Revoke(rctx, g.ID) // request and answers go; else in seconds
		rcancel()
	}()
	put, err := s.client.Put(ctx, k, string(v), clientv3.WithLease(g.ID))
	if err != nil {
		return 0, unavailable("kill request", err)
	}
	waiting, err := s.liveNodes(ctx, put.Header.Revision)
	if err != nil {
		return 0, err
	}
	total := 0
	apfx := s.prefix + "a/" + reqID + "/"
	wch := s.client.Watch(clientv3.WithRequireLeader(ctx), apfx, clientv3.WithPrefix(), clientv3.WithRev(put.Header.Revision))
	for len(waiting) > 0 {
		resp, ok := <-wch
		if !ok || resp.Err() != nil {
			break
		}
		for _, ev := range resp.Events {
			if !ev.IsCreate() {
				continue
			}
			var a killAnswer
			if err := s.open(string(ev.Kv.Key), ev.Kv.Value, &a); err != nil {
				continue
			}
			total += a.Ended
			delete(waiting, strings.TrimPrefix(string(ev.Kv.Key), apfx))
		}
	}
	if len(waiting) == 0 {
		return total, nil
	}
	// A node that died meanwhile has no session left to end.
	rctx, rcancel := s.opCtx(context.Background())
	defer rcancel()
	still, err := s.liveNodes(rctx, 0)
	if err != nil {
		return total, err
	}
	var names []string
	for l := range waiting {
		if name, ok := still[l]; ok {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		return total, fmt.Errorf("%w: %s", ErrNoAnswer, strings.Join(names, ", "))
	}
	return total, nil
}

// liveNodes maps the live nodes' lease (hex) to their names, at rev
// (0: now).
func (s *Store) liveNodes(ctx context.Context, rev int64) (map[string]string, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, s.prefix+"n/", opts...)
	if err != nil {
		return nil, unavailable("list nodes", err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var name string
		if err := s.open(string(kv.Key), kv.Value, &name); err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(string(kv.Key), s.prefix+"n/")] = name
	}
	return out, nil
}
