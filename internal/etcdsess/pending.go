package etcdsess

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pending logins: a password given, the second factor awaited (webui's
// two-factor step). Each is one key, p/<keyed hash of its key>, under a
// lease of its time to live, so the code may be sent to any node. The
// tries are counted in the record, each taken by a transaction on its
// revision: parallel guesses on several nodes get the same number of
// tries in all as on one.

// PendingLogin is a password login waiting for its code.
type PendingLogin struct {
	User    string    `json:"user"`
	PwHash  string    `json:"pw"` // the hash the password was verified against
	Next    string    `json:"next,omitempty"`
	Expires time.Time `json:"expires"`
	Tries   int       `json:"tries"`
}

func (s *Store) pendingKey(key [32]byte) string { return s.prefix + "p/" + s.hash("pending", key[:]) }

// PutPending stores a new pending login under key for ttl.
func (s *Store) PutPending(ctx context.Context, key [32]byte, p PendingLogin, ttl time.Duration) error {
	k := s.pendingKey(key)
	v, err := s.seal(k, p)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	g, err := s.client.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return unavailable("pending login's lease", err)
	}
	if _, err := s.client.Put(ctx, k, string(v), clientv3.WithLease(g.ID)); err != nil {
		return unavailable("store pending login", err)
	}
	return nil
}

// GetPending reads key's pending login (ErrNotFound: none, or it ended).
func (s *Store) GetPending(ctx context.Context, key [32]byte) (PendingLogin, error) {
	p, _, err := s.getPending(ctx, s.pendingKey(key))
	return p, err
}

func (s *Store) getPending(ctx context.Context, k string) (PendingLogin, int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Get(ctx, k)
	if err != nil {
		return PendingLogin{}, 0, unavailable("read pending login", err)
	}
	if len(resp.Kvs) == 0 {
		return PendingLogin{}, 0, ErrNotFound
	}
	var p PendingLogin
	if err := s.open(k, resp.Kvs[0].Value, &p); err != nil {
		return PendingLogin{}, 0, err
	}
	return p, resp.Kvs[0].ModRevision, nil
}

// TakePendingTry takes one of key's tries: false when max are taken
// already (the pending login is then deleted) or it has ended. It
// returns the login with its tries after this one.
func (s *Store) TakePendingTry(ctx context.Context, key [32]byte, max int) (PendingLogin, bool, error) {
	k := s.pendingKey(key)
	for range 64 {
		p, mod, err := s.getPending(ctx, k)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return PendingLogin{}, false, nil
			}
			return PendingLogin{}, false, err
		}
		if p.Tries >= max {
			_, err := s.DeletePending(ctx, key)
			return p, false, err
		}
		p.Tries++
		v, err := s.seal(k, p)
		if err != nil {
			return PendingLogin{}, false, err
		}
		tctx, cancel := s.opCtx(ctx)
		resp, err := s.client.Txn(tctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", mod)).
			Then(clientv3.OpPut(k, string(v), clientv3.WithIgnoreLease())).Commit()
		cancel()
		if err != nil {
			return PendingLogin{}, false, unavailable("take a try", err)
		}
		if resp.Succeeded {
			return p, true, nil
		}
	}
	return PendingLogin{}, false, unavailable("take a try", errConflict)
}

// DeletePending ends key's pending login; false when it had ended (or
// another node took it first).
func (s *Store) DeletePending(ctx context.Context, key [32]byte) (bool, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.client.Delete(ctx, s.pendingKey(key))
	if err != nil {
		return false, unavailable("end pending login", err)
	}
	return resp.Deleted > 0, nil
}
