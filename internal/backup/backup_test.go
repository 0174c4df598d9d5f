package backup

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// snapshot writes files (path → content) into dir/id, hard-linking those
// named in linkFrom (an earlier snapshot) as the server's snapshots do for
// unchanged files.
func snapshot(t *testing.T, dir, id string, files map[string]string, linkFrom string) string {
	t.Helper()
	snap := filepath.Join(dir, id)
	for p, data := range files {
		dst := filepath.Join(snap, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(dst), 0o700)
		if linkFrom != "" && data == "" {
			if err := os.Link(filepath.Join(linkFrom, filepath.FromSlash(p)), dst); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(dst, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ManifestName {
			return err
		}
		b, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	return out
}

func TestCopyResumeIncrementalRestore(t *testing.T) {
	work, dest := t.TempDir(), t.TempDir()
	files := map[string]string{"users.db": "db", "store/alice/a": "aaaa", "store/alice/d/b": "bbbb", "store/.securefsd-folders/case/c": "cc"}
	for i := range 20 {
		files["store/bob/f"+strings.Repeat("x", i)] = strings.Repeat("y", i)
	}
	snap1 := snapshot(t, work, "20261204T010000Z", files, "")

	// Stop after 5 files (as a kill would), then resume.
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Copy(ctx, snap1, dest, func(p Progress) {
		if p.Files == 5 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped copy: %v", err)
	}
	res, err := Copy(context.Background(), snap1, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 5 || res.Files != len(files) {
		t.Errorf("resumed run: %+v", res.Progress)
	}
	if got := readTree(t, res.Dir); len(got) != len(files) || got["store/alice/d/b"] != "bbbb" {
		t.Fatalf("backup content: %v", got)
	}
	if _, err := Copy(context.Background(), snap1, dest, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("the same backup again: %v", err)
	}

	// A later snapshot: everything unchanged (linked) but one file.
	later := map[string]string{}
	for p := range files {
		later[p] = ""
	}
	later["store/alice/a"] = "changed"
	snap2 := snapshot(t, work, "20261204T020000Z", later, snap1)
	res2, err := Copy(context.Background(), snap2, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Linked != len(files)-1 {
		t.Errorf("incremental: %d linked, want %d", res2.Linked, len(files)-1)
	}

	// Restore into a fresh directory; not into a used one.
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(res2.Dir, dir); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dir)
	if got["store/alice/a"] != "changed" || got["users.db"] != "db" || len(got) != len(files) {
		t.Errorf("restored: %v", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "store/alice/a")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored file mode: %v %v", fi, err)
	}
	if _, err := Restore(res2.Dir, dir); err == nil {
		t.Error("restore into a non-empty directory succeeded")
	}
	// The backup that linked is unaffected by restoring (copies, not links).
	os.WriteFile(filepath.Join(dir, "users.db"), []byte("new"), 0o600)
	if b, _ := os.ReadFile(filepath.Join(res2.Dir, "users.db")); !bytes.Equal(b, []byte("db")) {
		t.Error("writing the restored directory changed the backup")
	}
}

// TestRestoreRefusesDamage: a partial backup, a symlink planted in the
// backup, a file cut short, and a manifest naming a path outside the
// backup are refused.
func TestRestoreRefusesDamage(t *testing.T) {
	work, dest := t.TempDir(), t.TempDir()
	snap := snapshot(t, work, "20261204T010000Z", map[string]string{"users.db": "db", "store/a": "aaaa"}, "")
	res, err := Copy(context.Background(), snap, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(res.Dir+partialSuffix, filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("restore of a .partial succeeded")
	}
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("SECR"), 0o600) // the size the manifest says
	os.Remove(filepath.Join(res.Dir, "store/a"))
	os.Symlink(outside, filepath.Join(res.Dir, "store/a"))
	if _, err := Restore(res.Dir, filepath.Join(t.TempDir(), "w")); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("restore through a planted symlink: %v", err)
	}
	os.Remove(filepath.Join(res.Dir, "store/a"))
	os.WriteFile(filepath.Join(res.Dir, "store/a"), []byte("aa"), 0o600)
	if _, err := Restore(res.Dir, filepath.Join(t.TempDir(), "y")); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("restore of a cut file: %v", err)
	}
	os.WriteFile(filepath.Join(res.Dir, ManifestName), []byte(`{"p":"../../etc/evil","s":1}`+"\n"), 0o600)
	if _, err := Restore(res.Dir, filepath.Join(t.TempDir(), "z")); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("restore of a manifest escaping the backup: %v", err)
	}
}

// FuzzManifest: whatever a manifest holds (a damaged or hostile backup),
// reading it never panics, and Restore never writes outside the target.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"p":"store/a","s":4,"t":"2026-12-04T00:00:00Z","i":1,"m":384}` + "\n"))
	f.Add([]byte(`{"p":"../../x","s":1}` + "\n" + `{"p":"/etc/passwd","s":1}`))
	f.Add([]byte("{\"p\":\"a\x00b\"}\n{"))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, ManifestName), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readManifest(filepath.Join(src, ManifestName)); err != nil {
			return
		}
		parent := t.TempDir()
		dir := filepath.Join(parent, "restored")
		Restore(src, dir)
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if e.Name() != "restored" {
				t.Fatalf("restore wrote %q outside its directory", e.Name())
			}
		}
	})
}
