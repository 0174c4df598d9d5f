package vfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestModeEncoding pins every client permission value through the disk
// encoding: the disk always grants the owner its access, the client reads
// back exactly what it set.
func TestModeEncoding(t *testing.T) {
	v1Only(t)
	for _, dir := range []bool{false, true} {
		for m := fs.FileMode(0); m <= 0o777; m++ {
			disk := diskMode(m, dir)
			if dir {
				disk |= fs.ModeDir
			}
			if !ownerAccess(disk) {
				t.Fatalf("dir=%v %o: disk %v has no owner access", dir, m, disk)
			}
			if got := clientMode(disk); got != m {
				t.Fatalf("dir=%v %o: read back %o", dir, m, got)
			}
		}
	}
	// Usual modes are stored as they are (older stores read unchanged).
	for _, m := range []fs.FileMode{0o644, 0o600, 0o755, 0o700, 0o640} {
		if diskMode(m, m&0o100 != 0) != m {
			t.Errorf("%o stored as %v", m, diskMode(m, true))
		}
	}
}

// TestClientChmodKeepsOwnerAccess: a client's chmod 000 (or a mkdir with
// mode 0) never takes the server's access to the entry on disk, and the
// client sees its mode; rotation and verify go through (issue 14, item
// 7; the tests run as root, where the kernel would not refuse, so the
// on-disk mode is what is checked).
func TestClientChmodKeepsOwnerAccess(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	f.MkdirAll("d/sub", 0o755)
	writeFile(t, f, "d/sub/x", []byte("x"))
	writeFile(t, f, "ro", []byte("ro"))
	if err := f.Mkdir("zero", 0); err != nil {
		t.Fatal(err)
	}
	if err := f.MkdirAll("zz/deep", 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{"d": 0, "d/sub": 0, "d/sub/x": 0, "ro": 0o444, "zero": 0, "zz": 0, "zz/deep": 0}
	for name, m := range want {
		if name == "zero" || strings.HasPrefix(name, "zz") {
			continue
		}
		if err := f.Chmod(name, m); err != nil {
			t.Fatal(err)
		}
	}
	check := func(f *FS) {
		t.Helper()
		for name, m := range want {
			fi, err := f.Stat(name)
			if err != nil || fi.Mode().Perm() != m {
				t.Errorf("%s: client mode %v %v, want %v", name, fi.Mode(), err, m)
			}
			dfi, err := os.Lstat(filepath.Join(ts.dir, "alice", name))
			if err != nil || !ownerAccess(dfi.Mode()) {
				t.Errorf("%s: on-disk mode %v %v, no owner access", name, dfi.Mode(), err)
			}
		}
		fis, err := f.ReadDir("d")
		if err != nil || len(fis) != 1 || fis[0].Mode().Perm() != 0 {
			t.Errorf("listing of d: %v %v", fis, err)
		}
	}
	check(f)
	// An open file's mode, and a replacement published over it, keep it.
	h, err := f.OpenFile("ro", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Write([]byte("new"))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	check(f)

	if err := ts.Rewrap(t.Context(), nil); err != nil {
		t.Fatalf("rewrap: %v", err)
	}
	var bad []string
	if _, err := ts.Verify(t.Context(), "", func(p string, err error) { bad = append(bad, p) }); err != nil || len(bad) > 0 {
		t.Fatalf("verify: %v %v", bad, err)
	}
	check(f)
}

// TestModeRepairOnOpen: a store whose entries lost the owner's access (a
// client's chmod stored by an older version) is repaired when the home is
// opened, keeping the client-visible modes.
func TestModeRepairOnOpen(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	f.MkdirAll("d/sub", 0o755)
	writeFile(t, f, "d/sub/x", []byte("x"))
	writeFile(t, f, "r", []byte("r"))
	ts.Close()
	for name, m := range map[string]fs.FileMode{"d/sub/x": 0o444, "r": 0, "d/sub": 0o500, "d": 0} {
		if err := os.Chmod(filepath.Join(ts.dir, "alice", name), m); err != nil {
			t.Fatal(err)
		}
	}
	f2 := ts.reopen(t, "alice")
	for name, m := range map[string]fs.FileMode{"d/sub/x": 0o444, "r": 0, "d/sub": 0o500, "d": 0} {
		fi, err := f2.Stat(name)
		if err != nil || fi.Mode().Perm() != m {
			t.Errorf("%s: client mode %v %v, want %v", name, fi.Mode(), err, m)
		}
		dfi, _ := os.Lstat(filepath.Join(ts.dir, "alice", name))
		if !ownerAccess(dfi.Mode()) {
			t.Errorf("%s: on-disk mode %v not repaired", name, dfi.Mode())
		}
	}
}

// TestSweepsContinuePastFailures: a file that fails (not an envelope
// file) and a directory that cannot be listed (injected) do not stop
// Rewrap or Verify: every other file is handled, the failures are
// reported at the end, and the run fails (ErrSweepIncomplete), so the
// old key is not retired.
func TestSweepsContinuePastFailures(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	bob := ts.home(t, "bob", HomeOptions{})
	f.MkdirAll("a/stuck", 0o755)
	for _, n := range []string{"a/1", "a/2", "a/stuck/3", "z"} {
		writeFile(t, f, n, []byte(n))
	}
	writeFile(t, bob, "b", []byte("b"))
	if err := os.WriteFile(filepath.Join(ts.dir, "alice", "a", "plain"), []byte("not an envelope file"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts.walkDirHook = func(home, dir string) error {
		if home == "alice" && dir == "a/stuck" {
			return syscall.EACCES
		}
		return nil
	}
	oldID := ts.kr.Active()
	kr := ts.kr.Clone()
	newID, err := kr.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	ts.SetKeyring(kr)
	err = ts.Rewrap(t.Context(), nil)
	var se *SweepError
	if !errors.Is(err, ErrSweepIncomplete) || !errors.As(err, &se) || len(se.Errs) != 2 {
		t.Fatalf("rewrap = %v, want ErrSweepIncomplete with 2 failures", err)
	}
	for _, want := range []string{"alice/a/plain", "alice/a/stuck"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("rewrap error does not name %s: %v", want, err)
		}
	}
	inUse, err := ts.KeyIDsInUse(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if inUse[oldID] != 0 || inUse[newID] == 0 || inUse[0] == 0 {
		t.Fatalf("key ids in use %v: want the readable files on %d, and the unreadable counted as unknown", inUse, newID)
	}

	var bad []string
	n, err := ts.Verify(t.Context(), "", func(p string, err error) { bad = append(bad, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 2 || n < 5 {
		t.Fatalf("verify: %d checked, reported %v; want the 2 failures and every other file checked", n, bad)
	}
}
