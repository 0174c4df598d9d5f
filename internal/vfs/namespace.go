package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// Shared folders (issue 16). A folder is a tree of its own in the store,
// under foldersDir, with its own os.Root, its own open-file table, usage
// and quota, and its own envelope binding (folderBindingPrefix): to the
// rest of vfs it is a home. A user's view (Store.View) is their home plus
// a virtual directory, the prefix ("Shared" by default), whose entries are
// the folders they may reach; a name under PREFIX/NAME is routed to
// folder NAME's tree with the member's rights there. Routing happens on the
// cleaned name, before anything touches the disk, so no name spelling
// ("/Shared/../x", "/Shared/a/../b") reaches a tree other than the one its
// cleaned form names, and a folder the view does not hold is "not found",
// exactly like a folder that does not exist.

// foldersDir holds the folders' trees, one directory per folder. The name
// is reserved: no home and no client name can be it.
const foldersDir = ".securefsd-folders"

// DefaultSharedPrefix is the directory of a view under which the folders
// appear.
const DefaultSharedPrefix = "Shared"

// ErrFolderExists: a folder's directory is in the store already (the files
// of a folder deleted without --purge).
var ErrFolderExists = errors.New("vfs: the store holds files of a folder of that name")

// SharedPrefix is the directory of every view under which the folders
// appear (Options.SharedPrefix).
func (s *Store) SharedPrefix() string { return s.sharedPrefix }

// validPrefix checks a shared prefix: one plain, non-reserved element.
func validPrefix(p string) bool { return validHome(p) }

// folder returns the shared state of folder name, opening it on first use.
func (s *Store) folder(name string) (*home, error) {
	if !validHome(name) {
		return nil, fmt.Errorf("vfs: folder %q: %w", name, ErrInvalidName)
	}
	if err := s.root.Mkdir(foldersDir, 0o700); s.v2 == nil && err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("vfs: create folders directory: %w", err)
	}
	return s.tree(foldersDir+"/"+name, folderBindingPrefix+name, true)
}

// Folder opens (creating if needed) shared folder name with a member's
// rights (opts.Perm) and the folder's quota (opts.Quota, shared by every
// view of the folder: uploads into it count there, not in the member's
// home).
func (s *Store) Folder(name string, opts HomeOptions) (*FS, error) {
	h, err := s.folder(name)
	if err != nil {
		return nil, err
	}
	return h.open(opts), nil
}

// HasFolder reports whether the store holds folder name's tree, without
// creating it.
func (s *Store) HasFolder(name string) (bool, error) {
	if !validHome(name) {
		return false, fmt.Errorf("vfs: folder %q: %w", name, ErrInvalidName)
	}
	if s.v2 != nil {
		return s.v2.fs.HasTree(foldersDir + "/" + name)
	}
	_, err := s.root.Lstat(foldersDir + "/" + name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("vfs: folder %q: %w", name, err)
	}
	return true, nil
}

