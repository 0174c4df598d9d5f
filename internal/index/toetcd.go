package index

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrPrefixInUse: CopyToEtcd's target prefix already holds an index.
var ErrPrefixInUse = errors.New("index: the etcd prefix already holds an index")

// CopyToEtcd copies this bbolt index into an etcd prefix where no index
// is, record for record: the stored keys and sealed values byte for byte,
// the state record (epoch and root hash) included, so the copy verifies
// under the same root key and a rollback anchor written for the file
// still holds for the copy (`securefsd migrate --to-etcd`). It reads one
// bbolt transaction (a consistent copy) and writes etcd transactions of
// at most cfg.MaxTxnOps keys, each only while the prefix has no state
// record; the state record goes last, so a copy cut short is no index,
// and running CopyToEtcd again first removes what it left (a prefix
// without a state record holds no index). A prefix with a state record
// is ErrPrefixInUse: the caller compares it (Digest) to tell its own
// finished copy from another index.
func (x *Index) CopyToEtcd(ctx context.Context, cfg EtcdConfig) error {
	e, err := x.file()
	if err != nil {
		return fmt.Errorf("index: copy to etcd: %w", err)
	}
	if cfg.Client == nil || cfg.Prefix == "" {
		return errors.New("index: etcd needs a client and a non-empty prefix")
	}
	maxOps := cfg.MaxTxnOps
	if maxOps <= 0 {
		maxOps = DefaultMaxTxnOps
	}
	maxBytes := cfg.MaxRequestBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxReqBytes
	}
	state := cfg.Prefix + string(stateKey)
	noIndex := clientv3.Compare(clientv3.CreateRevision(state), "=", 0)
	txn := func(ops ...clientv3.Op) error {
		r, err := cfg.Client.Txn(ctx).If(noIndex).Then(ops...).Commit()
		if err != nil {
			return etcdErr("copy", err)
		}
		if !r.Succeeded {
			return fmt.Errorf("index: copy to etcd prefix %q: %w", cfg.Prefix, ErrPrefixInUse)
		}
		return nil
	}
	// What a copy cut short left (or anything else under a prefix that
	// is no index) goes first: the copy must hold exactly this index's
	// records, or its root hash would not verify.
	if err := txn(clientv3.OpDelete(cfg.Prefix, clientv3.WithPrefix())); err != nil {
		return err
	}
	return e.view(func(s store) error {
		var ops []clientv3.Op
		size := 0
		flush := func() error {
			if len(ops) == 0 {
				return nil
			}
			err := txn(ops...)
			ops, size = ops[:0], 0
			return err
		}
		var stateVal []byte
		err := s.scan(nil, func(sk, sealed []byte) error {
			if bytes.Equal(sk, stateKey) {
				stateVal = bytes.Clone(sealed)
				return nil
			}
			n := len(cfg.Prefix) + len(sk) + len(sealed) + 16
			if len(ops) == maxOps || (len(ops) > 0 && size+n > maxBytes-4096) {
				if err := flush(); err != nil {
					return err
				}
			}
			ops = append(ops, clientv3.OpPut(cfg.Prefix+string(sk), string(sealed)))
			size += n
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return err
		}
		if stateVal == nil {
			return errors.New("index: copy to etcd: the index has no state record")
		}
		return txn(clientv3.OpPut(state, string(stateVal)))
	})
}

// Digest is a SHA-256 over every record as stored (stored key and sealed
// value, the state record included) in key order, and their number: two
// indexes, in any engines, with equal digests hold the same bytes (a
// copy made by CopyToEtcd, not changed since).
func (x *Index) Digest() (sum [sha256.Size]byte, n int, err error) {
	h := sha256.New()
	var l [4]byte
	err = x.Records(func(sk, sealed []byte) error {
		for _, b := range [][]byte{sk, sealed} {
			binary.BigEndian.PutUint32(l[:], uint32(len(b)))
			h.Write(l[:])
			h.Write(b)
		}
		n++
		return nil
	})
	copy(sum[:], h.Sum(nil))
	return sum, n, err
}
