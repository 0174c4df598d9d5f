package sftpd

import (
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// FuzzRequestPaths drives the SFTP handlers with arbitrary paths, open
// flags and attributes, as pkg/sftp would deliver them (paths cleaned by
// sftp.NewRequest), and checks that nothing panics and nothing escapes the
// home: the store's other directories and the files beside it never
// change, and every path an operation created is inside the home. One
// store is shared by all iterations; each does at most two operations on
// a few bytes.
func FuzzRequestPaths(f *testing.F) {
	seeds := []struct {
		op        byte
		p, target string
		flags     uint32
		attrs     []byte
		off       uint32
	}{
		{0, "/a", "", 0x1a, nil, 0}, // write, creat|trunc
		{1, "../../etc/passwd", "", 0x01, nil, 0},
		{2, "/d", "", 0, nil, 0},
		{3, "/a", "/../../outside", 0, nil, 0},
		{4, "/a", "/b", 0, nil, 0},
		{5, "/a", "", 0x04 | 0x08, []byte{0, 0, 1, 0xa4, 0, 0, 0, 1, 0, 0, 0, 2}, 0},
		{6, "..", "", 0, nil, 0},
		{7, "/../..", "/x", 0, nil, 0},
		{0, "/d/../../e", "", 0x3a, nil, 70000},
		{5, "/a", "", 0x01, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0},
	}
	for _, s := range seeds {
		f.Add(s.op, s.p, s.target, s.flags, s.attrs, s.off)
	}
	dir := f.TempDir()
	kr, err := envelope.NewKeyring()
	if err != nil {
		f.Fatal(err)
	}
	storeDir := filepath.Join(dir, "store")
	store := fixture.Store(f, storeDir, vfs.Options{Keyring: kr, Logger: slog.New(slog.DiscardHandler)})
	home, err := store.Home("alice", vfs.HomeOptions{Perm: vfs.PermAll, Quota: vfs.Quota{Bytes: 1 << 20, Files: 200}})
	if err != nil {
		f.Fatal(err)
	}
	other, err := store.Home("bob", vfs.HomeOptions{Perm: vfs.PermAll})
	if err != nil {
		f.Fatal(err)
	}
	writeVFS(f, other, "secret", []byte("bob's"))
	if err := os.WriteFile(filepath.Join(dir, "outside"), []byte("x"), 0o600); err != nil {
		f.Fatal(err)
	}
	listing := func(d string) []string {
		es, _ := os.ReadDir(d)
		var out []string
		for _, e := range es {
			fi, _ := e.Info()
			if d == storeDir && e.Name() == "alice" {
				// alice may chmod her own home ("/"); only its
				// existence matters here.
				out = append(out, e.Name())
				continue
			}
			out = append(out, e.Name()+":"+fi.Mode().String())
		}
		return out
	}
	homeDir := filepath.Join(storeDir, "alice")
	wantDir, wantStore, wantBob := listing(dir), listing(storeDir), listing(filepath.Join(storeDir, "bob"))
	ss := &session{acc: staticAccess(home, users.PermAll), user: "alice", log: slog.New(slog.DiscardHandler)}
	h := &handlers{s: ss, fs: home}

	f.Fuzz(func(t *testing.T, op byte, p, target string, flags uint32, attrs []byte, off uint32) {
		r := sftp.NewRequest("", p)
		r.Target = path.Clean("/" + target)
		r.Flags = flags
		r.Attrs = attrs
		var err error
		created := ""
		switch op % 10 {
		case 0, 1: // open for write / read+write, write a few bytes
			flag := os.O_WRONLY
			if op%10 == 1 {
				flag = os.O_RDWR
			}
			var w *transfer
			if w, err = h.openWrite(r, flag); err == nil {
				w.WriteAt([]byte("fuzz"), int64(off%(128<<10)))
				err = w.Close()
				created = r.Filepath
			}
		case 2:
			var ra *transfer
			if ra, err = h.openRead(r); err == nil {
				ra.ReadAt(make([]byte, 16), int64(off%(128<<10)))
				ra.Close()
			}
		case 3, 4, 5, 6:
			r.Method = []string{"Mkdir", "Rename", "Setstat", "Remove"}[op%10-3]
			if op%10 == 3 {
				r.Method = []string{"Mkdir", "Symlink", "Rmdir"}[off%3]
			}
			err = h.Filecmd(r)
			switch r.Method {
			case "Mkdir":
				created = r.Filepath
			case "Rename":
				created = r.Target
			}
		case 7:
			err = h.PosixRename(r)
			created = r.Target
		case 8:
			r.Method = []string{"List", "Stat"}[off%2]
			var l sftp.ListerAt
			if l, err = h.Filelist(r); err == nil {
				l.ListAt(make([]os.FileInfo, 4), 0)
				if c, ok := l.(io.Closer); ok {
					c.Close()
				}
			}
		case 9:
			h.Lstat(r)
			h.Readlink(r.Filepath)
			if rp, _ := h.RealPath(p); !path.IsAbs(rp) || path.Clean(rp) != rp {
				t.Errorf("RealPath(%q) = %q", p, rp)
			}
		}
		if err == nil && created != "" {
			if created == "/" {
				return
			}
			full := filepath.Join(homeDir, filepath.FromSlash(created))
			if _, serr := os.Lstat(full); serr != nil || !isWithin(homeDir, full) {
				t.Errorf("op %d on %q (target %q) succeeded, but %s is not in the home: %v", op%10, p, target, created, serr)
			}
		}
		if got := listing(dir); !slices.Equal(got, wantDir) {
			t.Fatalf("op %d on %q (target %q) changed the store's parent: %v", op%10, p, target, got)
		}
		if got := listing(storeDir); !slices.Equal(got, wantStore) {
			t.Fatalf("op %d on %q (target %q) changed the store root: %v", op%10, p, target, got)
		}
		if got := listing(filepath.Join(storeDir, "bob")); !slices.Equal(got, wantBob) {
			t.Fatalf("op %d on %q (target %q) changed another home: %v", op%10, p, target, got)
		}
	})
}

func isWithin(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}
