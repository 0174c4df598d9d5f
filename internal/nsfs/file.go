package nsfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/namespace"
)

// File is an open regular file of a Tree. It reads the content the file
// had when it was opened (or last published by this File), and writes
// copy-on-write into new segment blobs that Sync and Close publish.
//
// One inode should have at most one File open for writing at a time (vfs
// shares one per inode between its handles): a second writer's publish is
// refused, since its generation is not above the first one's.
type File struct {
	t        *Tree
	id       namespace.ID
	name     string
	writable bool
	// opened is the entry as OpenFile read it (OpenedInfo).
	opened fs.FileInfo

	mu    sync.Mutex
	cf    *content.File
	gen   uint64 // the generation cf writes at
	dirty bool   // written since the last publish
	// mtime: an explicit modification time (SetTimes), re-applied at
	// every publish, which would otherwise set the time of the publish.
	mtime time.Time
	// err is the first failed publish, sticky: the writes it carried are
	// lost, and every later write, Sync and Close reports it.
	err    error
	closed bool

	// later: a file of CreateLater, not in the index until its first
	// publish creates it as base in directory dir with mode.
	later bool
	dir   namespace.ID
	base  string
	mode  fs.FileMode
	// durable: Durable was called on a later file; the publish that
	// makes it visible is put on disk before it returns, as the client
	// asked (on a relaxed index, which would answer it before).
	durable bool

	// staged: content committed to durable blobs (layout, written at
	// generation layoutGen) that the index does not reference yet, with
	// the blobs those commits replaced (garbage). A later file's Sync
	// stages; the publish (Close, PublishAs) puts it in the index.
	staged    bool
	layout    content.Layout
	layoutGen uint64
	garbage   []blob.ID

	// inline holds the bytes of the small segments this File committed
	// and the index does not hold yet (content.Ref.InIndex): they go into
	// the index with the publish. Layouts never carry them.
	inline map[blob.ID][]byte

	// kr is the keyring cf reads and writes with. A key rotation while
	// this File holds content not yet published (pending or staged,
	// sealed under the old KEK, which no rotation pass sees) keeps the
	// old KEKs in it and sets rekey: the publish then re-wraps that
	// content under the new active KEK first.
	kr    *envelope.Keyring
	rekey bool
}

// options are the content options of f's content.File: the store's,
// with f's keyring and f's view of the blobs kept in the index.
func (f *File) options() content.Options {
	o := f.t.s.options()
	if f.kr == nil {
		f.kr = o.Keyring
	}
	o.Keyring = f.kr
	o.Inline = fileInline{f}
	return o
}

// fileInline reads and rewrites the index-kept blobs of f's content: its
// own unpublished ones first, then the index's. Callers hold f.mu (every
// content.File call does).
type fileInline struct{ f *File }

func (i fileInline) ReadInline(id blob.ID) ([]byte, error) {
	if b, ok := i.f.inline[id]; ok {
		return b, nil
	}
	return inIndex{i.f.t.s.ns}.ReadInline(id)
}

func (i fileInline) RewriteInline(id blob.ID, data []byte) error {
	if _, ok := i.f.inline[id]; ok {
		i.f.inline[id] = data
		return nil
	}
	return inIndex{i.f.t.s.ns}.RewriteInline(id, data)
}

