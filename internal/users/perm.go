package users

import (
	"fmt"

	"github.com/securefsd/securefsd/internal/perm"
)

// Perm is a set of rights a user has on their home tree. It is perm.Perm:
// vfs enforces the same type, so a user's rights reach the store without a
// conversion. The rights' meanings are documented in package perm.
type Perm = perm.Perm

// The rights (see package perm for what each allows).
const (
	PermList      = perm.List
	PermDownload  = perm.Download
	PermUpload    = perm.Upload
	PermOverwrite = perm.Overwrite
	PermDelete    = perm.Delete
	PermRename    = perm.Rename
	PermMkdir     = perm.Mkdir
	PermChmod     = perm.Chmod
)

// PermReadOnly lets a user list and download.
const PermReadOnly = perm.ReadOnly

// PermAll is every right.
const PermAll = perm.All

// ParsePerm is perm.Parse with errors that match ErrInvalid.
func ParsePerm(s string) (Perm, error) {
	p, err := perm.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}
