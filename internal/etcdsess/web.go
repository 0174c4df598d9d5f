package etcdsess

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Browser sessions. Each is one key, w/<keyed hash of the session key>,
// under a lease of its own whose time to live is the idle timeout: the
// nodes serving it keep the lease alive (TouchWeb), and etcd deletes the
// session when none has for that long. A session is the user's, not a
// node's: it outlives the node that signed it in. The maximum age is the
// caller's check (WebSession.Created).

// WebSession is a browser session as every node reads it.
type WebSession struct {
	ID   string `json:"id"` // as in audit records ("web-…"), a prefix of the session key
	User string `json:"user"`
	// PwHash is the user's password hash at sign-in: a session whose user
	// has another one now has ended.
	PwHash  string    `json:"pw"`
	CSRF    string    `json:"csrf"`
	Remote  string    `json:"remote,omitempty"` // the address that signed in
	Node    string    `json:"node,omitempty"`   // the node that signed it in
	Created time.Time `json:"created"`
	// Enrol is the otpauth:// URL of a TOTP key being enrolled through
	// this session (shown as a QR code until a code confirms it).
	Enrol string `json:"enrol,omitempty"`
}

func (s *Store) webPrefix() string { return s.prefix + "w/" }

func (s *Store) webKey(key [32]byte) string { return s.webPrefix() + s.hash("web", key[:]) }

// ttlSeconds rounds d up to whole seconds, at least one (etcd's unit).
func ttlSeconds(d time.Duration) int64 { return max(1, int64((d+time.Second-1)/time.Second)) }

// PutWeb stores a new browser session under key (SHA-256 of the
// cookie's random bytes), under a lease of idle. Node is set to this
// node's name when empty.
func (s *Store) PutWeb(ctx context.Context, key [32]byte, ws WebSession, idle time.Duration) error {
	k := s.webKey(key)
	if ws.Node == "" {
		ws.Node = s.node
	}
	v, err := s.seal(k, ws)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	g, err := s.client.Grant(ctx, ttlSeconds(idle))
	if err != nil {
		return unavailable("new session's lease", err)
	}
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(v), clientv3.WithLease(g.ID))).Commit()
	if err != nil {
		return unavailable("store session", err)
	}
	if !resp.Succeeded {
		return errors.New("etcdsess: a session with this key exists") // 256 random bits: never
	}
	return nil
}

// UpdateWeb rewrites key's stored session, keeping its lease;
// ErrNotFound when it has ended.
func (s *Store) UpdateWeb(ctx context.Context, key [32]byte, ws WebSession) error {
	k := s.webKey(key)
	v, err := s.seal(k, ws)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).
		Then(clientv3.OpPut(k, string(v), clientv3.WithIgnoreLease())).Commit()
	if err != nil {
		return unavailable("update session", err)
	}
	if !resp.Succeeded {
		return ErrNotFound
	}
	return nil
}

// GetWeb reads key's session (ErrNotFound: none, or it ended).
func (s *Store) GetWeb(ctx context.Context, key [32]byte) (WebSession, error) {
	k := s.webKey(key)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, k)
	if err != nil {
		return WebSession{}, unavailable("read session", err)
	}
	if len(resp.Kvs) == 0 {
		return WebSession{}, ErrNotFound
	}
	var ws WebSession
	if err := s.open(k, resp.Kvs[0].Value, &ws); err != nil {
		return WebSession{}, err
	}
	return ws, nil
}

// TouchWeb keeps key's session alive another idle timeout (ErrNotFound:
// it has ended).
func (s *Store) TouchWeb(ctx context.Context, key [32]byte) error {
	k := s.webKey(key)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, k, clientv3.WithKeysOnly())
	if err != nil {
		return unavailable("read session", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		return ErrNotFound
	}
	if _, err := s.client.KeepAliveOnce(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return ErrNotFound
		}
		return unavailable("keep session alive", err)
	}
	return nil
}

// DeleteWeb ends key's session on every node; false when it had ended.
func (s *Store) DeleteWeb(ctx context.Context, key [32]byte) (bool, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Delete(ctx, s.webKey(key))
	if err != nil {
		return false, unavailable("end session", err)
	}
	return resp.Deleted > 0, nil
}

// storedWeb is a session with the etcd key it was read under.
type storedWeb struct {
	key string
	ws  WebSession
}

func (s *Store) listWeb(ctx context.Context) ([]storedWeb, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, s.webPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("list sessions", err)
	}
	out := make([]storedWeb, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var ws WebSession
		if err := s.open(string(kv.Key), kv.Value, &ws); err != nil {
			// It cannot be served either (GetWeb fails on it): leave it
			// to its lease, and list the others.
			s.log.Warn("etcdsess: a stored browser session does not open", "err", err)
			continue
		}
		out = append(out, storedWeb{key: string(kv.Key), ws: ws})
	}
	return out, nil
}

// ListWeb lists every stored browser session.
func (s *Store) ListWeb(ctx context.Context) ([]WebSession, error) {
	ss, err := s.listWeb(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]WebSession, len(ss))
	for i, sw := range ss {
		out[i] = sw.ws
	}
	return out, nil
}

// EndWeb ends every stored session match accepts and returns those this
// call ended (one another node ended first is not among them).
func (s *Store) EndWeb(ctx context.Context, match func(WebSession) bool) ([]WebSession, error) {
	ss, err := s.listWeb(ctx)
	if err != nil {
		return nil, err
	}
	var ended []WebSession
	for _, sw := range ss {
		if !match(sw.ws) {
			continue
		}
		dctx, cancel := s.opCtx(ctx)
		resp, err := s.client.Delete(dctx, sw.key)
		cancel()
		if err != nil {
			return ended, unavailable("end session", err)
		}
		if resp.Deleted > 0 {
			ended = append(ended, sw.ws)
		}
	}
	return ended, nil
}

// WatchWeb calls gone with the id of each session that ends through any
// node (deleted, expired), and reset when it may have missed some (the
// watch broke): the caller drops its copies and reads them again. Ends
// after WatchWeb returns are seen. A rewrite (UpdateWeb) is not reported:
// it only follows the user's new password hash, which a node checking the
// user against its copy reads again (GetWeb) before it ends anything.
func (s *Store) WatchWeb(gone func(id string), reset func()) error {
	ctx, cancel := s.opCtx(s.ctx)
	resp, err := s.client.Get(ctx, s.webPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return unavailable("watch sessions", err)
	}
	s.watch(s.webPrefix(), resp.Header.Revision+1, func(evs []*clientv3.Event) {
		for _, ev := range evs {
			if ev.Type != clientv3.EventTypeDelete {
				continue
			}
			kv := ev.PrevKv
			if kv == nil { // compacted under it: which one is unknown
				reset()
				continue
			}
			var ws WebSession
			if err := s.open(string(kv.Key), kv.Value, &ws); err != nil {
				reset()
				continue
			}
			gone(ws.ID)
		}
	}, reset, clientv3.WithPrevKV())
	return nil
}
