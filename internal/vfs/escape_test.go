package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEscapeNames: hostile client names never reach outside the home, and
// every refusal is a *fs.PathError carrying the client name.
func TestEscapeNames(t *testing.T) {
	ts := newStore(t)
	alice := ts.home(t, "alice", HomeOptions{})
	bob := ts.home(t, "bob", HomeOptions{})
	writeFile(t, bob, "secret", []byte("bob's secret"))
	// A file at the store's top level, next to the homes.
	if err := os.WriteFile(filepath.Join(ts.dir, "toplevel"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		want string // category: the name must not resolve outside the home
	}{
		{"../bob/secret", "notexist"},
		{"../../bob/secret", "notexist"},
		{"/../bob/secret", "notexist"},
		{"a/../../bob/secret", "notexist"},
		{"../toplevel", "notexist"},
		{"/etc/passwd", "notexist"},
		{"..\\bob\\secret", "perm"},
		{"..\\..\\etc\\passwd", "perm"},
		{"a\\b", "perm"},
		{"secret\x00.txt", "perm"},
		{"\x00", "perm"},
		{strings.Repeat("n", 256), "perm"},
		{strings.Repeat("d/", 2100) + "f", "perm"},
		{".securefsd-meta", "perm"},
		{".securefsd-tmp/x", "perm"},
		{"d/.securefsd-meta", "perm"},
		{".securefsdanything", "perm"},
	}
	for _, tc := range tests {
		ops := map[string]func() error{
			"open":     func() error { _, err := alice.Open(tc.name); return err },
			"stat":     func() error { _, err := alice.Stat(tc.name); return err },
			"lstat":    func() error { _, err := alice.Lstat(tc.name); return err },
			"readdir":  func() error { _, err := alice.ReadDir(tc.name); return err },
			"remove":   func() error { return alice.Remove(tc.name) },
			"chmod":    func() error { return alice.Chmod(tc.name, 0o777) },
			"chtimes":  func() error { return alice.Chtimes(tc.name, time.Now(), time.Now()) },
			"truncate": func() error { return alice.Truncate(tc.name, 0) },
			"rename":   func() error { return alice.Rename(tc.name, "stolen", true) },
			"meta":     func() error { _, err := alice.Meta(tc.name); return err },
		}
		for op, fn := range ops {
			t.Run(op+"/"+strings.ReplaceAll(tc.name, "/", "|")[:min(40, len(tc.name))], func(t *testing.T) {
				err := fn()
				if err == nil {
					t.Fatalf("%s %q succeeded", op, tc.name)
				}
				mustPathErr(t, err, tc.name)
				if got := category(err); got != tc.want && !(tc.want == "notexist" && got == "notdir") {
					t.Fatalf("%s %q: %v (%s), want %s", op, tc.name, err, got, tc.want)
				}
			})
		}
		// Creating must not land outside either (or under a reserved name).
		if h, err := alice.Create(tc.name); err == nil {
			h.Abort()
			if tc.want == "perm" {
				t.Errorf("create %q succeeded", tc.name)
			}
		}
	}
	if got := readFile(t, bob, "secret"); string(got) != "bob's secret" {
		t.Fatalf("bob's file changed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "stolen")); err == nil {
		t.Fatal("a file appeared at the store top level")
	}
	// Reserved names never show in listings.
	writeFile(t, alice, "d/../visible", []byte("v"))
	alice.UpdateMeta("visible", func(m *Meta) error { m.Props = map[string]string{"{x}y": "z"}; return nil })
	list, err := alice.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range list {
		if isReserved(fi.Name()) {
			t.Fatalf("reserved entry %q listed", fi.Name())
		}
	}
	if err := alice.Symlink("secret", "link"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("symlink: %v", err)
	}
}

// TestEscapeSymlinks: symlinks planted in a home (pointing to another
// user's home, to /etc, to a directory outside the store) are reported by
// Lstat and refused by every other operation; their targets are untouched.
func TestEscapeSymlinks(t *testing.T) {
	v1Only(t)
	ts := newStore(t)
	alice := ts.home(t, "alice", HomeOptions{})
	bob := ts.home(t, "bob", HomeOptions{})
	writeFile(t, bob, "secret", []byte("bob's secret"))
	outside := t.TempDir()
	decoy := filepath.Join(outside, "decoy")
	os.WriteFile(decoy, []byte("outside"), 0o644)
	if err := alice.Mkdir("sub", 0o755); err != nil {
		t.Fatal(err)
	}
	ah := filepath.Join(ts.dir, "alice")
	plant := map[string]string{
		"tobob":      "../bob",
		"tobobabs":   filepath.Join(ts.dir, "bob"),
		"bobsecret":  "../bob/secret",
		"etc":        "/etc",
		"passwd":     "/etc/passwd",
		"out":        outside,
		"outfile":    decoy,
		"sub/up":     "../../bob",
		"sub/dangle": "../../bob/newfile",
		"store":      "..",
		"tmplink":    ".securefsd-tmp",
		"loop":       "loop",
	}
	for name, target := range plant {
		if err := os.Symlink(target, filepath.Join(ah, name)); err != nil {
			t.Fatal(err)
		}
	}
	targets := []string{
		"tobob/secret", "tobobabs/secret", "bobsecret", "etc/passwd", "passwd", "out/decoy",
		"outfile", "sub/up/secret", "store/bob/secret", "tmplink", "loop",
	}
	for _, name := range targets {
		t.Run(strings.ReplaceAll(name, "/", "|"), func(t *testing.T) {
			refused := func(op string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s %q succeeded", op, name)
				}
				mustPathErr(t, err, name)
				if c := category(err); c != "perm" && c != "notexist" && c != "notdir" {
					t.Fatalf("%s %q: unexpected %v", op, name, err)
				}
			}
			_, err := alice.Open(name)
			refused("open", err)
			_, err = alice.Stat(name)
			refused("stat", err)
			_, err = alice.ReadDir(name)
			refused("readdir", err)
			h, err := alice.OpenFile(name, os.O_RDWR, 0)
			if err == nil {
				h.Close()
			}
			refused("open rdwr", err)
			h, err = alice.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
			if err == nil {
				h.Close()
			}
			refused("open trunc", err)
			refused("truncate", alice.Truncate(name, 0))
			refused("chmod", alice.Chmod(name, 0o777))
			refused("chtimes", alice.Chtimes(name, time.Unix(1, 0), time.Unix(1, 0)))
			_, err = alice.Checksums(t.Context(), name)
			refused("checksums", err)
		})
	}
	// Creating through a link must not create outside.
	for _, name := range []string{"tobob/new", "out/new", "sub/up/new", "sub/dangle", "tobobabs/new"} {
		h, err := alice.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			h.Write([]byte("x"))
			h.Close()
		}
		if err == nil {
			t.Errorf("create %q succeeded", name)
		}
		if err := alice.Mkdir(name+"/dir", 0o755); err == nil {
			t.Errorf("mkdir %q succeeded", name+"/dir")
		}
	}
	// Renames into or out of links fail.
	writeFile(t, alice, "mine", []byte("mine"))
	for _, pair := range [][2]string{{"mine", "tobob/stolen"}, {"tobob/secret", "stolen"}, {"mine", "out/stolen"}} {
		if err := alice.Rename(pair[0], pair[1], true); err == nil {
			t.Errorf("rename %q -> %q succeeded", pair[0], pair[1])
		}
	}
	// Lstat reports the links as links; Readlink never reveals targets.
	for name := range plant {
		fi, err := alice.Lstat(name)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("lstat %q: %v %v", name, fi, err)
		}
		if _, err := alice.Readlink(name); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("readlink %q: %v", name, err)
		}
	}
	// Removing a planted link removes the link, not its target.
	if err := alice.Remove("bobsecret"); err != nil {
		t.Fatal(err)
	}
	if err := alice.RemoveAll("tobob"); err != nil {
		t.Fatal(err)
	}
	if err := alice.RemoveAll("out"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, bob, "secret"); string(got) != "bob's secret" {
		t.Fatalf("bob's file changed: %q", got)
	}
	if _, err := bob.Stat("newfile"); err == nil {
		t.Fatal("a file was created in bob's home")
	}
	if got, _ := os.ReadFile(decoy); !bytes.Equal(got, []byte("outside")) {
		t.Fatalf("outside file changed: %q", got)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Fatalf("outside dir now has %d entries", len(ents))
	}
}

