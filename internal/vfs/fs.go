package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"time"
)

// FS is one user's view of a home tree, with the rights it was opened
// with. Safe for concurrent use; FS values of the same home share their
// state.
type FS struct {
	h    *home
	perm Perm
	// view: this FS is a user's view (Store.View); every operation on a
	// name is routed to the home or a folder (namespace.go).
	view *view
}

func (f *FS) can(p Perm) bool { return f.perm&p == p }

func (f *FS) denied(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
}

// Open opens name for reading.
func (f *FS) Open(name string) (*File, error) { return f.OpenFile(name, os.O_RDONLY, 0) }

// Create creates or replaces name, opened read-write.
func (f *FS) Create(name string) (*File, error) {
	return f.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// OpenFile opens name with os.O_* flags (O_RDONLY, O_WRONLY or O_RDWR, with
// O_CREATE, O_EXCL, O_TRUNC, O_APPEND). perm applies (minus the umask) to a
// file it creates.
//
// O_TRUNC of an existing file that nobody has open, and O_CREATE of a new
// file, write to an encrypted temporary file that replaces name on Close
// (Abort drops it): a failed upload never leaves a partial file under the
// final name. Meanwhile Stat, ReadDir and further opens of name see the new
// file. Other writes, and O_TRUNC of a file open elsewhere, happen in place
// through the file's shared state. Directories open read-only, or O_RDWR
// (WebDAV PROPPATCH opens them that way); their File supports Readdir.
func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (*File, error) {
	if f.view != nil {
		return f.view.openFile(name, flag, perm)
	}
	const op = "open"
	h := f.h
	if err := h.takeHandle(); err != nil {
		return nil, h.pathErr(op, name, err)
	}
	// The rights depend on the entry: openLocked decides them. A file
	// that must exist, with the rights to open it as asked, is opened
	// without a look first (pre.direct).
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	direct := flag&(os.O_CREATE|os.O_TRUNC|os.O_EXCL) == 0 &&
		(acc == os.O_WRONLY || f.can(PermDownload)) && (acc == os.O_RDONLY || f.can(PermOverwrite))
	e, err := f.enter(op, name, pre{lock: lockExclusive, final: true, open: true, direct: direct})
	if err != nil {
		h.putHandle()
		return nil, err
	}
	file, truncate, err := f.openLocked(op, name, e, flag, perm)
	e.unlock()
	if err != nil {
		h.putHandle()
		return nil, err
	}
	if truncate {
		if err := file.n.truncate(0); err != nil {
			file.Close()
			return nil, h.pathErr(op, name, err)
		}
	}
	return file, nil
}

func (f *FS) openLocked(op, name string, e entry, flag int, perm fs.FileMode) (*File, bool, error) {
	h, rel := f.h, e.rel
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	o := openReq{
		op: op, name: name, rel: rel, flag: flag, perm: perm,
		readable: acc == os.O_RDONLY || acc == os.O_RDWR,
		writable: acc == os.O_WRONLY || acc == os.O_RDWR,
		excl:     flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0,
	}
	o.file = &File{fs: f, name: name, rel: rel, readable: o.readable, writable: o.writable, appendMode: flag&os.O_APPEND != 0}

	if e.n != nil {
		return f.openShared(o, e.n)
	}
	if e.direct {
		n, err := h.openExisting(rel, o.writable)
		switch {
		case err == nil:
			return f.attach(o, n)
		case !errors.Is(err, errNotRegular) && !errors.Is(err, fs.ErrNotExist):
			return nil, false, h.pathErr(op, name, err)
		}
		// A directory, or nothing: the look below tells which.
	}
	fi, err := e.fi, error(nil)
	switch {
	case e.absent:
		err = fs.ErrNotExist
	case h.root != nil || fi == nil:
		// Storage v2 has no links: what enter's check saw (an lstat,
		// under the same lock) is what a stat would see.
		fi, err = h.d.Stat(rel)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f.openNew(o)
	case err != nil:
		return nil, false, h.pathErr(op, name, err)
	case fi.IsDir():
		if o.excl {
			return nil, false, h.pathErr(op, name, fs.ErrExist)
		}
		if acc == os.O_WRONLY || flag&(os.O_TRUNC|os.O_CREATE) != 0 {
			return nil, false, h.pathErr(op, name, ErrIsDir) // as open(2)
		}
		o.file.dir = &dirStream{}
		o.file.writable = false
		return o.file, false, nil
	case !fi.Mode().IsRegular():
		return nil, false, h.pathErr(op, name, fs.ErrPermission)
	}
	return f.openDisk(o, fi)
}

// openReq is one OpenFile call, decoded, and the File it builds.
type openReq struct {
	op, name, rel            string
	flag                     int
	perm                     fs.FileMode
	readable, writable, excl bool
	file                     *File
}

// openShared opens a name whose file is already open (a node on the
// table). Caller holds h.ns exclusively.
func (f *FS) openShared(o openReq, n *node) (*File, bool, error) {
	h := f.h
	op, name, rel, file := o.op, o.name, o.rel, o.file
	if o.excl {
		return nil, false, h.pathErr(op, name, fs.ErrExist)
	}
	need := Perm(0)
	if o.readable {
		need |= PermDownload
	}
	if o.writable {
		h.mu.Lock()
		created := n.created
		h.mu.Unlock()
		if created {
			need |= PermUpload
		} else {
			need |= PermOverwrite
		}
	}
	if !f.can(need) {
		return nil, false, f.denied(op, name)
	}
	if o.writable && o.flag&os.O_TRUNC != 0 {
		// Only readers have it open (a download in progress): still
		// replace atomically; the readers keep the old content.
		h.mu.Lock()
		readersOnly := n.writers == 0 && n.tmp == ""
		h.mu.Unlock()
		if fi, err := h.d.Lstat(rel); readersOnly && err == nil && fi.Mode().IsRegular() {
			// The old file's bytes are counted as its disk size from
			// now on (the publish subtracts that): write back first.
			if err := n.flush(false); err != nil {
				return nil, false, h.pathErr(op, name, err)
			}
			if fi, err = h.d.Lstat(rel); err != nil {
				return nil, false, h.pathErr(op, name, err)
			}
			nn, err := h.newReplacement(rel, clientMode(fi.Mode()), false, h.d.plainSize(fi))
			if err != nil {
				return nil, false, h.pathErr(op, name, err)
			}
			n.supersede()
			nn.ref(true)
			file.n = nn
			file.owner = true
			return file, false, nil
		}
	}
	if o.writable && o.flag&os.O_TRUNC != 0 && h.folder {
		if nf, ok, err := f.replaceRacing(o, n); ok || err != nil {
			return nf, false, err
		}
	}
	if o.writable && !n.back.rw {
		if err := n.upgrade(); err != nil {
			return nil, false, h.pathErr(op, name, err)
		}
	}
	if o.writable {
		if err := n.ownInode(); err != nil {
			return nil, false, h.pathErr(op, name, err)
		}
	}
	n.ref(o.writable)
	file.n = n
	file.owner = o.writable
	return file, o.writable && o.flag&os.O_TRUNC != 0, nil
}

// replaceRacing serves, in a shared folder, an O_TRUNC open for writing of
// a name whose replacement is being written by another handle (two members
// uploading the same name at once). Homes keep POSIX semantics (the
// conformance suite: one user's handles share the file, a second O_TRUNC
// truncates it for both); in a folder two openers are usually two people,
// and a mix of their uploads would lose both versions.
// Truncating the shared replacement would interleave both uploads' bytes;
// instead this open gets a replacement of its own and the other one is
// detached: it completes but is not published. The name then holds
// exactly the upload opened last, never a mix (as with two uploads racing
// to rename(2) over one name, one of them is overwritten). ok: the open was
// served here. Caller holds h.ns exclusively.
func (f *FS) replaceRacing(o openReq, n *node) (*File, bool, error) {
	h := f.h
	h.mu.Lock()
	racing := n.writers > 0 && n.tmp != "" && n.key != ""
	mode := n.mode
	h.mu.Unlock()
	if !racing {
		return nil, false, nil
	}
	created, credit := true, int64(0)
	if fi, err := h.d.Lstat(o.rel); err == nil && fi.Mode().IsRegular() {
		created, credit, mode = false, h.d.plainSize(fi), clientMode(fi.Mode())
	}
	n.detach()
	if created {
		if err := h.reserveFile(); err != nil {
			return nil, false, h.pathErr(o.op, o.name, err)
		}
	}
	nn, err := h.newReplacement(o.rel, mode, created, credit)
	if err != nil {
		if created {
			h.addUsage(0, -1)
		}
		return nil, false, h.pathErr(o.op, o.name, err)
	}
	h.logger().Info("vfs: concurrent upload of one name: the later one replaces the earlier", "home", h.name, "path", "/"+o.rel)
	nn.ref(true)
	o.file.n = nn
	o.file.owner = true
	return o.file, true, nil
}

// openNew creates a file that is neither on disk nor open (O_CREATE): a
// replacement published on Close. Caller holds h.ns exclusively.
func (f *FS) openNew(o openReq) (*File, bool, error) {
	h := f.h
	op, name, rel, file := o.op, o.name, o.rel, o.file
	if o.flag&os.O_CREATE == 0 {
		return nil, false, h.pathErr(op, name, fs.ErrNotExist)
	}
	if !f.can(PermUpload) || o.readable && !f.can(PermDownload) {
		return nil, false, f.denied(op, name)
	}
	if rel == "." {
		return nil, false, h.pathErr(op, name, fs.ErrPermission)
	}
	pfi, err := h.d.Stat(parentOf(rel))
	if err != nil {
		return nil, false, h.pathErr(op, name, err)
	}
	if !pfi.IsDir() {
		return nil, false, h.pathErr(op, name, ErrNotDir)
	}
	if h.root != nil {
		if _, err := h.d.Lstat(rel); err == nil {
			// A dangling planted symlink: never create through it.
			return nil, false, h.pathErr(op, name, fs.ErrPermission)
		}
	}
	if err := h.reserveFile(); err != nil {
		return nil, false, h.pathErr(op, name, err)
	}
	n, err := h.newReplacement(rel, o.perm.Perm()&^h.s.umask, true, 0)
	if err != nil {
		h.addUsage(0, -1)
		return nil, false, h.pathErr(op, name, err)
	}
	n.ref(true)
	file.n = n
	file.owner = true // publishes on Close even if opened read-only
	return file, false, nil
}

// openDisk opens an existing regular file nobody has open: in place, or
// (O_TRUNC for writing) as a replacement. Caller holds h.ns exclusively.
func (f *FS) openDisk(o openReq, fi fs.FileInfo) (*File, bool, error) {
	h := f.h
	op, name, rel := o.op, o.name, o.rel
	if o.excl {
		return nil, false, h.pathErr(op, name, fs.ErrExist)
	}
	if o.readable && !f.can(PermDownload) || o.writable && !f.can(PermOverwrite) {
		return nil, false, f.denied(op, name)
	}
	var n *node
	var err error
	if o.writable && o.flag&os.O_TRUNC != 0 {
		n, err = h.newReplacement(rel, clientMode(fi.Mode()), false, h.d.plainSize(fi))
	} else {
		n, err = h.openExisting(rel, o.writable)
	}
	if err != nil {
		return nil, false, h.pathErr(op, name, err)
	}
	return f.attach(o, n)
}

// openExisting is openInPlace for a client's handle: a writable one owns
// the inode.
func (h *home) openExisting(rel string, writable bool) (*node, error) {
	n, err := h.openInPlace(rel, writable)
	if err == nil && writable {
		err = n.ownInode()
	}
	return n, err
}

// attach makes n the node of o's File.
func (f *FS) attach(o openReq, n *node) (*File, bool, error) {
	n.ref(o.writable)
	o.file.n = n
	o.file.owner = o.writable
	return o.file, false, nil
}

func (n *node) ref(writable bool) {
	n.h.mu.Lock()
	n.refs++
	if writable {
		n.writers++
	}
	n.h.mu.Unlock()
}

// acquire opens rel for internal reading, sharing an open node.
func (f *FS) acquire(op, name, rel string) (*node, error) {
	h := f.h
	h.ns.Lock()
	defer h.ns.Unlock()
	n := h.lookup(rel)
	if n == nil {
		var err error
		if n, err = h.openInPlace(rel, false); err != nil {
			return nil, h.pathErr(op, name, err)
		}
	}
	n.ref(false)
	return n, nil
}

func (f *FS) releaseNode(n *node) error {
	f.h.ns.Lock()
	defer f.h.ns.Unlock()
	return n.release()
}

// Stat returns the client view of name: plaintext size computed from the
// ciphertext length (never decrypting), or the open writer's size.
func (f *FS) Stat(name string) (fs.FileInfo, error) { return f.stat("stat", name, true) }

// Lstat is Stat without following a final symlink: symlinks planted in the
// store are reported as symlinks.
func (f *FS) Lstat(name string) (fs.FileInfo, error) { return f.stat("lstat", name, false) }

func (f *FS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	if f.view != nil {
		return f.view.stat(name, follow)
	}
	// Stat and Lstat need no right. With follow, planted links are
	// refused (never followed); Lstat reports them.
	e, err := f.enter(op, name, pre{lock: lockShared, final: follow, open: true})
	if err != nil {
		return nil, err
	}
	defer e.unlock()
	h := f.h
	base := path.Base(e.rel)
	if e.n != nil {
		fi, err := e.n.info(base)
		if err != nil {
			return nil, h.pathErr(op, name, err)
		}
		return fi, nil
	}
	fi := e.fi
	switch {
	case e.absent:
		err = fs.ErrNotExist
	case fi == nil:
		_, err = h.probe(e.rel) // missing, or an error the check left to us
		if err == nil {
			err = fs.ErrNotExist // it appeared under the lock: impossible
		}
	}
	if err != nil {
		return nil, h.pathErr(op, name, err)
	}
	return h.toInfo(base, fi), nil
}

// toInfo converts a disk FileInfo to the client view.
func (h *home) toInfo(base string, fi fs.FileInfo) fs.FileInfo {
	mode := fi.Mode()&fs.ModeType | clientMode(fi.Mode())
	var size int64
	switch {
	case fi.Mode().IsRegular():
		size = h.d.plainSize(fi)
	case fi.IsDir():
		size = 0
	default:
		size = fi.Size()
	}
	return &fileInfo{name: base, size: size, mode: mode, mtime: fi.ModTime()}
}

// ReadDir lists directory name sorted by name, hiding the store's reserved
// entries. Sizes come from the directory's entries (one lstat each, no
// file is opened); open writers' sizes win.
func (f *FS) ReadDir(name string) ([]fs.FileInfo, error) {
	if f.view != nil {
		return f.view.readDir(name)
	}
	const op = "readdir"
	rel, err := f.checked(op, name, PermList)
	if err != nil {
		return nil, err
	}
	if f.h.lookup(rel) != nil {
		return nil, f.h.pathErr(op, name, ErrNotDir)
	}
	ds := &dirStream{}
	defer ds.close()
	out, err := ds.read(f.h, rel, -1)
	if err != nil {
		return nil, f.h.pathErr(op, name, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// The preamble of every operation on a client name is FS.enter: it
// cleans the name (refusing invalid and reserved ones), checks the rights,
// takes the namespace lock and applies the symlink policy (home.noLinks)
// before the operation touches the disk. An operation states what it
// needs in a pre and gets its entry back; there is no other way to turn a
// client name into a name on disk, so a new operation cannot skip a step.

// lockKind is how the preamble takes the namespace lock h.ns.
type lockKind uint8

const (
	// lockNone: rights only. For operations that lock per step and apply
	// the symlink policy in the step that touches the disk (ReadDir's
	// dirStream.read, Checksums through Stat, ReadDirMeta).
	lockNone lockKind = iota
	lockShared
	lockExclusive
)

// pre is what an operation needs from the preamble.
type pre struct {
	// need: every one of these rights; anyOf (if set): at least one.
	// Operations whose right depends on the entry's state (OpenFile,
	// Truncate: new or existing file) pass neither and check once they
	// know it.
	need, anyOf Perm
	// notHome refuses the home itself ("."), like a missing right
	// (remove, rename).
	notHome bool
	lock    lockKind
	// final: the name itself must not be a symlink either (operations
	// that would follow it).
	final bool
	// open: an open file at the name is the entry. It is looked up first
	// and, if there is one, the symlink policy is not applied again: its
	// name passed it when it was opened, the namespace lock has kept
	// anyone from changing the name since, and a new file may not be on
	// disk yet.
	open bool
	// direct: storage v2 only, with open: the name is not checked here;
	// the operation opens it at once, in one index view, and looks at it
	// only if that fails (v2 has no links, so the check is only a
	// lookup). For opens of existing files.
	direct bool
}

// entry is a client name past the preamble.
type entry struct {
	rel string // cleaned name, relative to the home
	// n is the open file at rel (pre.open only; nil if none).
	n *node
	// fi is what the symlink check saw at rel (lstat; nil when the name
	// does not exist, when an open file answered, or without a lock).
	fi fs.FileInfo
	// absent: the check found nothing at rel, and nothing can be there
	// while the lock is held (storage v2, see linkFreeAbsent).
	absent bool
	// direct: the check was left to the operation (pre.direct).
	direct bool
	unlock func() // releases the lock taken; a no-op for lockNone
}

// enter is the preamble (see above). On success the caller must call
// e.unlock.
func (f *FS) enter(op, name string, p pre) (entry, error) {
	rel, err := cleanName(op, name)
	if err != nil {
		return entry{}, err
	}
	if !f.can(p.need) || p.anyOf != 0 && f.perm&p.anyOf == 0 || p.notHome && rel == "." {
		return entry{}, f.denied(op, name)
	}
	e := entry{rel: rel, unlock: func() {}}
	h := f.h
	switch p.lock {
	case lockNone:
		return e, nil
	case lockShared:
		h.ns.RLock()
		e.unlock = h.ns.RUnlock
	default:
		h.ns.Lock()
		e.unlock = h.ns.Unlock
	}
	if p.open {
		if e.n = h.lookup(rel); e.n != nil {
			return e, nil
		}
	}
	if p.direct && h.root == nil && rel != "." {
		e.direct = true
		return e, nil
	}
	if e.fi, e.absent, err = h.linkFreeAbsent(rel, p.final); err != nil {
		e.unlock()
		return entry{}, h.pathErr(op, name, err)
	}
	return e, nil
}

// checked is enter without a lock, returning the cleaned name: for
// operations that lock per step (see lockNone).
func (f *FS) checked(op, name string, need Perm) (string, error) {
	e, err := f.enter(op, name, pre{need: need})
	return e.rel, err
}

// Mkdir creates directory name.
func (f *FS) Mkdir(name string, perm fs.FileMode) error { return f.mkdir(name, perm, false) }

// MkdirAll creates directory name and missing parents.
func (f *FS) MkdirAll(name string, perm fs.FileMode) error { return f.mkdir(name, perm, true) }

// mkdir is Mkdir, or MkdirAll with all.
func (f *FS) mkdir(name string, perm fs.FileMode, all bool) error {
	if f.view != nil {
		return f.view.mkdir(name, perm, all)
	}
	const op = "mkdir"
	e, err := f.enter(op, name, pre{need: PermMkdir, lock: lockExclusive})
	if err != nil {
		return err
	}
	defer e.unlock()
	if all {
		return f.h.mkdirAll(op, name, e.rel, perm)
	}
	h, rel := f.h, e.rel
	if rel == "." || h.lookup(rel) != nil {
		return h.pathErr(op, name, fs.ErrExist)
	}
	if err := h.mkdirClient(rel, perm.Perm()&^h.s.umask); err != nil {
		return h.pathErr(op, name, err)
	}
	return nil
}

// mkdirAll is MkdirAll past the preamble. Caller holds h.ns exclusively.
func (h *home) mkdirAll(op, name, rel string, perm fs.FileMode) error {
	for p := rel; p != "."; p = parentOf(p) {
		if h.lookup(p) != nil {
			return h.pathErr(op, name, ErrNotDir)
		}
	}
	if rel == "." {
		return nil
	}
	for p := rel; p != "."; p = parentOf(p) {
		if fi, err := h.d.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return h.pathErr(op, name, fs.ErrPermission) // never through a planted link
		}
	}
	if fi, err := h.d.Stat(rel); err == nil && !fi.IsDir() {
		return h.pathErr(op, name, ErrNotDir) // as os.MkdirAll
	}
	var created []string // missing components, deepest first
	for p := rel; p != "."; p = parentOf(p) {
		if _, err := h.d.Lstat(p); err == nil {
			break
		}
		created = append(created, p)
	}
	if err := h.d.MkdirAll(rel, 0o700); err != nil {
		return h.pathErr(op, name, err)
	}
	for _, p := range created {
		if err := h.chmodClient(p, perm.Perm()&^h.s.umask, true); err != nil {
			return h.pathErr(op, name, err)
		}
	}
	return nil
}

// Remove removes a file or an empty directory.
func (f *FS) Remove(name string) error { return f.remove("remove", name, false) }

// RemoveAll removes name and everything below it. A missing name is not an
// error. The home itself cannot be removed.
func (f *FS) RemoveAll(name string) error { return f.remove("removeall", name, true) }

// remove is Remove, or RemoveAll with all.
func (f *FS) remove(op, name string, all bool) error {
	if f.view != nil {
		return f.view.on(op, name, func(t *FS, inner string) error { return t.remove(op, inner, all) })
	}
	e, err := f.enter(op, name, pre{need: PermDelete, notHome: true, lock: lockExclusive})
	if err != nil {
		return err
	}
	defer e.unlock()
	h, rel := f.h, e.rel
	n := h.lookup(rel)
	fi, err := h.d.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist) && n != nil:
		n.detach() // a new file not yet published
		h.dropMetaLogged(rel)
		return nil
	case errors.Is(err, fs.ErrNotExist) && all:
		if h.pendingAncestor(rel) {
			return h.pathErr(op, name, ErrNotDir)
		}
		return nil
	case err != nil:
		return h.pathErr(op, name, err)
	case !fi.IsDir():
		if err := h.d.Remove(rel); err != nil {
			return h.pathErr(op, name, err)
		}
		h.forget(fi, n)
		h.dropMetaLogged(rel)
		return nil
	case !all:
		if err := h.removeEmptyDir(rel); err != nil {
			return h.pathErr(op, name, err)
		}
		return nil
	}
	if err := h.removeTree(rel); err != nil {
		return h.pathErr(op, name, err)
	}
	return nil
}

// dropMetaLogged drops the metadata of an entry that is gone. The entry's
// removal already happened, so a failure is not the client's: it is
// logged (the entry's properties would otherwise pass to a later entry of
// the same name unnoticed).
func (h *home) dropMetaLogged(rel string) {
	if err := h.dropMeta(rel); err != nil {
		h.logger().Warn("vfs: cannot drop metadata", "home", h.name, "path", "/"+rel, "err", err)
	}
}

// forget updates usage for the disk entry fi that was just unlinked, and
// detaches n (the node open under that name, if any). Caller holds ns.
func (h *home) forget(fi fs.FileInfo, n *node) {
	if fi != nil && fi.Mode().IsRegular() {
		h.mu.Lock()
		inPlace := h.byID[idOf(fi)]
		h.mu.Unlock()
		if inPlace != nil {
			// Its bytes are freed when its last handle closes.
			h.addUsage(0, -1)
			if inPlace != n {
				inPlace.detach()
			}
		} else {
			h.addUsage(-h.d.plainSize(fi), -1)
		}
	}
	if n != nil {
		n.detach()
	}
}

// removeEmptyDir removes directory rel if it holds nothing but the
// store's own entries (its metadata sidecar), which go with it: Remove of
// a directory, and Rename of a directory over an empty one.
func (h *home) removeEmptyDir(rel string) error {
	names, err := h.emptyDir(rel)
	if err != nil {
		return err
	}
	h.forgetMeta(rel, true)
	for _, n := range names {
		if err := h.d.Remove(path.Join(rel, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return h.d.Remove(rel)
}

// emptyDir checks that directory rel holds nothing but the store's own
// entries and no open file, and returns its entries.
func (h *home) emptyDir(rel string) ([]string, error) {
	if len(h.nodesUnder(rel)) > 0 {
		return nil, ErrNotEmpty
	}
	d, err := h.d.Open(rel)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if !isReserved(n) {
			return nil, ErrNotEmpty
		}
	}
	return names, nil
}

// removeTree removes directory rel and everything below it. Caller holds
// h.ns exclusively.
func (h *home) removeTree(rel string) error {
	h.forgetMeta(rel, true)
	var files []fs.FileInfo
	werr := h.walk(rel, false, func(_ string, fi fs.FileInfo) error {
		if fi.Mode().IsRegular() {
			files = append(files, fi)
		}
		return nil
	})
	err := h.d.RemoveAll(rel)
	if werr == nil {
		for _, fi := range files {
			h.forget(fi, nil)
		}
	}
	for _, n := range h.nodesUnder(rel) {
		n.detach()
	}
	if werr != nil || err != nil {
		// The files removed are not all known: count the home again.
		h.recount()
	}
	return err
}

// recount walks the home again to repair the usage counters after a
// partial failure. Caller holds ns exclusively.
func (h *home) recount() {
	var used, files int64
	if err := h.walk(".", false, func(_ string, fi fs.FileInfo) error {
		if fi.Mode().IsRegular() {
			used += h.d.plainSize(fi)
			files++
		}
		return nil
	}); err != nil {
		// Counts from a partial walk would free quota that is in use:
		// keep the old ones.
		h.logger().Error("vfs: cannot recount usage", "home", h.name, "err", err)
		return
	}
	h.mu.Lock()
	seen := map[*node]bool{}
	var extra []*node
	for _, n := range h.tmpNodes {
		if n.countsFile {
			files++
		}
		seen[n] = true
		extra = append(extra, n)
	}
	h.used, h.files = used, files
	h.mu.Unlock()
	// Unpublished replacements are not on the disk walk: add their bytes.
	// (Detached in-place files are unlinked, also not walked, but their
	// nodes cannot be found any more; their bytes count until their last
	// close subtracts them: a small, self-healing error.)
	for _, n := range extra {
		n.mu.Lock()
		c := n.counted
		n.mu.Unlock()
		h.addUsage(c, 0)
	}
}

// Rename moves oldname to newname. With overwrite=false an existing
// newname gives fs.ErrExist; with overwrite=true a file replaces a file and
// a directory an empty directory (needs PermOverwrite too). Metadata moves
// with the entry; open handles follow it. A file over a file is one
// rename(2), atomic on disk; a directory over an empty directory is an
// atomic exchange followed by the removal of the old target
// (renameDirOverDir).
func (f *FS) Rename(oldname, newname string, overwrite bool) error {
	if f.view != nil {
		return f.view.rename(oldname, newname, overwrite)
	}
	const op = "rename"
	// Two names: both pass the preamble's name and rights checks first,
	// then, under one exclusive lock, planRename applies the symlink
	// policy to both in rename(2)'s order.
	both := pre{need: PermRename, notHome: true}
	o, err := f.enter(op, oldname, both)
	if err != nil {
		return err
	}
	t, err := f.enter(op, newname, both)
	if err != nil {
		return err
	}
	h := f.h
	h.ns.Lock()
	defer h.ns.Unlock()
	p := &renamePlan{op: op, oldname: oldname, newname: newname, ro: o.rel, rn: t.rel}
	if done, err := h.planRename(p); done || err != nil {
		return err
	}
	if p.tOnDisk || p.tn != nil {
		if err := f.checkRenameTarget(p, overwrite); err != nil {
			return err
		}
		if p.srcDir {
			return h.renameDirOverDir(p)
		}
	}
	return h.moveRenamed(p)
}

// renamePlan is one Rename: the names, and what is at each.
type renamePlan struct {
	op, oldname, newname string
	ro, rn               string      // cleaned names
	on, tn               *node       // open files at the source and the target
	ofi, tfi             fs.FileInfo // disk entries (nil if none)
	srcOnDisk, srcDir    bool
	tOnDisk              bool
}

// planRename checks the names in rename(2)'s order (the source's parent,
// the target's parent, the source, the target) and fills in p. done: the
// rename has nothing to do (same name). Caller holds h.ns exclusively.
func (h *home) planRename(p *renamePlan) (done bool, err error) {
	op, ro, rn := p.op, p.ro, p.rn
	if err := h.noLinks(ro, false); err != nil {
		return false, h.pathErr(op, p.oldname, err)
	}
	if err := h.noLinks(rn, false); err != nil {
		return false, h.pathErr(op, p.newname, err)
	}
	if err := h.parentDir(ro); err != nil {
		return false, h.pathErr(op, p.oldname, err)
	}
	if err := h.parentDir(rn); err != nil {
		return false, h.pathErr(op, p.newname, err)
	}
	p.on = h.lookup(ro)
	ofi, oerr := h.d.Lstat(ro)
	p.srcOnDisk = oerr == nil
	if !p.srcOnDisk && (p.on == nil || !errors.Is(oerr, fs.ErrNotExist)) {
		return false, h.pathErr(op, p.oldname, oerr)
	}
	p.ofi = ofi
	p.srcDir = p.srcOnDisk && ofi.IsDir()
	if ro == rn {
		return true, nil
	}
	if p.srcDir && under(rn, ro) {
		return false, h.pathErr(op, p.oldname, fs.ErrInvalid)
	}
	p.tn = h.lookup(rn)
	tfi, terr := h.d.Lstat(rn)
	if terr != nil && !errors.Is(terr, fs.ErrNotExist) {
		return false, h.pathErr(op, p.newname, terr)
	}
	p.tOnDisk = terr == nil
	p.tfi = tfi
	return false, nil
}

// checkRenameTarget decides whether an existing target may be replaced:
// a file by a file, a directory by a directory if the target is empty.
// Caller holds h.ns exclusively.
func (f *FS) checkRenameTarget(p *renamePlan, overwrite bool) error {
	h := f.h
	if !overwrite {
		return h.pathErr(p.op, p.newname, fs.ErrExist)
	}
	if !f.can(PermOverwrite) {
		return f.denied(p.op, p.newname)
	}
	tDir := p.tOnDisk && p.tfi.IsDir()
	switch {
	case under(p.ro, p.rn):
		return h.pathErr(p.op, p.newname, ErrNotEmpty) // onto its own ancestor
	case tDir && !p.srcDir:
		return h.pathErr(p.op, p.newname, ErrIsDir)
	case !tDir && p.srcDir:
		return h.pathErr(p.op, p.newname, ErrNotDir)
	case tDir:
		if _, err := h.emptyDir(p.rn); err != nil {
			return h.pathErr(p.op, p.newname, err)
		}
	}
	return nil
}

// renameDirOverDir renames directory ro over the empty directory rn. The
// two are exchanged atomically (renameat2 RENAME_EXCHANGE: rn is never
// missing on disk), then the old target, now under ro, is removed; a
// crash between the two leaves that empty directory under the old name.
// Where the filesystem cannot exchange, the target is removed first and
// the source renamed (a crash between leaves the source under its old
// name). Either way h.ns is held, so no client of this server sees an
// intermediate state. Caller holds h.ns exclusively.
func (h *home) renameDirOverDir(p *renamePlan) error {
	h.forgetMeta(p.ro, false) // cached by directory name: write it out first
	h.forgetMeta(p.rn, true)  // the target's sidecar goes with it
	var err error
	if h.root == nil {
		// Storage v2: one index transaction replaces the empty target,
		// once its own entries (a sidecar) are gone.
		names, err := h.emptyDir(p.rn)
		if err != nil {
			return h.pathErr(p.op, p.newname, err)
		}
		for _, n := range names {
			if err := h.d.Remove(path.Join(p.rn, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return h.pathErr(p.op, p.newname, err)
			}
		}
		if err := h.d.Rename(p.ro, p.rn); err != nil {
			return h.pathErr(p.op, p.oldname, err)
		}
		for _, n := range h.nodesUnder(p.ro) {
			n.rekey(p.rn + n.key[len(p.ro):])
		}
		return nil
	}
	err = exchange(h.root, p.ro, p.rn)
	if err != nil {
		h.logger().Debug("vfs: directory exchange unavailable, removing the target first", "home", h.name, "err", err)
		if err := h.removeEmptyDir(p.rn); err != nil {
			return h.pathErr(p.op, p.newname, err)
		}
		if err := h.d.Rename(p.ro, p.rn); err != nil {
			if h.d.Mkdir(p.rn, 0o700) == nil { // put the target back
				h.d.Chmod(p.rn, p.tfi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
			}
			return h.pathErr(p.op, p.oldname, err)
		}
	}
	for _, n := range h.nodesUnder(p.ro) {
		n.rekey(p.rn + n.key[len(p.ro):])
	}
	if err == nil {
		if rerr := h.removeEmptyDir(p.ro); rerr != nil {
			h.logger().Warn("vfs: cannot remove the directory a rename replaced", "home", h.name, "path", "/"+p.ro, "err", rerr)
		}
	}
	return nil
}

// moveRenamed renames on disk (or, for a new file not yet published,
// frees the target name) and moves open files and metadata to the new
// name. Caller holds h.ns exclusively.
func (h *home) moveRenamed(p *renamePlan) error {
	op, ro, rn := p.op, p.ro, p.rn
	var mv *metaMove
	var err error
	if p.srcDir {
		h.forgetMeta(ro, false) // cached by directory name: write it out first
	} else if mv, err = h.prepareMove(ro, rn); err != nil {
		h.logger().Warn("vfs: cannot move metadata", "home", h.name, "from", "/"+ro, "to", "/"+rn, "err", err)
	}
	if p.srcOnDisk {
		if err := h.d.Rename(ro, rn); err != nil {
			return h.pathErr(op, p.oldname, err)
		}
	} else {
		pfi, err := h.d.Stat(parentOf(rn))
		if err != nil {
			return h.pathErr(op, p.newname, err)
		}
		if !pfi.IsDir() {
			return h.pathErr(op, p.newname, ErrNotDir)
		}
		if p.tOnDisk {
			// The source is a new file not yet published: the name it
			// will take is freed now, as a rename would.
			if err := h.d.Remove(rn); err != nil {
				return h.pathErr(op, p.newname, err)
			}
		}
	}
	if p.tOnDisk && !p.tfi.IsDir() {
		h.forget(p.tfi, nil)
	}
	if p.tn != nil && p.tn != p.on {
		p.tn.detach()
	}
	if p.srcDir {
		for _, n := range h.nodesUnder(ro) {
			n.rekey(rn + n.key[len(ro):])
		}
		return nil
	}
	if p.on != nil {
		p.on.rekey(rn)
	}
	if mv != nil {
		if err := h.moveMeta(mv); err != nil {
			h.logger().Warn("vfs: cannot move metadata", "home", h.name, "from", "/"+ro, "to", "/"+rn, "err", err)
		}
	}
	return nil
}

// parentDir checks that rel's parent is an existing directory.
func (h *home) parentDir(rel string) error {
	if h.pendingAncestor(rel) {
		return ErrNotDir
	}
	p := parentOf(rel)
	if p == "." {
		return nil
	}
	fi, err := h.d.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return ErrNotDir
	}
	return nil
}

// Chtimes sets access and modification times (zero time: unchanged). On
// an open file they stick: later flushes re-apply them. Cached hashes stay
// valid.
func (f *FS) Chtimes(name string, atime, mtime time.Time) error {
	if f.view != nil {
		return f.view.on("chtimes", name, func(t *FS, inner string) error { return t.Chtimes(inner, atime, mtime) })
	}
	const op = "chtimes"
	e, err := f.enter(op, name, pre{need: PermUpload, lock: lockExclusive, final: true, open: true})
	if err != nil {
		return err
	}
	defer e.unlock()
	h, rel := f.h, e.rel
	if e.n != nil {
		if err := e.n.setTimes(atime, mtime); err != nil {
			return h.pathErr(op, name, err)
		}
		return nil
	}
	before, err := h.d.Stat(rel)
	if err != nil {
		return h.pathErr(op, name, err)
	}
	if err := h.d.Chtimes(rel, atime, mtime); err != nil {
		return h.pathErr(op, name, err)
	}
	if before.Mode().IsRegular() {
		after, err := h.d.Stat(rel)
		if err == nil {
			h.retimeHashes(rel, before, after)
		}
	}
	return nil
}

// retimeHashes keeps cached hashes valid across a time change that did not
// touch the content.
func (h *home) retimeHashes(rel string, before, after fs.FileInfo) {
	m, err := h.readMeta(rel)
	if err != nil || m.Hashes == nil {
		return
	}
	ps := h.d.plainSize(before)
	if m.Hashes.Size != ps || !m.Hashes.ModTime.Equal(before.ModTime()) {
		return
	}
	hs := *m.Hashes
	hs.ModTime = after.ModTime()
	h.setHashes(rel, &hs)
}

// Chmod sets the permission bits (mode & 0777), kept on the disk entry and
// reported by Stat.
func (f *FS) Chmod(name string, mode fs.FileMode) error {
	if f.view != nil {
		return f.view.on("chmod", name, func(t *FS, inner string) error { return t.Chmod(inner, mode) })
	}
	const op = "chmod"
	e, err := f.enter(op, name, pre{need: PermChmod, lock: lockExclusive, final: true, open: true})
	if err != nil {
		return err
	}
	defer e.unlock()
	h, rel := f.h, e.rel
	if n := e.n; n != nil {
		h.mu.Lock()
		replacing := n.tmp != ""
		h.mu.Unlock()
		n.mu.Lock()
		n.mode = mode.Perm()
		var err error
		if !replacing {
			err = n.back.f.Chmod(diskMode(mode, false))
		}
		n.mu.Unlock()
		if err != nil {
			return h.pathErr(op, name, err)
		}
		return nil
	}
	fi, err := h.d.Stat(rel)
	if err != nil {
		return h.pathErr(op, name, err)
	}
	if err := h.chmodClient(rel, mode, fi.IsDir()); err != nil {
		return h.pathErr(op, name, err)
	}
	return nil
}

// Truncate changes the size of file name, through its shared state if it
// is open (OpenSSH scp truncates by path while its handle is open).
func (f *FS) Truncate(name string, size int64) error {
	if f.view != nil {
		return f.view.on("truncate", name, func(t *FS, inner string) error { return t.Truncate(inner, size) })
	}
	const op = "truncate"
	if size < 0 {
		return f.h.pathErr(op, name, fs.ErrInvalid)
	}
	// Upload or Overwrite: depends on the entry, below.
	e, err := f.enter(op, name, pre{lock: lockExclusive, final: true, open: true})
	if err != nil {
		return err
	}
	h, rel, n := f.h, e.rel, e.n
	if n != nil {
		h.mu.Lock()
		created := n.created
		h.mu.Unlock()
		if !created && !f.can(PermOverwrite) || created && !f.can(PermUpload) {
			e.unlock()
			return f.denied(op, name)
		}
		if !n.back.rw {
			if err := n.upgrade(); err != nil {
				e.unlock()
				return h.pathErr(op, name, err)
			}
		}
		if err := n.ownInode(); err != nil {
			e.unlock()
			return h.pathErr(op, name, err)
		}
	} else {
		fi, err := h.d.Stat(rel)
		if err != nil {
			e.unlock()
			return h.pathErr(op, name, err)
		}
		if fi.IsDir() {
			e.unlock()
			return h.pathErr(op, name, ErrIsDir)
		}
		if !f.can(PermOverwrite) {
			e.unlock()
			return f.denied(op, name)
		}
		if n, err = h.openInPlace(rel, true); err == nil {
			err = n.ownInode()
		}
		if err != nil {
			e.unlock()
			return h.pathErr(op, name, err)
		}
	}
	n.ref(true) // a writer while it truncates: the node cannot be superseded meanwhile
	e.unlock()
	err = n.truncate(size)
	if ferr := n.flush(false); err == nil {
		err = ferr
	}
	h.ns.Lock()
	h.mu.Lock()
	n.writers--
	h.mu.Unlock()
	rerr := n.release()
	h.ns.Unlock()
	if err == nil {
		err = rerr
	}
	if err != nil {
		return h.pathErr(op, name, err)
	}
	return nil
}

// Symlink is refused: clients cannot create symlinks (ErrUnsupported).
func (f *FS) Symlink(oldname, newname string) error {
	if f.view != nil {
		return f.view.on("symlink", newname, func(t *FS, inner string) error { return t.Symlink(oldname, inner) })
	}
	return &fs.PathError{Op: "symlink", Path: newname, Err: ErrUnsupported}
}

// Readlink never reveals a link target: symlinks planted in the store give
// fs.ErrPermission, other entries fs.ErrInvalid.
func (f *FS) Readlink(name string) (string, error) {
	if f.view != nil {
		return f.view.readlink(name)
	}
	const op = "readlink"
	e, err := f.enter(op, name, pre{lock: lockShared, open: true})
	if err != nil {
		return "", err
	}
	defer e.unlock()
	h, rel := f.h, e.rel
	if e.n != nil {
		return "", h.pathErr(op, name, fs.ErrInvalid)
	}
	fi, err := h.d.Lstat(rel)
	if err != nil {
		return "", h.pathErr(op, name, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "", h.pathErr(op, name, fs.ErrPermission)
	}
	return "", h.pathErr(op, name, fs.ErrInvalid)
}

// MaxFileSize is the largest size a file of this FS may have (Options.
// MaxFileSize): protocols refuse an upload announcing more before reading it.
func (f *FS) MaxFileSize() int64 { return f.h.s.maxFileSize }

// IsView reports whether f is a user's view with shared folders
// (Store.View).
func (f *FS) IsView() bool { return f.view != nil }

// Usage reports the home's plaintext usage (files and dead properties),
// its quota and the disk.
func (f *FS) Usage() (Usage, error) {
	h := f.h
	h.mu.Lock()
	u := Usage{UsedBytes: h.used + h.props, Files: h.files, QuotaBytes: h.quota.Bytes, QuotaFiles: h.quota.Files}
	h.mu.Unlock()
	total, free, err := diskSpace(h.s.dir)
	if err != nil {
		return u, &fs.PathError{Op: "statfs", Path: "/", Err: h.classify("statfs", "/", err)}
	}
	u.DiskTotal, u.DiskFree = total, free
	return u, nil
}

// dirStream reads a directory in batches, like os.File.Readdir. Between
// reads it holds one file descriptor, the open directory it streams names
// from (so memory stays at one batch plus the names seen; reading every
// name at once would let a client holding many handles on a large
// directory take memory instead of descriptors). The handle counts
// against the home's handle limit like a file's. Each read resolves the
// directory again by name for the lstat of its batch (the symlink policy
// applies again) and closes that descriptor before returning.
type dirStream struct {
	d      diskFile
	seen   map[string]bool
	eof    bool
	extras []fs.FileInfo
	loaded bool
	// hide: a name not to list (a view's home top directory hides the
	// entry its shared prefix shadows).
	hide string
}

func (ds *dirStream) close() {
	if ds.d != nil {
		ds.d.Close()
		ds.d = nil
	}
	ds.seen, ds.extras = nil, nil
}

// read returns up to n entries (all remaining if n <= 0). With n > 0 it
// returns io.EOF when nothing is left.
func (ds *dirStream) read(h *home, rel string, n int) ([]fs.FileInfo, error) {
	h.ns.RLock()
	defer h.ns.RUnlock()
	var out []fs.FileInfo
	if !ds.eof {
		if err := h.noLinks(rel, true); err != nil {
			return nil, err
		}
		sub, err := h.subdir(rel)
		if err != nil {
			// os.Root reports a non-directory with an untyped error:
			// say what it is from the entry itself.
			if fi, lerr := h.d.Lstat(rel); lerr == nil && !fi.IsDir() {
				return nil, ErrNotDir
			}
			return nil, err
		}
		defer sub.Close()
		if ds.d == nil {
			d, err := sub.Open(".")
			if err != nil {
				return nil, err
			}
			if h.reservedFile(d) {
				d.Close()
				return nil, fs.ErrPermission
			}
			ds.d, ds.seen = d, map[string]bool{}
		}
		for !ds.eof && (n <= 0 || len(out) < n) {
			want := -1
			if n > 0 {
				want = n - len(out)
			}
			names, err := ds.d.Readdirnames(want)
			for _, name := range names {
				if isReserved(name) || name == ds.hide && rel == "." {
					continue
				}
				ds.seen[name] = true
				if nd := h.lookup(path.Join(rel, name)); nd != nil {
					if fi, err := nd.info(name); err == nil {
						out = append(out, fi)
					}
					continue
				}
				fi, err := listedEntry(ds.d, sub, name)
				if err != nil {
					continue // vanished meanwhile
				}
				out = append(out, h.toInfo(name, fi))
			}
			if err == io.EOF || want < 0 {
				ds.eof = true
				break
			}
			if err != nil {
				return out, err
			}
		}
		if ds.eof {
			ds.d.Close()
			ds.d = nil
		}
	}
	if ds.eof && !ds.loaded {
		ds.loaded = true
		h.mu.Lock()
		var pending []*node
		for k, nd := range h.nodes {
			if k != "." && parentOf(k) == rel && !ds.seen[path.Base(k)] && !(rel == "." && path.Base(k) == ds.hide) {
				pending = append(pending, nd)
			}
		}
		h.mu.Unlock()
		for _, nd := range pending {
			nd.h.mu.Lock()
			base := path.Base(nd.key)
			nd.h.mu.Unlock()
			if fi, err := nd.info(base); err == nil {
				ds.extras = append(ds.extras, fi)
			}
		}
		ds.seen = nil
	}
	for len(ds.extras) > 0 && (n <= 0 || len(out) < n) {
		out = append(out, ds.extras[0])
		ds.extras = ds.extras[1:]
	}
	if n > 0 && len(out) == 0 {
		return nil, io.EOF
	}
	return out, nil
}
