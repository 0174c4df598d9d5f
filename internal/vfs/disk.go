package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

// disk is what a tree's entries are stored on: in version 1 a directory of
// the store under an os.Root (osDisk: names as the clients gave them,
// every file an envelope file), in storage version 2 a tree of the
// namespace index with content blobs (nsDisk, over internal/nsfs: no name
// or tree on any disk). Names are cleaned and checked relative names;
// every operation of a home on its entries goes through it. What only a
// directory on disk has (planted symlinks and hard links, openat2 probes,
// renameat2 exchanges, hard-link snapshots, the move journal) stays on
// home.root, which is nil on version 2.
type disk interface {
	Lstat(name string) (fs.FileInfo, error)
	Stat(name string) (fs.FileInfo, error)
	OpenFile(name string, flag int, perm fs.FileMode) (diskFile, error)
	Open(name string) (diskFile, error)
	Mkdir(name string, perm fs.FileMode) error
	MkdirAll(name string, perm fs.FileMode) error
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	Chmod(name string, mode fs.FileMode) error
	Chtimes(name string, atime, mtime time.Time) error
	Close() error

	// plainSize is the plaintext size of the regular file fi describes.
	plainSize(fi fs.FileInfo) int64
	// plain gives the plaintext view of a stored file opened by
	// OpenFile (create: a new, empty one).
	plain(h *home, back *backing, size int64, create bool) (plainFile, error)
	// replaceSmall stores data durably as the new file tmp (which must not
	// exist) and renames it over name; readSmall reads such a file back,
	// at most limit bytes. The store's own small files (metadata
	// sidecars) use them.
	replaceSmall(h *home, tmp, name string, data []byte) error
	readSmall(h *home, name string, limit int64) ([]byte, error)
	// publishAs renames the replacement tmp, open as f and synced, onto
	// name (Rename's rules), making its content the name's. It returns
	// f's disk info once published (nil if it cannot tell) and what was
	// at name before (nil: nothing), for the handle table and the quota's
	// count; a directory at name is refused with ErrIsDir.
	publishAs(f diskFile, tmp, name string) (published, replaced fs.FileInfo, err error)
	// openRegular opens name, which should be a regular file, without
	// OpenFile's way of opening a directory as a listing: on version 2 a
	// directory is namespace.ErrIsDir.
	openRegular(name string, flag int) (diskFile, error)
}

// diskFile is an open file or directory of a disk: an *os.File in version
// 1.
type diskFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Chmod(mode fs.FileMode) error
	Sync() error
	Close() error
	Readdirnames(n int) ([]string, error)
}

var _ diskFile = (*os.File)(nil)

// osDisk is version 1's disk: a directory under an os.Root.
type osDisk struct{ *os.Root }

func (d osDisk) OpenFile(name string, flag int, perm fs.FileMode) (diskFile, error) {
	f, err := d.Root.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (d osDisk) openRegular(name string, flag int) (diskFile, error) {
	return d.OpenFile(name, flag, 0)
}

func (d osDisk) Open(name string) (diskFile, error) {
	f, err := d.Root.Open(name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osDisk) plainSize(fi fs.FileInfo) int64 { return plainSize(fi.Size()) }

func (osDisk) plain(h *home, back *backing, size int64, create bool) (plainFile, error) {
	if create {
		return envelope.Create(back, h.kr(), envelope.Options{Binding: h.binding(), AEAD: h.s.aead})
	}
	return envelope.Open(back, size, h.kr(), envelope.Options{Binding: h.binding()})
}

func (d osDisk) replaceSmall(h *home, tmp, name string, data []byte) error {
	if err := d.writeSmall(h, tmp, data); err != nil {
		return err
	}
	if err := d.Rename(tmp, name); err != nil {
		d.Remove(tmp)
		return err
	}
	return nil
}

func (d osDisk) writeSmall(h *home, name string, data []byte) error {
	f, err := d.Root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w, err := envelope.NewWriter(f, h.kr(), envelope.Options{Binding: h.binding(), AEAD: h.s.aead})
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = h.s.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		d.Root.Remove(name)
	}
	return err
}

func (d osDisk) publishAs(f diskFile, tmp, name string) (fs.FileInfo, fs.FileInfo, error) {
	return lstatRename(d, f, tmp, name)
}

// lstatRename is publishAs by an Lstat of name, a Rename and a Stat of f,
// for a disk that cannot do them in one step.
func lstatRename(d disk, f diskFile, tmp, name string) (published, replaced fs.FileInfo, err error) {
	replaced, err = d.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		replaced = nil
	case err != nil:
		return nil, nil, err
	case replaced.IsDir():
		return nil, nil, ErrIsDir
	}
	if err := d.Rename(tmp, name); err != nil {
		return nil, nil, err
	}
	published, _ = f.Stat()
	return published, replaced, nil
}

func (d osDisk) readSmall(h *home, name string, limit int64) ([]byte, error) {
	f, r, err := openSealed(d.Root, name, h.kr(), h.binding())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(r, limit))
}

// reservedFile is reservedTarget for a file of the disk: only a
// directory on disk can hold planted links to the store's own files.
func (h *home) reservedFile(f diskFile) bool {
	if of, ok := f.(*os.File); ok {
		return h.reservedTarget(of)
	}
	return false
}

// timesSetter is a diskFile that sets its own times (version 2's).
type timesSetter interface {
	SetTimes(atime, mtime time.Time) error
}

// setFileTimes sets the times of an open file (zero: unchanged).
func setFileTimes(f diskFile, atime, mtime time.Time) error {
	switch f := f.(type) {
	case *os.File:
		return futimens(f, atime, mtime)
	case timesSetter:
		return f.SetTimes(atime, mtime)
	}
	return errors.ErrUnsupported
}

// errNotOnV2: an operation storage version 2 does not offer yet (docs/STORAGE.md, section 11).
var errNotOnV2 = fmt.Errorf("not available on storage version 2 yet: %w", ErrUnsupported)

// subdir is directory rel as a disk of its own: an os.Root opened on it in
// version 1 (so a listing's lstats resolve rel once per batch, not per
// entry), the same tree seen from rel in version 2.
func (h *home) subdir(rel string) (disk, error) {
	if h.root == nil {
		return h.d.(interface{ sub(string) (disk, error) }).sub(rel)
	}
	r, err := h.root.OpenRoot(rel)
	if err != nil {
		return nil, err
	}
	return osDisk{r}, nil
}
