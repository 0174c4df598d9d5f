package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/namespace"
	"github.com/securefsd/securefsd/internal/nsfs"
)

// nsDisk is storage version 2's disk: a tree of the namespace index
// (internal/nsfs), seen from directory dir ("" for the tree's root).
// Modes are stored as version 1 keeps them on disk (modes.go), so the
// client's mode reads back the same way.
type nsDisk struct {
	t   *nsfs.Tree
	dir string
}

// name is rel inside the tree.
func (d nsDisk) name(rel string) string {
	if d.dir == "" {
		return rel
	}
	if rel == "." {
		return d.dir
	}
	return d.dir + "/" + rel
}

func (d nsDisk) sub(rel string) (disk, error) {
	if rel == "." {
		return d, nil
	}
	fi, err := d.Lstat(rel)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: rel, Err: ErrNotDir}
	}
	return nsDisk{t: d.t, dir: d.name(rel)}, nil
}

func (d nsDisk) Lstat(name string) (fs.FileInfo, error) { return d.t.Lstat(d.name(name)) }
func (d nsDisk) Stat(name string) (fs.FileInfo, error)  { return d.t.Lstat(d.name(name)) }

func (d nsDisk) Mkdir(name string, perm fs.FileMode) error {
	return d.t.Mkdir(d.name(name), perm)
}

func (d nsDisk) MkdirAll(name string, perm fs.FileMode) error {
	return d.t.MkdirAll(d.name(name), perm)
}

func (d nsDisk) Remove(name string) error    { return d.t.Remove(d.name(name)) }
func (d nsDisk) RemoveAll(name string) error { return d.t.RemoveAll(d.name(name)) }

func (d nsDisk) Rename(oldname, newname string) error {
	return d.t.Rename(d.name(oldname), d.name(newname))
}

func (d nsDisk) Chmod(name string, mode fs.FileMode) error {
	return d.t.Chmod(d.name(name), mode)
}

func (d nsDisk) Chtimes(name string, atime, mtime time.Time) error {
	return d.t.Chtimes(d.name(name), atime, mtime)
}

func (nsDisk) Close() error { return nil }

// OpenFile opens a file (an nsfs.File) or a directory (its listing).
// Flags other than the access mode, O_CREATE, O_EXCL and O_TRUNC mean
// nothing here.
func (d nsDisk) openRegular(name string, flag int) (diskFile, error) {
	f, err := d.t.OpenFile(d.name(name), flag&(os.O_RDONLY|os.O_WRONLY|os.O_RDWR), 0)
	if err != nil {
		return nil, err
	}
	return nsFile{f}, nil
}

func (d nsDisk) OpenFile(name string, flag int, perm fs.FileMode) (diskFile, error) {
	full := d.name(name)
	if flag&os.O_CREATE == 0 {
		// A file is opened at once (one index view); a directory (the
		// tree's root, or what nsfs refuses to open) is listed below.
		if full != "." {
			f, err := d.t.OpenFile(full, flag&(os.O_RDONLY|os.O_WRONLY|os.O_RDWR|os.O_TRUNC), perm)
			if err == nil {
				return nsFile{f}, nil
			}
			if !errors.Is(err, namespace.ErrIsDir) {
				return nil, err
			}
		}
		fi, err := d.t.Lstat(full)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			if flag&(os.O_WRONLY|os.O_TRUNC) != 0 {
				return nil, &fs.PathError{Op: "open", Path: name, Err: ErrIsDir}
			}
			fis, err := d.t.ReadDir(full)
			if err != nil {
				return nil, err
			}
			dir := &nsDir{t: d.t, name: full, infos: make(map[string]fs.FileInfo, len(fis))}
			for _, fi := range fis {
				dir.names = append(dir.names, fi.Name())
				dir.infos[fi.Name()] = fi
			}
			return dir, nil
		}
	}
	var f *nsfs.File
	var err error
	if flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL && strings.HasPrefix(full, tmpDirName+"/") {
		// An upload's temporary (a fresh random name): it enters the
		// index with its first publish, in one transaction.
		f, err = d.t.CreateLater(full, perm)
	} else {
		f, err = d.t.OpenFile(full, flag&(os.O_RDONLY|os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_TRUNC), perm)
	}
	if err != nil {
		return nil, err
	}
	return nsFile{f}, nil
}

func (d nsDisk) Open(name string) (diskFile, error) { return d.OpenFile(name, os.O_RDONLY, 0) }

