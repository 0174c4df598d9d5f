package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/securefsd/securefsd/internal/testutil"
)

// TestCopyToEtcd: a bbolt index copied into etcd holds the same bytes
// (equal digests), verifies and serves under the same root key at the
// same epoch; a copy cut short (records, no state) is cleared and done
// again; a prefix holding an index is ErrPrefixInUse, and another key
// does not open the copy.
func TestCopyToEtcd(t *testing.T) {
	c := testutil.StartEtcd(t, 3)
	cl := etcdClient(t, c)
	key := rootKey(t)
	src, err := Open(filepath.Join(t.TempDir(), "index.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i := range 300 {
		err := src.Update(func(tx *Tx) error {
			return tx.Put(kindInode, fmt.Appendf(nil, "rec-%03d", i), fmt.Appendf(nil, "value %d", i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want, n, err := src.Digest()
	if err != nil || n != 301 {
		t.Fatalf("digest: %d records, %v", n, err)
	}
	ctx := context.Background()
	const prefix = "mig/i/"
	// A copy cut short: some records, no state record, and a stray key.
	if _, err := cl.Put(ctx, prefix+"stray", "left by a copy cut short"); err != nil {
		t.Fatal(err)
	}
	cfg := EtcdConfig{Client: cl, Prefix: prefix, MaxTxnOps: 50}
	if err := src.CopyToEtcd(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	dst, err := OpenEtcd(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, n, err := dst.Digest()
	if err != nil || n != 301 || got != want {
		t.Fatalf("the copy's digest differs (%d records, %v)", n, err)
	}
	if n, err := dst.Verify(); err != nil || n != 300 {
		t.Fatalf("verify of the copy: %d, %v", n, err)
	}
	se, _ := src.Epoch()
	de, _ := dst.Epoch()
	if se != de || se != 300 {
		t.Fatalf("epochs %d and %d, want 300", se, de)
	}
	err = dst.View(func(tx *Tx) error {
		v, err := tx.Get(kindInode, []byte("rec-123"))
		if err == nil && string(v) != "value 123" {
			err = fmt.Errorf("read %q", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.CopyToEtcd(ctx, cfg); !errors.Is(err, ErrPrefixInUse) {
		t.Fatalf("copy over an index: %v, want ErrPrefixInUse", err)
	}
	if _, err := OpenEtcd(cfg, rootKey(t)); !errors.Is(err, ErrAuth) {
		t.Fatalf("another key opens the copy: %v", err)
	}
}
