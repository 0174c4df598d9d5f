package davd

import (
	"testing"

	"github.com/securefsd/securefsd/internal/vfs"
)

func newTestStore(t testing.TB, dir string) *vfs.Store {
	t.Helper()
	st, err := vfs.NewStore(dir, vfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {})
	return st
}
