// Package account maps a user record to that user's view of the store: the
// one place where users meets vfs (neither may import the other). Every
// protocol opens a user's home through Open, so the quota, the rights and
// the home directory are derived the same way for SFTP, WebDAV and the
// browser.
package account

import (
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