func (nsDisk) plainSize(fi fs.FileInfo) int64 { return fi.Size() }

// plain is the nsfs.File itself: it is the plaintext. Its Close belongs
// to the backing (node.release closes both).
func (nsDisk) plain(_ *home, back *backing, _ int64, _ bool) (plainFile, error) {
	f, ok := back.f.(nsFile)
	if !ok {
		return nil, errors.New("vfs: storage v2 file of another kind")
	}
	return nsPlain{f.File}, nil
}

// replaceSmall is one index transaction: the new file's content, its
// entry and the replacement of name (tmp never enters the index).
func (d nsDisk) replaceSmall(_ *home, tmp, name string, data []byte) error {
	f, err := d.t.CreateLater(d.name(tmp), 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err == nil {
		err = f.PublishAs(d.name(name))
	}
	if err != nil {
		f.Abort()
		return err
	}
	return f.Close()
}

// publishAs publishes the upload's content, its entry and the
// replacement of name in one index transaction (nsfs.File.PublishAs):
// version 1's rename and directory fsync, and no more.
func (d nsDisk) publishAs(f diskFile, tmp, name string) (fs.FileInfo, fs.FileInfo, error) {
	if nf, ok := f.(nsFile); ok && nf.Name() == d.name(tmp) {
		published, replaced, err := nf.PublishOver(d.name(name))
		if errors.Is(err, namespace.ErrIsDir) {
			return nil, nil, ErrIsDir
		}
		return published, replaced, err
	}
	return lstatRename(d, f, tmp, name)
}

func (d nsDisk) readSmall(_ *home, name string, limit int64) ([]byte, error) {
	f, err := d.t.OpenFile(d.name(name), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.NewSectionReader(f, 0, min(f.Size(), limit)))
}

// nsFile is an nsfs.File as a diskFile.
type nsFile struct{ *nsfs.File }

func (f nsFile) Readdirnames(int) ([]string, error) {
	return nil, &fs.PathError{Op: "readdir", Path: f.Name(), Err: ErrNotDir}
}

// nsPlain is the plaintext view of an nsFile; closing it is the
// backing's job.
type nsPlain struct{ *nsfs.File }

func (nsPlain) Close() error { return nil }

// Flush publishes: what version 1's write-back does for later lstats of
// the disk (a listing, a replacement's accounting of the file it
// replaces), publishing does for the index.
func (p nsPlain) Flush() error { return p.File.Sync() }

// nsDir is a directory of an nsDisk opened for listing: the names and
// entries as they were at the open (one index transaction for the whole
// listing, where a directory on disk needs an lstat per entry).
type nsDir struct {
	t     *nsfs.Tree
	name  string
	names []string
	infos map[string]fs.FileInfo
}

// entry is name's entry as the listing read it (nil if it has none).
func (d *nsDir) entry(name string) fs.FileInfo { return d.infos[name] }

func (d *nsDir) Readdirnames(n int) ([]string, error) {
	if n <= 0 {
		out := d.names
		d.names = nil
		return out, nil
	}
	if len(d.names) == 0 {
		return nil, io.EOF
	}
	k := min(n, len(d.names))
	out := d.names[:k]
	d.names = d.names[k:]
	return out, nil
}

func (d *nsDir) Stat() (fs.FileInfo, error) { return d.t.Lstat(d.name) }
func (*nsDir) Sync() error                  { return nil }
func (*nsDir) Close() error                 { return nil }

func (d *nsDir) isDir(op string) error {
	return &fs.PathError{Op: op, Path: d.name, Err: ErrIsDir}
}
func (d *nsDir) ReadAt([]byte, int64) (int, error)  { return 0, d.isDir("read") }
func (d *nsDir) WriteAt([]byte, int64) (int, error) { return 0, d.isDir("write") }
func (d *nsDir) Truncate(int64) error               { return d.isDir("truncate") }
func (d *nsDir) Chmod(mode fs.FileMode) error       { return d.t.Chmod(d.name, mode) }

// listedEntry is name's entry in the directory d lists: what the listing
// read with the names where it can (storage v2), else an lstat through
// sub.
func listedEntry(d diskFile, sub disk, name string) (fs.FileInfo, error) {
	if l, ok := d.(interface{ entry(string) fs.FileInfo }); ok {
		if fi := l.entry(name); fi != nil {
			return fi, nil
		}
	}
	return sub.Lstat(name)
}
