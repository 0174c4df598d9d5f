package index

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
)

// TestKeyedMAC checks the cloned instances against hmac.New, used one
// after another and from many goroutines at once.
func TestKeyedMAC(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	k := newKeyedMAC(key)
	if k.proto == nil {
		t.Fatal("HMAC-SHA256 is not cloneable: every new would run hmac.New")
	}
	want := func(msg []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		return m.Sum(nil)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				msg := fmt.Appendf(nil, "%d/%d %s", g, i, bytes.Repeat([]byte("x"), i*7))
				m := k.new()
				m.Write(msg[:len(msg)/2])
				m.Write(msg[len(msg)/2:])
				if got := m.Sum(nil); !bytes.Equal(got, want(msg)) {
					t.Errorf("message %d/%d: %x, want %x", g, i, got, want(msg))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkNameKey(b *testing.B) {
	x := openIndex(b, b.TempDir()+"/index.db", rootKey(b))
	parent := []byte("parent-inode-id-")
	b.ReportAllocs()
	for range b.N {
		x.NameKey(parent, "a file name.pdf")
	}
}
