// Package cluster is one securefsd node's membership of a cluster on etcd
// (docs/CLUSTER.md): a lease that lives as long as the node keeps it
// alive, and the node's pin under that lease, the oldest namespace epoch
// its open files read (nsfs.Pins). A node that dies, or is cut off from
// etcd for longer than the lease's TTL, loses its lease, and its pin goes
// with it: the other nodes' collectors stop waiting for it.
//
// The keys are PREFIX/n/<lease id in hex> with the epoch in decimal as the
// value: no name, no key material. The package imports nothing of ours.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultTTL is a node's lease TTL when Config.TTL is zero: a dead node's
// pin holds the other nodes' collectors back this long at most.
const DefaultTTL = 15 * time.Second

// DefaultTimeout bounds one request to etcd when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// ErrUnavailable: etcd did not answer in time, or this node's lease is
// lost and a new one could not be had.
var ErrUnavailable = errors.New("cluster: etcd unavailable")

// Config says where the nodes' keys live.
type Config struct {
	// Client is the caller's (Close leaves it open).
	Client *clientv3.Client
	// Prefix is the cluster's prefix in etcd (the index lives under
	// Prefix+"i/", the pins under Prefix+"n/"). Not empty.
	Prefix string
	// TTL of the node's lease (DefaultTTL if zero; whole seconds).
	TTL time.Duration
	// Timeout bounds every request (DefaultTimeout if zero).
	Timeout time.Duration
}

// Node is this process's membership. Safe for concurrent use.
type Node struct {
	client  *clientv3.Client
	prefix  string // of the pins, ending in "/"
	ttl     int
	timeout time.Duration

	mu      sync.Mutex
	session *lease
	pin     uint64 // the last pin published, put again under a new lease
	pinned  bool
	closed  bool
}

// Join takes a lease for this node. It does not publish a pin yet.
func Join(cfg Config) (*Node, error) {
	if cfg.Client == nil || cfg.Prefix == "" {
		return nil, errors.New("cluster: needs a client and a non-empty prefix")
	}
	n := &Node{client: cfg.Client, prefix: cfg.Prefix + "n/", ttl: int(cfg.TTL / time.Second), timeout: cfg.Timeout}
	if n.ttl <= 0 {
		n.ttl = int(DefaultTTL / time.Second)
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.sessionLocked(); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), n.timeout)
}

// lease is a lease kept alive until its stop is called or etcd lets it
// expire; done is closed then.
type lease struct {
	id   clientv3.LeaseID
	stop context.CancelFunc
	done chan struct{}
}

func (l *lease) lost() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// sessionLocked returns the node's live lease, taking a new one (and
// putting the pin again under it) if it was lost. Caller holds mu.
func (n *Node) sessionLocked() (*lease, error) {
	if n.closed {
		return nil, errors.New("cluster: node closed")
	}
	if n.session != nil && !n.session.lost() {
		return n.session, nil
	}
	if n.session != nil {
		n.session.stop()
		n.session = nil
	}
	ctx, cancel := n.ctx()
	g, err := n.client.Grant(ctx, int64(n.ttl))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: lease: %v", ErrUnavailable, err)
	}
	kctx, stop := context.WithCancel(context.Background())
	ch, err := n.client.KeepAlive(kctx, g.ID)
	if err != nil {
		stop()
		return nil, fmt.Errorf("%w: keep lease alive: %v", ErrUnavailable, err)
	}
	l := &lease{id: g.ID, stop: stop, done: make(chan struct{})}
	go func() {
		// The channel closes when the lease expires, is revoked, or the
		// keep-alives stop (etcd unreachable past the TTL, or stop).
		for range ch {
		}
		close(l.done)
	}()
	n.session = l
	if n.pinned {
		if err := n.putLocked(n.pin); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Lease is the node's lease id now (it changes if the lease is lost).
func (n *Node) Lease() (clientv3.LeaseID, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, err := n.sessionLocked()
	if err != nil {
		return 0, err
	}
	return s.id, nil
}

func (n *Node) key() string { return fmt.Sprintf("%s%x", n.prefix, int64(n.session.id)) }

func (n *Node) putLocked(epoch uint64) error {
	ctx, cancel := n.ctx()
	defer cancel()
	if _, err := n.client.Put(ctx, n.key(), strconv.FormatUint(epoch, 10), clientv3.WithLease(n.session.id)); err != nil {
		return fmt.Errorf("%w: publish pin: %v", ErrUnavailable, err)
	}
	return nil
}

// Publish records this node's pin under its lease (nsfs.Pins).
func (n *Node) Publish(epoch uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.sessionLocked(); err != nil {
		return err
	}
	if err := n.putLocked(epoch); err != nil {
		return err
	}
	n.pin, n.pinned = epoch, true
	return nil
}

// Oldest returns the oldest pin of every live node (nsfs.Pins),
// math.MaxUint64 if none. It fails if this node's own lease is lost: its
// pin is then missing from the keys, so the minimum could be too new.
func (n *Node) Oldest() (uint64, error) {
	n.mu.Lock()
	s, err := n.sessionLocked()
	n.mu.Unlock()
	if err != nil {
		return 0, err
	}
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.client.Get(ctx, n.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("%w: read pins: %v", ErrUnavailable, err)
	}
	if s.lost() {
		return 0, fmt.Errorf("%w: the node's lease was lost", ErrUnavailable)
	}
	oldest := uint64(math.MaxUint64)
	for _, kv := range resp.Kvs {
		e, err := strconv.ParseUint(string(kv.Value), 10, 64)
		if err != nil || !strings.HasPrefix(string(kv.Key), n.prefix) {
			// A value that is no epoch: keep everything rather than guess.
			return 0, fmt.Errorf("cluster: pin %q is not an epoch", kv.Key)
		}
		oldest = min(oldest, e)
	}
	return oldest, nil
}

// Live is how many nodes have a pin now, this one included once it
// published (nsfs.Pins).
func (n *Node) Live() (int, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	resp, err := n.client.Get(ctx, n.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("%w: count nodes: %v", ErrUnavailable, err)
	}
	return int(resp.Count), nil
}

// Close revokes the lease (the pin goes at once) and stops its
// keep-alives.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	if n.session == nil {
		return nil
	}
	l := n.session
	n.session = nil
	l.stop()
	ctx, cancel := n.ctx()
	defer cancel()
	if _, err := n.client.Revoke(ctx, l.id); err != nil {
		return fmt.Errorf("cluster: revoke lease: %w", err)
	}
	return nil
}
