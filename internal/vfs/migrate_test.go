package vfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

// TestMigrate: a version 1 store with nested directories, files of
// several sizes, client modes and times, dead properties and a shared
// folder becomes a version 2 store with the same client view; a second
// run copies nothing; a run interrupted part-way resumes.
func TestMigrate(t *testing.T) {
	kr, _ := envelope.NewKeyring()
	key := make([]byte, IndexKeySize)
	rand.Read(key)
	base := t.TempDir()
	src, err := NewStore(filepath.Join(base, "v1"), Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, _ := src.Home("alice", HomeOptions{Perm: PermAll})
	mt := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	files := map[string][]byte{}
	f.MkdirAll("docs/2026/deep", 0o750)
	for i, n := range []int{0, 1, 65536, 200_000, 5<<20 + 7} {
		b := make([]byte, n)
		rand.Read(b)
		name := []string{"empty", "docs/one", "docs/2026/chunk", "docs/2026/deep/multi", "big"}[i]
		files[name] = b
		writeFile(t, f, name, b)
		f.Chtimes(name, mt, mt)
	}
	f.Chmod("docs/one", 0o400)
	f.Chmod("docs/2026", 0o700)
	f.Chtimes("docs", mt, mt)
	f.UpdateMeta("docs/one", func(m *Meta) error { m.Props = map[string]string{"{urn:x}note": "kept"}; return nil })
	team, _ := src.Folder("team", HomeOptions{Perm: PermAll})
	writeFile(t, team, "shared.txt", []byte("folder content"))

	dst, err := NewStore(filepath.Join(base, "v2"), Options{Keyring: kr, Storage: StorageV2, IndexKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	// Interrupted after two files ...
	ctx, cancel := context.WithCancel(t.Context())
	_, err = Migrate(ctx, src, dst, func(p MigrateProgress) {
		if p.Files == 2 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("a cancelled migration reported success")
	}
	// ... then resumed: the files done are not copied again.
	p, err := Migrate(t.Context(), src, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Trees != 2 || p.Files != 6 || p.Skipped < 1 {
		t.Errorf("resumed migration: %+v", p)
	}
	g, _ := dst.Home("alice", HomeOptions{Perm: PermAll})
	for name, b := range files {
		if got := readFile(t, g, name); !bytes.Equal(got, b) {
			t.Errorf("%s differs after migration", name)
		}
		if fi, err := g.Stat(name); err != nil || !fi.ModTime().Equal(mt) {
			t.Errorf("%s: time %v %v", name, fi.ModTime(), err)
		}
	}
	if fi, _ := g.Stat("docs/one"); fi.Mode().Perm() != 0o400 {
		t.Errorf("docs/one mode %v", fi.Mode())
	}
	for _, d := range []string{"docs", "docs/2026", "docs/2026/deep", "/"} {
		want, _ := f.Stat(d)
		if fi, _ := g.Stat(d); !fi.ModTime().Equal(want.ModTime()) {
			t.Errorf("%s: time %v, the original's %v", d, fi.ModTime(), want.ModTime())
		}
	}
	if fi, _ := g.Stat("docs/2026"); fi.Mode().Perm() != 0o700 {
		t.Errorf("docs/2026 mode %v", fi.Mode())
	}
	if m, _ := g.Meta("docs/one"); m.Props["{urn:x}note"] != "kept" {
		t.Errorf("dead property lost: %+v", m)
	}
	tf, _ := dst.Folder("team", HomeOptions{Perm: PermAll})
	if got := readFile(t, tf, "shared.txt"); string(got) != "folder content" {
		t.Errorf("folder file %q", got)
	}
	// Everything is there: a second run copies nothing.
	p, err = Migrate(t.Context(), src, dst, nil)
	if err != nil || p.Skipped != p.Files {
		t.Errorf("a second run: %+v %v", p, err)
	}
	if n, err := dst.Verify(t.Context(), "", func(p string, err error) { t.Errorf("damaged %s: %v", p, err) }); err != nil || n < 6 {
		t.Errorf("verify: %d %v", n, err)
	}
}

// TestMigrateGolden: the files of the golden version 1 store
// (testdata/stores/v1, written once when format version 1 was released)
// that are bound to a home, placed in a home of a store as version 1
// kept them, migrate to storage v2 and read back as the MANIFEST says.
func TestMigrateGolden(t *testing.T) {
	const golden = "../../testdata/stores/v1"
	krData, err := os.ReadFile(filepath.Join(golden, "keyring"))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := envelope.ParseKeyring(krData, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	home := filepath.Join(base, "v1", "alice")
	os.MkdirAll(home, 0o700)
	want := map[string]string{}
	manifest, _ := os.ReadFile(filepath.Join(golden, "MANIFEST"))
	for _, line := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 { // not bound to a home: not a file a store holds
			continue
		}
		b, err := os.ReadFile(filepath.Join(golden, "files", f[0]))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(home, f[0]), b, 0o600)
		want[f[0]] = f[1] + " " + f[2]
	}
	if len(want) == 0 {
		t.Fatal("no golden file bound to a home")
	}
	src, err := NewStore(filepath.Join(base, "v1"), Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	key := make([]byte, IndexKeySize)
	rand.Read(key)
	dst, err := NewStore(filepath.Join(base, "v2"), Options{Keyring: kr, Storage: StorageV2, IndexKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if p, err := Migrate(t.Context(), src, dst, nil); err != nil || p.Files != len(want) {
		t.Fatalf("migrate: %+v %v", p, err)
	}
	g, _ := dst.Home("alice", HomeOptions{Perm: PermAll})
	for name, w := range want {
		b := readFile(t, g, name)
		if got := fmt.Sprintf("%d %x", len(b), sha256.Sum256(b)); got != w {
			t.Errorf("%s: %s, the MANIFEST says %s", name, got, w)
		}
	}
}
