// Package account maps a user record to that user's view of the store: the
// one place where users meets vfs (neither may import the other). Every
// protocol opens a user's home through Open, so the quota, the rights and
// the home directory are derived the same way for SFTP, WebDAV and the
// browser.
package account

import (
	"context"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Dir is u's home directory in the store: u.Home, or the name for records
// that have none.
func Dir(u users.User) string {
	if u.Home == "" {
		return u.Name
	}
	return u.Home
}

// Options are the vfs options of u's home: u's quota and rights.
func Options(u users.User) vfs.HomeOptions {
	return vfs.HomeOptions{
		Quota: vfs.Quota{Bytes: u.QuotaBytes, Files: u.QuotaFiles},
		Perm:  u.Perms,
	}
}

// Open opens (creating if needed) u's home with u's current quota and
// rights.
func Open(store *vfs.Store, u users.User) (*vfs.FS, error) {
	return store.Home(Dir(u), Options(u))
}

// Folders is what OpenView needs of the user database: the folders a user
// may reach and their rights there (users.DB.Access).
type Folders interface {
	Access(ctx context.Context, user string) ([]users.FolderAccess, error)
}

// OpenView opens u's view of the store: the home (Open) and, under the
// store's shared prefix, every folder u may reach with the union of u's
// grants there and the folder's quota. It reads the grants now: protocols
// call it again after the user database's revision moves, so a grant or a
// revocation applies at the next request. An error reading the grants
// fails the whole view (closed, never a home without its restrictions).
func OpenView(ctx context.Context, store *vfs.Store, db Folders, u users.User) (*vfs.FS, error) {
	home, err := Open(store, u)
	if err != nil {
		return nil, err
	}
	acc, err := db.Access(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	return viewOf(store, home, acc)
}

// OpenViewWith is OpenView with the folders u may reach already read
// (users.DB.Access).
func OpenViewWith(store *vfs.Store, u users.User, acc []users.FolderAccess) (*vfs.FS, error) {
	home, err := Open(store, u)
	if err != nil {
		return nil, err
	}
	return viewOf(store, home, acc)
}

func viewOf(store *vfs.Store, home *vfs.FS, acc []users.FolderAccess) (*vfs.FS, error) {
	folders := make(map[string]*vfs.FS, len(acc))
	for _, a := range acc {
		f, err := store.Folder(a.Folder, vfs.HomeOptions{Perm: a.Perms, Quota: vfs.Quota{Bytes: a.QuotaBytes, Files: a.QuotaFiles}})
		if err != nil {
			return nil, err
		}
		folders[a.Folder] = f
	}
	return store.View(home, folders), nil
}