// TestSymlinkedDirInside: even a planted link to a directory inside the
// same home is never followed (policy: planted symlinks are not followed
// at all), while the link itself can be listed, stat'ed and removed.
func TestSymlinkedDirInside(t *testing.T) {
	v1Only(t)
	for _, openat2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("openat2=%v", openat2), func(t *testing.T) { testSymlinkedDirInside(t, openat2) })
	}
}

func testSymlinkedDirInside(t *testing.T, openat2 bool) {
	ts, f := newFS(t)
	if !openat2 {
		f.h.dirfd = -1 // the os.Root + /proc fallback
	}
	if err := f.MkdirAll("real", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f, "real/file", []byte("inside"))
	home := filepath.Join(ts.dir, "alice")
	os.Symlink("real", filepath.Join(home, "alias"))
	os.Symlink("real/file", filepath.Join(home, "filealias"))
	for _, name := range []string{"alias/file", "filealias", "alias"} {
		if _, err := f.Open(name); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("open %s: %v", name, err)
		}
		if _, err := f.Stat(name); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("stat %s: %v", name, err)
		}
	}
	if _, err := f.ReadDir("alias"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("readdir alias: %v", err)
	}
	if _, err := f.Create("alias/new"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("create through alias: %v", err)
	}
	if err := f.Rename("alias/file", "moved", false); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("rename through alias: %v", err)
	}
	if err := f.Remove("alias/file"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("remove through alias: %v", err)
	}
	if err := f.MkdirAll("alias/x/y", 0o755); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("mkdirall through alias: %v", err)
	}
	list, _ := f.ReadDir("/")
	if describeList(list) == "" {
		t.Fatal("empty listing")
	}
	if err := f.Remove("alias"); err != nil {
		t.Fatalf("remove the link itself: %v", err)
	}
	if got := readFile(t, f, "real/file"); string(got) != "inside" {
		t.Fatalf("target changed: %q", got)
	}
}
