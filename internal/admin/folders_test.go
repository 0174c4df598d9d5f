package admin

import (
	"context"
	"errors"
	"testing"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// TestFolders runs the folder and group operations locally and over the
// socket: errors keep their kinds, a purge is resumable, and a name whose
// files were left by a delete without purge is refused until purged.
func TestFolders(t *testing.T) {
	for _, via := range []string{"local", "socket"} {
		t.Run(via, func(t *testing.T) {
			l, dir := newLocal(t)
			var m Manager = l
			if via == "socket" {
				m = serveSocket(t, l, dir)
			}
			f := m.(FolderManager)
			ctx := context.Background()
			if err := m.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("pw-1-long-secret")}); err != nil {
				t.Fatal(err)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(f.AddFolder(ctx, FolderRequest{Name: "case", QuotaFiles: 5}))
			if err := f.AddFolder(ctx, FolderRequest{Name: "case"}); !errors.Is(err, users.ErrExists) {
				t.Errorf("second add: %v", err)
			}
			must(f.AddGroup(ctx, "staff"))
			must(f.SetMembers(ctx, "staff", []string{"alice"}, nil))
			must(f.Grant(ctx, "case", "@staff", "ro"))
			must(f.Grant(ctx, "case", "alice", "upload,manage"))
			if err := f.Grant(ctx, "case", "bob", "ro"); !errors.Is(err, users.ErrNotFound) {
				t.Errorf("grant to an unknown user: %v", err)
			}
			if err := f.Grant(ctx, "case", "alice", "ro,own"); !errors.Is(err, users.ErrInvalid) {
				t.Errorf("unknown right: %v", err)
			}
			fs, err := f.ListFolders(ctx)
			if err != nil || len(fs) != 1 || len(fs[0].Grants) != 2 || !fs[0].Grants[1].Manage || fs[0].QuotaFiles != 5 {
				t.Fatalf("list: %+v %v", fs, err)
			}
			gs, err := f.ListGroups(ctx)
			if err != nil || len(gs) != 1 || len(gs[0].Members) != 1 {
				t.Fatalf("groups: %+v %v", gs, err)
			}
			acc, _ := l.Users.Access(ctx, "alice")
			if len(acc) != 1 || acc[0].Perms != users.PermReadOnly|users.PermUpload || !acc[0].Manage {
				t.Errorf("alice's access: %+v", acc)
			}
			must(f.Revoke(ctx, "case", "alice"))
			must(f.DeleteGroup(ctx, "staff"))

			// Files of the folder, then a delete without purge: the name
			// stays taken by its files until a purge.
			ff, err := l.Store.Folder("case", vfs.HomeOptions{Perm: vfs.PermAll})
			must(err)
			w, err := ff.Create("/f")
			must(err)
			must(w.Close())
			must(f.DeleteFolder(ctx, "case", false))
			if err := f.AddFolder(ctx, FolderRequest{Name: "case"}); !errors.Is(err, users.ErrExists) {
				t.Errorf("add over a deleted folder's files: %v", err)
			}
			must(f.DeleteFolder(ctx, "case", true)) // record gone already: purges the files
			if has, _ := l.Store.HasFolder("case"); has {
				t.Error("files remain after the purge")
			}
			if err := f.DeleteFolder(ctx, "case", true); !errors.Is(err, users.ErrNotFound) {
				t.Errorf("purge of nothing: %v", err)
			}
			must(f.AddFolder(ctx, FolderRequest{Name: "case"}))
		})
	}
}