// CreateLater starts a new file name that enters the index only when it
// is first published (Sync, Close), in the same transaction as its
// content: an upload's temporary costs no transaction of its own. Until
// then the name does not exist for anyone else; if it does by then, the
// publish fails with fs.ErrExist. The parent directory must exist.
func (t *Tree) CreateLater(name string, perm fs.FileMode) (*File, error) {
	const op = "open"
	f := &File{t: t, name: name, writable: true, later: true, id: namespace.NewID(), gen: 1, mode: perm & modeBits}
	var epoch uint64
	t.s.hold(f)
	err := t.view(op, name, func(tx *namespace.Tx) error {
		dir, base, err := t.parent(tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.Lookup(dir, base); err == nil {
			return namespace.ErrExist
		} else if !errors.Is(err, namespace.ErrNotFound) {
			return err
		}
		f.dir, f.base, epoch = dir, base, tx.Epoch()
		return nil
	})
	if err != nil {
		t.s.unhold(f)
		return nil, err
	}
	if f.cf, err = content.Open(t.s.blobs, f.id, content.Layout{}, f.gen, f.options()); err != nil {
		t.s.unhold(f)
		return nil, pathErr(op, name, err)
	}
	t.s.pin(f, epoch)
	f.mu.Lock()
	f.setKeyringLocked(t.s.options().Keyring) // as in OpenFile
	f.mu.Unlock()
	return f, nil
}

// ErrClosed is returned by every operation on a closed File.
var ErrClosed = fs.ErrClosed

// OpenFile opens the regular file name with os.O_* flags: O_RDONLY,
// O_WRONLY or O_RDWR, with O_CREATE (a new file has permission bits
// perm), O_EXCL and O_TRUNC.
func (t *Tree) OpenFile(name string, flag int, perm fs.FileMode) (*File, error) {
	const op = "open"
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	f := &File{t: t, name: name, writable: acc != os.O_RDONLY}
	var in namespace.Inode
	var epoch uint64
	lookup := func(tx *namespace.Tx) error {
		dir, base, err := t.parent(tx, name)
		if err != nil {
			return err
		}
		d, err := tx.Lookup(dir, base)
		switch {
		case err == nil && flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
			return namespace.ErrExist
		case errors.Is(err, namespace.ErrNotFound) && flag&os.O_CREATE != 0:
			if d.Inode, err = tx.Create(dir, base, namespace.File, perm&modeBits); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if in, err = tx.Inode(d.Inode); err != nil {
			return err
		}
		if in.Kind != namespace.File {
			return namespace.ErrIsDir
		}
		f.id, epoch = d.Inode, tx.Epoch()
		if flag&os.O_CREATE != 0 {
			epoch++ // an Update: what it did is seen from the next epoch on
		}
		return nil
	}
	var err error
	t.s.hold(f)
	if flag&os.O_CREATE != 0 {
		err = t.update(op, name, lookup)
	} else {
		err = t.view(op, name, lookup)
	}
	if err != nil {
		t.s.unhold(f)
		return nil, err
	}
	f.gen = in.Gen + 1
	f.opened = newInfo(baseName(name), f.id, in)
	if f.cf, err = content.Open(t.s.blobs, f.id, in.Data, f.gen, f.options()); err != nil {
		t.s.unhold(f)
		return nil, pathErr(op, name, err)
	}
	t.s.pin(f, epoch)
	// A key rotation's SetKeyring between the options above and the pin
	// did not see this file: it would read segments re-wrapped since
	// with a keyring lacking their new KEK.
	f.mu.Lock()
	f.setKeyringLocked(t.s.options().Keyring)
	f.mu.Unlock()
	if f.writable && flag&os.O_TRUNC != 0 && in.Data.Size > 0 {
		f.opened = nil // no longer what the open read
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// OpenedInfo is the file's entry as OpenFile read it, in the transaction
// that opened it: what a Stat right after the open would return, without
// that Stat's index view (nil for a file of CreateLater).
func (f *File) OpenedInfo() fs.FileInfo { return f.opened }

// setKeyring makes the file read the segments it has not opened yet, and
// write new ones, with o's keyring.
func (f *File) setKeyring(o content.Options) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setKeyringLocked(o.Keyring)
}

// setKeyringLocked switches f to keyring kr. Content f holds unpublished
// was sealed under the keyring it had: f keeps those KEKs until its
// publish re-wraps that content (rekey). Caller holds f.mu.
func (f *File) setKeyringLocked(kr *envelope.Keyring) {
	switch {
	case kr == f.kr:
		return
	case f.rekey || f.kr != nil && kr.Active() != f.kr.Active() && (f.dirty || f.staged || f.later):
		f.kr, f.rekey = kr.With(f.kr), true
	default:
		f.kr = kr
	}
	if f.cf != nil {
		f.cf.SetKeyring(f.kr)
	}
}

// Name is the name the file was opened with.
func (f *File) Name() string { return f.name }

// ID is the file's inode id.
func (f *File) ID() namespace.ID { return f.id }

func (f *File) check(op string, write bool) error {
	switch {
	case f.closed:
		return pathErr(op, f.name, ErrClosed)
	case write && !f.writable:
		return pathErr(op, f.name, fs.ErrPermission)
	case write && f.err != nil, f.cf == nil:
		return pathErr(op, f.name, f.err)
	}
	return nil
}

// ReadAt reads from the file's content (io.ReaderAt).
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	return f.cf.ReadAt(p, off)
}

// WriteAt writes at off (io.WriterAt); a write past the end fills the gap
// with zeros.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	f.dirty = true
	n, err := f.cf.WriteAt(p, off)
	return n, pathErr("write", f.name, err)
}

// WriteBehind writes out early what the next write would otherwise write
// out first (content.File.WriteBehind); a server calls it while it waits
// for the next request. An error is kept for the next write to report.
func (f *File) WriteBehind() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || !f.writable || f.err != nil || f.cf == nil {
		return nil
	}
	return pathErr("write", f.name, f.cf.WriteBehind())
}

