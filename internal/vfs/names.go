package vfs

import (
	"io/fs"
	"path"
	"strings"
)

const (
	// reservedPrefix starts every name the store uses for itself.
	reservedPrefix = ".securefsd"
	tmpDirName     = ".securefsd-tmp"
	metaFileName   = ".securefsd-meta"
	maxNameLen     = 255
	maxPathLen     = 4096
)

// isReserved reports whether a single path element is reserved.
func isReserved(elem string) bool { return strings.HasPrefix(elem, reservedPrefix) }

// cleanName turns a client name into a name relative to the home root,
// chroot-style: "/a/../../b" is "b", "", "/" and "." are ".". It refuses NUL
// bytes, backslashes, overlong names and reserved elements. The returned
// error is a *fs.PathError carrying the client name.
func cleanName(op, name string) (string, error) {
	if len(name) > maxPathLen {
		return "", &fs.PathError{Op: op, Path: name, Err: ErrInvalidName}
	}
	if strings.ContainsAny(name, "\x00\\") {
		return "", &fs.PathError{Op: op, Path: name, Err: ErrInvalidName}
	}
	c := path.Clean("/" + name)
	if c == "/" {
		return ".", nil
	}
	c = c[1:]
	for elem := range strings.SplitSeq(c, "/") {
		if len(elem) > maxNameLen {
			return "", &fs.PathError{Op: op, Path: name, Err: ErrInvalidName}
		}
		if isReserved(elem) {
			return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
		}
	}
	return c, nil
}

// validHome checks a home name: one plain path element.
func validHome(home string) bool {
	return home != "" && home != "." && home != ".." && len(home) <= maxNameLen &&
		!strings.ContainsAny(home, "/\\\x00") && !isReserved(home)
}

// parentOf returns the directory holding rel ("." for top-level names).
func parentOf(rel string) string { return path.Dir(rel) }

// under reports whether rel is dir or inside it.
func under(rel, dir string) bool {
	if dir == "." {
		return true
	}
	return rel == dir || strings.HasPrefix(rel, dir+"/")
}
