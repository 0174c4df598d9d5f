package vfs

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
)

// TestPaddedStore: a store created with Pad keeps padding (a later open
// without it keeps the store's choice, so every file still reads), and
// the last segment's blob is stored at Padmé of its length.
func TestPaddedStore(t *testing.T) {
	kr, _ := envelope.NewKeyring()
	key := make([]byte, IndexKeySize)
	rand.Read(key)
	dir := filepath.Join(t.TempDir(), "store")
	open := func(pad bool) *Store {
		s, err := NewStore(dir, Options{Keyring: kr, Storage: StorageV2, IndexKey: key, Pad: pad})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(true)
	f, _ := s.Home("alice", HomeOptions{Perm: PermAll})
	sizes := []int{1, 4097, 100_000, 5 << 20}
	data := map[string][]byte{}
	for i, n := range sizes {
		b := make([]byte, n)
		rand.Read(b)
		name := string(rune('a' + i))
		data[name] = b
		writeFile(t, f, name, b)
	}
	s.Close()
	var stored []int64
	filepath.WalkDir(filepath.Join(dir, blobsDirName), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			stored = append(stored, fi.Size())
		}
		return nil
	})
	// Every plaintext length of a last segment is padded: the stored
	// blob is larger than the smallest envelope of that length.
	for _, n := range []int64{1, 4097, 100_000, 1 << 20} {
		padded := envelope.CiphertextSize(content.Padme(n))
		found := false
		for _, st := range stored {
			found = found || st == padded
		}
		if !found {
			t.Errorf("no blob of %d bytes (a padded last segment of %d): %v", padded, n, stored)
		}
	}
	s = open(false)
	defer s.Close()
	f, _ = s.Home("alice", HomeOptions{Perm: PermAll})
	for name, b := range data {
		if got := readFile(t, f, name); !bytes.Equal(got, b) {
			t.Errorf("%s differs after reopening without Pad", name)
		}
	}
}
