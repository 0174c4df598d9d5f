package users

import (
	"fmt"
	"strings"
)

// Perm is a set of rights a user has on their home tree.
type Perm uint32

// The rights. Protocol adapters check them before calling into the vfs.
const (
	PermList      Perm = 1 << iota // list directories, stat
	PermDownload                   // read file contents
	PermUpload                     // create new files
	PermOverwrite                  // replace or truncate existing files
	PermDelete                     // remove files and directories
	PermRename                     // rename and move
	PermMkdir                      // create directories
	PermChmod                      // change modes and times
)

// PermReadOnly lets a user list and download.
const PermReadOnly = PermList | PermDownload

// PermAll is every right.
const PermAll = PermList | PermDownload | PermUpload | PermOverwrite | PermDelete | PermRename | PermMkdir | PermChmod

var permNames = [...]string{"list", "download", "upload", "overwrite", "delete", "rename", "mkdir", "chmod"}

// Has reports whether p includes every right in q.
func (p Perm) Has(q Perm) bool { return p&q == q }

// String lists the rights comma-separated in a fixed order ("list,download"),
// "none" for no rights. Bits without a name print as 0x... so nothing is
// hidden.
func (p Perm) String() string {
	if p == 0 {
		return "none"
	}
	var b strings.Builder
	for i, n := range permNames {
		if p&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	if rest := p &^ PermAll; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%#x", uint32(rest))
	}
	return b.String()
}

// ParsePerm parses a comma-separated list of rights as printed by String,
// plus the shorthands "all", "read-only" (also "readonly", "ro"),
// "read-write" ("rw", same as all) and "none". Case and spaces are ignored.
func ParsePerm(s string) (Perm, error) {
	var p Perm
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "", "none":
			continue
		case "all", "rw", "read-write", "readwrite":
			p |= PermAll
			continue
		case "ro", "read-only", "readonly":
			p |= PermReadOnly
			continue
		}
		found := false
		for i, n := range permNames {
			if f == n {
				p |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("users: unknown permission %q (want %s): %w", f, strings.Join(permNames[:], ","), ErrInvalid)
		}
	}
	return p, nil
}

// MarshalText encodes p as String does, so JSON shows names.
func (p Perm) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the String form (see ParsePerm).
func (p *Perm) UnmarshalText(b []byte) error {
	q, err := ParsePerm(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