// FolderNames lists the folders' trees in the store.
func (s *Store) FolderNames() ([]string, error) {
	names, err := s.treeNames(foldersDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

// RemoveFolder deletes a folder's tree and everything in it. Handles still
// open on it fail afterwards. It is idempotent, so an interrupted purge is
// resumed by calling it again.
func (s *Store) RemoveFolder(ctx context.Context, name string) error {
	if !validHome(name) {
		return fmt.Errorf("vfs: folder %q: %w", name, ErrInvalidName)
	}
	return s.removeTree(ctx, foldersDir+"/"+name)
}

// View is user's view of the store: their home (the FS home, with its
// rights) and, under the store's shared prefix, the folders given (name →
// the folder opened with the member's rights, Store.Folder). The FS it
// returns routes every name to the tree that holds it. Build a new view
// when the rights change (protocols do, at the next request after the user
// database's revision moved).
func (s *Store) View(home *FS, folders map[string]*FS) *FS {
	v := &view{prefix: s.sharedPrefix, home: home, folders: folders, since: s.opened}
	for n := range folders {
		v.names = append(v.names, n)
	}
	slices.Sort(v.names)
	return &FS{h: home.h, perm: home.perm, view: v}
}

// RightsAt is the rights f gives on name: for a view, those of the tree
// that holds it (0 for a name it cannot reach). Protocols check it on
// open handles, whose rights may have been revoked since they opened.
func (f *FS) RightsAt(name string) Perm {
	if f.view == nil {
		return f.perm
	}
	t, err := f.view.route("rights", name)
	if err != nil {
		return 0
	}
	if t.virtual() {
		return PermList
	}
	return t.fs.perm
}

// UsageAt is Usage of the tree that holds name: inside a shared folder,
// the folder's usage and quota (uploads there count there).
func (f *FS) UsageAt(name string) (Usage, error) {
	if f.view != nil {
		if t, err := f.view.route("usage", name); err == nil && !t.virtual() {
			return t.fs.Usage()
		}
		return f.view.home.Usage()
	}
	return f.Usage()
}

// FolderOf reports the shared folder that holds name in this view, if any.
func (f *FS) FolderOf(name string) (string, bool) {
	if f.view == nil {
		return "", false
	}
	t, err := f.view.route("folder", name)
	if err != nil || t.virtual() || t.fs == f.view.home {
		return "", false
	}
	rest := strings.TrimPrefix(t.rel, f.view.prefix+"/")
	folder, _, _ := strings.Cut(rest, "/")
	return folder, true
}

// view is the routing table of a view FS.
type view struct {
	prefix  string
	home    *FS
	folders map[string]*FS
	names   []string // sorted keys of folders
	since   time.Time
}

// route is where a client name lives: fs nil is the prefix directory
// itself (virtual), else the name inside fs.
type route struct {
	fs   *FS
	name string
	rel  string // the cleaned client name
}

func (t route) virtual() bool { return t.fs == nil }

// route resolves a client name. A name under the prefix whose folder the
// view does not hold is fs.ErrNotExist: a member of nothing learns nothing.
func (v *view) route(op, name string) (route, error) {
	rel, err := cleanName(op, name)
	if err != nil {
		return route{}, err
	}
	first, rest, _ := strings.Cut(rel, "/")
	if first != v.prefix {
		return route{fs: v.home, name: name, rel: rel}, nil
	}
	if rest == "" {
		return route{rel: rel}, nil
	}
	folder, inner, _ := strings.Cut(rest, "/")
	ffs := v.folders[folder]
	if ffs == nil {
		return route{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return route{fs: ffs, name: "/" + inner, rel: rel}, nil
}

// shown reports whether the prefix directory exists for this view: only
// when the user may reach at least one folder.
func (v *view) shown() bool { return len(v.names) > 0 }

// virtualInfo is the prefix directory's entry: read-only for everyone.
func (v *view) virtualInfo() fs.FileInfo {
	return &fileInfo{name: v.prefix, mode: fs.ModeDir | 0o555, mtime: v.since}
}

// noSuch is the answer for the prefix directory of a view without folders
// (absent), or for a change of it (refused).
func (v *view) refuse(op, name string) error {
	if !v.shown() {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
}

// renamed gives a folder's root entry its name in the view.
func renamed(fi fs.FileInfo, name string) fs.FileInfo {
	return &fileInfo{name: name, size: fi.Size(), mode: fi.Mode(), mtime: fi.ModTime()}
}

// clientPath puts the client's name back into an error of a folder's tree
// (whose names are relative to the folder).
func clientPath(err error, name string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path != name {
		return &fs.PathError{Op: pe.Op, Path: name, Err: pe.Err}
	}
	return err
}

// list is the prefix directory's listing: each folder's root, named.
func (v *view) list() []fs.FileInfo {
	out := make([]fs.FileInfo, 0, len(v.names))
	for _, n := range v.names {
		fi, err := v.folders[n].Stat("/")
		if err != nil {
			continue // logged by the folder's tree
		}
		out = append(out, renamed(fi, n))
	}
	return out
}

// atRoot fixes the listing of the home's top directory: a real entry named
// like the prefix is hidden (the prefix shadows it), the prefix directory
// is added when it exists.
func (v *view) atRoot(in []fs.FileInfo) []fs.FileInfo {
	out := slices.DeleteFunc(in, func(fi fs.FileInfo) bool { return fi.Name() == v.prefix })
	if v.shown() {
		out = append(out, v.virtualInfo())
		slices.SortFunc(out, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	}
	return out
}

func (v *view) openFile(name string, flag int, perm fs.FileMode) (*File, error) {
	const op = "open"
	t, err := v.route(op, name)
	if err != nil {
		return nil, err
	}
	if !t.virtual() {
		f, err := t.fs.OpenFile(t.name, flag, perm)
		if err != nil {
			return nil, clientPath(err, name)
		}
		if t.rel == "." && f.dir != nil {
			f.dir.hide = v.prefix
			if v.shown() {
				f.dir.extras = append(f.dir.extras, v.virtualInfo())
			}
		}
		return f, nil
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	if !v.shown() {
		if flag&os.O_CREATE != 0 {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
		}
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	if flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrExist}
	}
	if acc == os.O_WRONLY || flag&(os.O_TRUNC|os.O_CREATE) != 0 {
		return nil, &fs.PathError{Op: op, Path: name, Err: ErrIsDir}
	}
	// A directory handle on the home's state (the handle counts there)
	// listing the folders; it needs no right of the home.
	lister := &FS{h: v.home.h, perm: PermList}
	if err := lister.h.takeHandle(); err != nil {
		return nil, lister.h.pathErr(op, name, err)
	}
	return &File{
		fs: lister, name: name, rel: ".", readable: true, vinfo: v.virtualInfo(),
		dir: &dirStream{eof: true, loaded: true, extras: v.list()},
	}, nil
}

func (v *view) stat(name string, follow bool) (fs.FileInfo, error) {
	op := "stat"
	if !follow {
		op = "lstat"
	}
	t, err := v.route(op, name)
	if err != nil {
		return nil, err
	}
	if t.virtual() {
		if !v.shown() {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		return v.virtualInfo(), nil
	}
	var fi fs.FileInfo
	if follow {
		fi, err = t.fs.Stat(t.name)
	} else {
		fi, err = t.fs.Lstat(t.name)
	}
	if err != nil {
		return nil, clientPath(err, name)
	}
	if t.fs != v.home && t.name == "/" {
		fi = renamed(fi, t.rel[strings.LastIndexByte(t.rel, '/')+1:])
	}
	return fi, nil
}

func (v *view) readDir(name string) ([]fs.FileInfo, error) {
	t, err := v.route("readdir", name)
	if err != nil {
		return nil, err
	}
	if t.virtual() {
		if !v.shown() {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
		}
		return v.list(), nil
	}
	out, err := t.fs.ReadDir(t.name)
	if err != nil {
		return nil, clientPath(err, name)
	}
	if t.rel == "." {
		out = v.atRoot(out)
	}
	return out, nil
}

func (v *view) readDirMeta(name string) ([]fs.FileInfo, map[string]Meta, error) {
	t, err := v.route("readdirmeta", name)
	if err != nil {
		return nil, nil, err
	}
	if t.virtual() {
		if !v.shown() {
			return nil, nil, &fs.PathError{Op: "readdirmeta", Path: name, Err: fs.ErrNotExist}
		}
		return v.list(), map[string]Meta{}, nil
	}
	out, meta, err := t.fs.ReadDirMeta(t.name)
	if err != nil && out == nil {
		return nil, nil, clientPath(err, name)
	}
	if t.rel == "." {
		out = v.atRoot(out)
		delete(meta, v.prefix)
	}
	return out, meta, clientPath(err, name)
}

// on runs op on the tree that holds name; the prefix directory itself is
// refused (it cannot be changed) or absent.
func (v *view) on(op, name string, fn func(f *FS, inner string) error) error {
	t, err := v.route(op, name)
	if err != nil {
		return err
	}
	if t.virtual() {
		return v.refuse(op, name)
	}
	return clientPath(fn(t.fs, t.name), name)
}

func (v *view) mkdir(name string, perm fs.FileMode, all bool) error {
	t, err := v.route("mkdir", name)
	if err != nil {
		return err
	}
	if t.virtual() {
		if all && v.shown() {
			return nil // MkdirAll of an existing directory
		}
		if v.shown() {
			return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
		}
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrPermission}
	}
	if all {
		return clientPath(t.fs.MkdirAll(t.name, perm), name)
	}
	return clientPath(t.fs.Mkdir(t.name, perm), name)
}

func (v *view) checksums(ctx context.Context, name string, want ...HashKind) (Hashes, error) {
	t, err := v.route("checksums", name)
	if err != nil {
		return Hashes{}, err
	}
	if t.virtual() {
		if !v.shown() {
			return Hashes{}, &fs.PathError{Op: "checksums", Path: name, Err: fs.ErrNotExist}
		}
		return Hashes{}, &fs.PathError{Op: "checksums", Path: name, Err: ErrIsDir}
	}
	hs, err := t.fs.Checksums(ctx, t.name, want...)
	return hs, clientPath(err, name)
}

func (v *view) meta(name string) (Meta, error) {
	t, err := v.route("meta", name)
	if err != nil {
		return Meta{}, err
	}
	if t.virtual() {
		if !v.shown() {
			return Meta{}, &fs.PathError{Op: "meta", Path: name, Err: fs.ErrNotExist}
		}
		return Meta{}, nil
	}
	m, err := t.fs.Meta(t.name)
	return m, clientPath(err, name)
}

func (v *view) readlink(name string) (string, error) {
	t, err := v.route("readlink", name)
	if err != nil {
		return "", err
	}
	if t.virtual() {
		if !v.shown() {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrNotExist}
		}
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	s, err := t.fs.Readlink(t.name)
	return s, clientPath(err, name)
}

// rename moves oldname to newname. Inside one tree it is that tree's
// Rename (one rename(2)). Between trees (home and a folder, two folders)
// the files are bound to their tree, so the entry is renamed on disk and
// every file's header rewritten for the target's binding, under a move
// journal that a crash leaves for NewStore to finish (move.go). Where
// that cannot be done, the content is copied into the target tree
// (published atomically under the new name, like any upload) and the
// source removed once the copy is whole: a crash between the two leaves
// both copies, never a partial or a lost file. Only regular files and
// directories (with everything below them) move between trees.
func (v *view) rename(oldname, newname string, overwrite bool) error {
	const op = "rename"
	src, err := v.route(op, oldname)
	if err != nil {
		return err
	}
	dst, err := v.route(op, newname)
	if err != nil {
		return err
	}
	if src.virtual() {
		return v.refuse(op, oldname)
	}
	if dst.virtual() {
		return v.refuse(op, newname)
	}
	if src.fs.h == dst.fs.h {
		if src.fs != v.home && (src.name == "/" || dst.name == "/") {
			// A folder's root is the mount itself.
			return &fs.PathError{Op: op, Path: oldname, Err: fs.ErrPermission}
		}
		return src.fs.Rename(src.name, dst.name, overwrite)
	}
	return moveAcross(src, dst, oldname, newname, overwrite)
}

// moveAcross moves a regular file or a directory between two trees (see
// view.rename). The source needs PermRename and PermDownload (its content
// leaves it); the target PermUpload, and PermOverwrite to replace a file.
// The move is a rename on disk and a header rewrite per file
// (rebindMove); where that cannot be (an open file in what moves, a hard
// link, another filesystem) the content is copied.
func moveAcross(src, dst route, oldname, newname string, overwrite bool) error {
	const op = "rename"
	if !src.fs.can(PermRename|PermDownload) || src.name == "/" {
		return &fs.PathError{Op: op, Path: oldname, Err: fs.ErrPermission}
	}
	if dst.name == "/" {
		return &fs.PathError{Op: op, Path: newname, Err: fs.ErrPermission}
	}
	fi, err := src.fs.Lstat(src.name)
	if err != nil {
		return clientPath(err, oldname)
	}
	if fi.IsDir() {
		if !src.fs.can(PermRename | PermDownload | PermList) {
			return &fs.PathError{Op: op, Path: oldname, Err: fs.ErrPermission}
		}
		if !dst.fs.can(PermUpload | PermMkdir) {
			return &fs.PathError{Op: op, Path: newname, Err: fs.ErrPermission}
		}
	} else if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: op, Path: oldname, Err: fs.ErrPermission}
	} else if !dst.fs.can(PermUpload) {
		return &fs.PathError{Op: op, Path: newname, Err: fs.ErrPermission}
	}
	if err := rebindMove(src, dst, oldname, newname, overwrite); !errors.Is(err, errMoveByCopy) {
		return err
	}
	if fi.IsDir() {
		return moveDirAcross(src, dst, oldname, newname)
	}
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if tfi, err := dst.fs.Lstat(dst.name); err == nil {
		if !overwrite {
			return &fs.PathError{Op: op, Path: newname, Err: fs.ErrExist}
		}
		if tfi.IsDir() {
			return &fs.PathError{Op: op, Path: newname, Err: ErrIsDir}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return clientPath(err, newname)
	} else {
		flag |= os.O_EXCL
	}
	if err := copyAcross(src.fs, src.name, dst.fs, dst.name, flag, fi, oldname, newname, make([]byte, 256<<10)); err != nil {
		return err
	}
	// The source's removal is part of the rename the source's rights
	// allowed (PermRename), whether or not they include PermDelete.
	if err := (&FS{h: src.fs.h, perm: src.fs.perm | PermDelete}).Remove(src.name); err != nil {
		return clientPath(err, oldname)
	}
	return nil
}

// copyAcross streams one regular file from src into dst (created with
// flag), re-encrypted for dst's tree, with its modification time.
func copyAcross(src *FS, srcName string, dst *FS, dstName string, flag int, fi fs.FileInfo, oldname, newname string, buf []byte) error {
	in, err := src.Open(srcName)
	if err != nil {
		return clientPath(err, oldname)
	}
	defer in.Close()
	out, err := dst.OpenFile(dstName, flag, fi.Mode().Perm())
	if err != nil {
		return clientPath(err, newname)
	}
	if _, err := io.CopyBuffer(onlyWriter{out}, onlyReader{in}, buf); err != nil {
		out.Abort()
		return clientPath(err, newname)
	}
	if err := out.Close(); err != nil {
		return clientPath(err, newname)
	}
	// The modification time travels with the file, as with rename(2); the
	// target's rights were checked when it was created.
	(&FS{h: dst.h, perm: PermAll}).Chtimes(dstName, fi.ModTime(), fi.ModTime())
	return nil
}

// moveDirAcross moves a directory tree between two trees (see
// view.rename): the target must not exist; every directory is made and
// every file copied (re-encrypted for the target's tree) first, and the
// source is removed only once the whole copy is in place. A failure
// (quota, a full disk, an unreadable file) removes the partial copy and
// leaves the source as it was; a crash during the copy leaves the source
// whole and a partial copy under the new name, never a lost file. The
// source needs PermRename, PermDownload and PermList; the target
// PermUpload and PermMkdir.
func moveDirAcross(src, dst route, oldname, newname string) error {
	const op = "rename"
	if !src.fs.can(PermRename | PermDownload | PermList) {
		return &fs.PathError{Op: op, Path: oldname, Err: fs.ErrPermission}
	}
	if !dst.fs.can(PermUpload | PermMkdir) {
		return &fs.PathError{Op: op, Path: newname, Err: fs.ErrPermission}
	}
	if _, err := dst.fs.Lstat(dst.name); err == nil {
		return &fs.PathError{Op: op, Path: newname, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return clientPath(err, newname)
	}
	buf := make([]byte, 256<<10)
	var walk func(s, d, so, do string) error
	walk = func(s, d, so, do string) error {
		fi, err := src.fs.Lstat(s)
		if err != nil {
			return clientPath(err, so)
		}
		if err := dst.fs.Mkdir(d, fi.Mode().Perm()|0o700); err != nil {
			return clientPath(err, do)
		}
		ents, err := src.fs.ReadDir(s)
		if err != nil {
			return clientPath(err, so)
		}
		for _, e := range ents {
			cs, cd := path.Join(s, e.Name()), path.Join(d, e.Name())
			cso, cdo := path.Join(so, e.Name()), path.Join(do, e.Name())
			switch {
			case e.IsDir():
				err = walk(cs, cd, cso, cdo)
			case e.Mode().IsRegular():
				err = copyAcross(src.fs, cs, dst.fs, cd, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e, cso, cdo, buf)
			default:
				err = &fs.PathError{Op: op, Path: cso, Err: fs.ErrPermission}
			}
			if err != nil {
				return err
			}
		}
		(&FS{h: dst.fs.h, perm: PermAll}).Chtimes(d, fi.ModTime(), fi.ModTime())
		return nil
	}
	if err := walk(src.name, dst.name, oldname, newname); err != nil {
		// Undo the partial copy; the target's removal is the rename's.
		(&FS{h: dst.fs.h, perm: dst.fs.perm | PermDelete}).RemoveAll(dst.name)
		return err
	}
	if err := (&FS{h: src.fs.h, perm: src.fs.perm | PermDelete}).RemoveAll(src.name); err != nil {
		return clientPath(err, oldname)
	}
	return nil
}

// onlyReader and onlyWriter hide the File's other methods from
// io.CopyBuffer (no ReaderFrom/WriterTo detours), so the copy streams
// through one buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }
