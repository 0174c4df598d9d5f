package vfs

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestProcessUmask: NewStore reads the umask without changing it.
func TestProcessUmask(t *testing.T) {
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	if got := processUmask(); got != 0o027 {
		t.Errorf("processUmask = %o, want 027", got)
	}
	if now := unix.Umask(0o027); now != 0o027 {
		t.Errorf("umask is %o after processUmask, want 027", now)
	}
}
