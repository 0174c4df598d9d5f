package davd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/vfs"
)

// newTestStore opens a real encrypting store under dir (tests may import
// envelope to make a keyring; the package itself does not).
func newTestStore(t testing.TB, dir string) *vfs.Store {
	t.Helper()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	st := fixture.Store(t, dir, vfs.Options{Keyring: kr})
	return st
}

// corruptStoredFile flips bytes in the middle of the stored (encrypted)
// form of a file; its length stays the same.
func corruptStoredFile(t testing.TB, env *testEnv, home, name string) {
	t.Helper()
	p := filepath.Join(env.StoreDir, home, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+16 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
