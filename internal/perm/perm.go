// Package perm defines the rights a user has on their home tree: the one
// permission type that users stores and vfs enforces. It is a leaf: it
// imports nothing of ours, so both can import it (users must not import vfs,
// nor vfs users; scripts/check-imports.sh).
//
// The bit values are stored in users.db: never renumber them.
package perm

import (
	"errors"
	"fmt"
	"strings"
)

// Perm is a set of rights. The zero value grants nothing (fail closed).
type Perm uint32

// The rights, as vfs enforces them. Every FS operation not named here needs
// no right: Stat, Lstat, Meta and Usage (a client must stat a name to upload
// or download it, so List does not gate them).
const (
	// List: read a directory's entries (ReadDir, ReadDirMeta, an open
	// directory's Readdir).
	List Perm = 1 << iota
	// Download: open a file for reading; compute its digests (Checksums;
	// digests already cached are readable with Download or Upload).
	Download
	// Upload: create a new file and write to it; set times (Chtimes: scp -p
	// and rclone set them after an upload); change metadata (UpdateMeta,
	// e.g. WebDAV dead properties: Upload or Overwrite).
	Upload
	// Overwrite: write to, truncate or replace an existing file, or rename
	// over one; change metadata (as Upload).
	Overwrite
	// Delete: remove files and directories.
	Delete
	// Rename: rename and move.
	Rename
	// Mkdir: create directories.
	Mkdir
	// Chmod: change permission bits (times need Upload).
	Chmod
)

// ReadOnly lets a user list and download.
const ReadOnly = List | Download

// All is every right.
const All = List | Download | Upload | Overwrite | Delete | Rename | Mkdir | Chmod

// names are the rights' names, bit i at index i.
var names = [...]string{"list", "download", "upload", "overwrite", "delete", "rename", "mkdir", "chmod"}

// ErrUnknown means a name that is no right.
var ErrUnknown = errors.New("unknown permission")

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
	for i, n := range names {
		if p&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	if rest := p &^ All; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%#x", uint32(rest))
	}
	return b.String()
}

// Parse parses a comma-separated list of rights as printed by String, plus
// the shorthands "all", "read-only" (also "readonly", "ro"), "read-write"
// ("rw", same as all) and "none". Case and spaces are ignored.
func Parse(s string) (Perm, error) {
	var p Perm
	for f := range strings.SplitSeq(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "", "none":
			continue
		case "all", "rw", "read-write", "readwrite":
			p |= All
			continue
		case "ro", "read-only", "readonly":
			p |= ReadOnly
			continue
		}
		found := false
		for i, n := range names {
			if f == n {
				p |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("%w %q (want %s)", ErrUnknown, f, strings.Join(names[:], ","))
		}
	}
	return p, nil
}

// MarshalText encodes p as String does, so JSON shows names.
func (p Perm) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the String form (see Parse).
func (p *Perm) UnmarshalText(b []byte) error {
	q, err := Parse(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