// Truncate changes the file's size.
func (f *File) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	f.dirty = true
	return pathErr("truncate", f.name, f.cf.Truncate(size))
}

// Size is the file's plaintext size, its unpublished writes included.
func (f *File) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cf == nil {
		return 0
	}
	return f.cf.Size()
}

// Flush has nothing to do: writes are in their segments' pending blobs
// already. It reports a failed publish.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Sync makes what was written durable. It publishes it: the pending
// blobs are made durable and one index transaction makes them the file's
// content. A file of CreateLater, whose name is in the index only once
// it is published, stages it instead: the blobs are made durable and wait
// for the publish (Close, PublishAs), which then costs one transaction
// and no blob write.
func (f *File) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	if f.later {
		s := f.t.s
		s.publishing.RLock()
		err := f.commitLocked()
		s.publishing.RUnlock()
		return pathErr("sync", f.name, err)
	}
	return pathErr("sync", f.name, f.publishLocked(nil))
}

// Durable is what a client's fsync adds to Sync on a relaxed index
// (index.Options.Relaxed), which answers a publish before it is on disk:
// a file in the index has its publish committed now; a file not yet in
// it (CreateLater) will have the publish that makes it visible committed
// before that returns.
func (f *File) Durable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.later {
		f.durable = true
		return nil
	}
	return pathErr("sync", f.name, f.t.s.ns.Sync())
}

// PublishAs publishes what was written and moves the file to name, in
// one index transaction, with Rename's rules (a file replaces a file).
// An upload written under a temporary name is published this way: its
// content, its entry and the replacement of the old file under name are
// one atomic, durable step.
func (f *File) PublishAs(name string) error {
	_, _, err := f.PublishOver(name)
	return err
}

