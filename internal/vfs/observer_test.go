package vfs

import (
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/securefsd/securefsd/internal/envelope"
)

type countingObserver struct{ integrity, quota atomic.Int64 }

func (o *countingObserver) IntegrityFailure() { o.integrity.Add(1) }
func (o *countingObserver) QuotaRefused()     { o.quota.Add(1) }

// TestObserver: a tampered file read by a client counts one integrity
// failure, an upload over the quota one quota refusal (metrics).
func TestObserver(t *testing.T) {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	o := &countingObserver{}
	s, err := NewStore(dir, Options{Keyring: kr, UploadHashes: testUploadHashes, Observer: o})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.Home("alice", HomeOptions{Perm: PermAll, Quota: Quota{Bytes: 10000}})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "x", make([]byte, 5000))
	// Flip a byte of the stored file's content, behind the store's back.
	p := filepath.Join(dir, "alice", "x")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := f.Open("x"); err == nil {
		_, err = io.ReadAll(r)
		r.Close()
		if err == nil {
			t.Fatal("a tampered file read back")
		}
	}
	if n := o.integrity.Load(); n != 1 {
		t.Fatalf("integrity failures counted: %d", n)
	}
	w, err := f.OpenFile("big", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err == nil {
		_, err = w.Write(make([]byte, 20000))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		t.Fatal("an upload over the quota succeeded")
	}
	if n := o.quota.Load(); n < 1 {
		t.Fatalf("quota refusals counted: %d", n)
	}
}