// PublishOver is PublishAs that also returns, seen in the same
// transaction, the file as published and what name was before (nil:
// nothing): an upload's quota count and handle table need them, and a
// Stat and an Lstat of their own would be two index views more per
// upload. Rename's rules apply: a directory at name is refused
// (namespace.ErrIsDir).
func (f *File) PublishOver(name string) (published, replaced fs.FileInfo, err error) {
	if err := checkName(name); err != nil {
		return nil, nil, pathErr("rename", name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("rename", true); err != nil {
		return nil, nil, err
	}
	t := f.t
	err = f.publishLocked(func(tx *namespace.Tx) error {
		published, replaced = nil, nil // a retried transaction starts afresh
		from, ob, err := t.parent(tx, f.name)
		if err != nil {
			return err
		}
		to, nb, err := t.parent(tx, name)
		if err != nil {
			return err
		}
		// What is at name (Rename refuses a directory, and reports any
		// other failure to look it up).
		if d, err := tx.Lookup(to, nb); err == nil {
			if in, err := tx.Inode(d.Inode); err == nil {
				replaced = newInfo(nb, d.Inode, in)
			}
		}
		if err := tx.Rename(from, ob, to, nb); err != nil {
			return err
		}
		in, err := tx.Inode(f.id)
		if err != nil {
			return err
		}
		published = newInfo(nb, f.id, in)
		return nil
	})
	if err != nil {
		return nil, nil, pathErr("rename", name, err)
	}
	f.name = name
	t.s.collectGarbage() // a file renamed over another
	if f.durable {
		if err := t.s.ns.Sync(); err != nil {
			return nil, nil, pathErr("fsync", name, err)
		}
	}
	return published, replaced, nil
}

// commitLocked commits what was written to durable blobs and stages the
// new layout for the next publish; the file then writes at the next
// generation. Caller holds f.mu and s.publishing shared (Collect would
// otherwise take the new blobs for orphans before they are staged).
func (f *File) commitLocked() error {
	if f.err != nil || !f.dirty {
		return f.err
	}
	s := f.t.s
	layout, garbage, err := f.cf.Commit()
	f.cf.Close()
	f.cf = nil
	if err != nil {
		f.err = fmt.Errorf("publish: %w", err)
		return f.err
	}
	for i, r := range layout.Segs {
		if r.Data != nil {
			if f.inline == nil {
				f.inline = map[blob.ID][]byte{}
			}
			f.inline[r.Blob] = r.Data
			layout.Segs[i].Data = nil
		}
	}
	for _, id := range garbage {
		if _, ok := f.inline[id]; ok {
			// Replaced before any publish: only this File ever had it.
			delete(f.inline, id)
		}
	}
	if f.later {
		// What a file not yet in the index replaced, only it ever had:
		// no reader, no index record, nothing for the collector.
		for _, id := range garbage {
			s.blobs.Delete(id)
		}
		s.stage(false, f.layout, garbage)
		garbage = nil
	}
	s.stage(true, layout, nil)
	f.staged, f.layout, f.layoutGen = true, layout, f.gen
	f.garbage = append(f.garbage, garbage...)
	f.gen++
	f.dirty = false
	if f.cf, err = content.Open(s.blobs, f.id, layout, f.gen, f.options()); err != nil {
		f.err = fmt.Errorf("reopen: %w", err)
		return f.err
	}
	return nil
}

// publishLocked commits the content and publishes it as the next
// generation, with then (if not nil) in the same transaction. A file
// removed meanwhile is not published: its blobs stay private to this
// File and go at Close. Caller holds f.mu.
func (f *File) publishLocked(then func(tx *namespace.Tx) error) error {
	if f.err != nil || !f.dirty && !f.later && !f.staged && then == nil {
		return f.err
	}
	s := f.t.s
	if !f.later {
		if gone, err := f.removed(); err != nil || gone {
			return err
		}
	}
	s.publishing.RLock()
	err := f.commitLocked()
	if err == nil && f.rekey && f.staged {
		// Sealed under a KEK a rotation retired meanwhile: re-wrapped
		// under the active one before the index names it.
		if _, err = content.Rewrap(s.blobs, fileInline{f}, f.id, f.layout, f.kr); err != nil {
			err = fmt.Errorf("re-wrap after a key rotation: %w", err)
		}
	}
	var epoch uint64
	if err == nil {
		err = s.ns.Update(func(tx *namespace.Tx) error {
			epoch = tx.Epoch() + 1
			if f.later {
				if err := tx.CreateID(f.dir, f.base, namespace.File, f.mode, f.id); err != nil {
					return err
				}
			}
			if f.staged {
				if err := tx.Publish(f.id, f.layoutGen, f.withInline(f.layout), f.garbage); err != nil {
					return err
				}
			}
			if !f.mtime.IsZero() && (f.staged || f.later) {
				if err := tx.SetAttr(f.id, 0, f.mtime); err != nil {
					return err
				}
			}
			if then != nil {
				return then(tx)
			}
			return nil
		})
	}
	s.publishing.RUnlock()
	if err != nil {
		if f.err == nil {
			f.err = fmt.Errorf("publish: %w", err)
		}
		return f.err
	}
	if f.staged {
		s.stage(false, f.layout, f.garbage)
		f.inline = nil // in the index now
		if f.rekey && !f.dirty {
			f.rekey = false
			f.setKeyringLocked(s.options().Keyring)
		}
	}
	f.staged, f.later, f.garbage = false, false, nil
	// The segments this publish replaced are garbage from this epoch on;
	// this File no longer reads them.
	s.pin(f, epoch)
	return nil
}

// removed reports whether the file's inode is gone from the index.
func (f *File) removed() (bool, error) {
	err := f.t.s.ns.View(func(tx *namespace.Tx) error {
		_, err := tx.Inode(f.id)
		return err
	})
	if errors.Is(err, namespace.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// Stat returns the file's entry: its size with unpublished writes, the
// mode and time in the index.
func (f *File) Stat() (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return nil, err
	}
	if f.later {
		mt := f.mtime
		if mt.IsZero() {
			mt = time.Now()
		}
		return &info{name: baseName(f.name), id: f.id, size: f.cf.Size(), mode: f.mode, mtime: mt}, nil
	}
	var i *info
	err := f.t.s.ns.View(func(tx *namespace.Tx) error {
		in, err := tx.Inode(f.id)
		if err != nil {
			return err
		}
		i = newInfo(baseName(f.name), f.id, in)
		return nil
	})
	if errors.Is(err, namespace.ErrNotFound) {
		// Removed while open: still a file of its own.
		i, err = &info{name: baseName(f.name), id: f.id, mode: 0o600}, nil
	}
	if err != nil {
		return nil, pathErr("stat", f.name, err)
	}
	i.size = f.cf.Size()
	if !f.mtime.IsZero() {
		i.mtime = f.mtime
	}
	return i, nil
}

func baseName(name string) string {
	_, b := split(name)
	return b
}

// Chmod sets the file's permission bits.
func (f *File) Chmod(mode fs.FileMode) error {
	f.mu.Lock()
	if f.later {
		f.mode = mode & modeBits
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	// Most chmods of an upload set the mode it has (vfs publishes with
	// the client's mode): no transaction for those.
	var cur fs.FileMode
	err := f.t.s.ns.View(func(tx *namespace.Tx) error {
		in, err := tx.Inode(f.id)
		cur = in.Mode
		return err
	})
	if err == nil && cur&modeBits == mode&modeBits {
		return nil
	}
	return f.attr("chmod", func(tx *namespace.Tx) error { return tx.SetMode(f.id, mode) })
}

// SetTimes sets the file's modification time (zero: unchanged); it stays
// across later publishes of this File.
func (f *File) SetTimes(_, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	f.mu.Lock()
	f.mtime = mtime.UTC()
	later := f.later
	f.mu.Unlock()
	if later {
		return nil // set when it is created
	}
	return f.attr("chtimes", func(tx *namespace.Tx) error { return tx.SetAttr(f.id, 0, mtime) })
}

func (f *File) attr(op string, fn func(tx *namespace.Tx) error) error {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return pathErr(op, f.name, ErrClosed)
	}
	err := f.t.s.ns.Update(fn)
	if errors.Is(err, namespace.ErrNotFound) {
		return nil // removed while open: its attributes went with it, as on a disk
	}
	return pathErr(op, f.name, err)
}

// Close publishes what was written and closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, ErrClosed)
	}
	err := f.publishLocked(nil)
	if f.staged {
		// Staged and never published (aborted, or the publish failed):
		// the blobs are this File's alone.
		f.dropStagedLocked()
	}
	f.closed = true
	if f.cf != nil {
		f.cf.Close()
		f.cf = nil
	}
	f.t.s.mu.Lock()
	delete(f.t.s.pins, f)
	f.t.s.mu.Unlock()
	// Garbage this file kept (it read segments replaced meanwhile), or
	// made (its publish replaced segments).
	f.t.s.collectGarbage()
	return pathErr("close", f.name, err)
}

// Abort closes the file without publishing what was written since the
// last publish.
func (f *File) Abort() error {
	f.mu.Lock()
	f.dirty = false
	f.dropStagedLocked()
	f.later = false
	f.mu.Unlock()
	return f.Close()
}

// dropStagedLocked forgets content staged and never published. A file
// never in the index (CreateLater) wrote every blob of it alone: they are
// deleted now. Another file's failed publish leaves its new blobs for
// the collector (its staged layout shares blobs with the published one).
// Caller holds f.mu.
func (f *File) dropStagedLocked() {
	if !f.staged {
		return
	}
	s := f.t.s
	s.stage(false, f.layout, f.garbage)
	f.inline = nil
	if f.later {
		for _, r := range f.layout.Segs {
			if !r.InIndex {
				s.blobs.Delete(r.Blob)
			}
		}
		for _, id := range f.garbage {
			s.blobs.Delete(id)
		}
	}
	f.staged, f.garbage = false, nil
}

// withInline returns l with the bytes of the segments f holds for the
// index (tx.Publish writes them along).
func (f *File) withInline(l content.Layout) content.Layout {
	if len(f.inline) == 0 {
		return l
	}
	l.Segs = slices.Clone(l.Segs)
	for i, r := range l.Segs {
		if b, ok := f.inline[r.Blob]; ok && r.InIndex {
			l.Segs[i].Data = b
		}
	}
	return l
}
