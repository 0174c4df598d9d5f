package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/namespace"
)

// backing is the disk file under an envelope.File. f is only replaced
// (upgrade from read-only to read-write) with node.mu held exclusively, and
// every use of the envelope.File holds node.mu, so it needs no lock itself.
type backing struct {
	f  diskFile
	rw bool

	// writeback is set on replacements, which are fsynced when published.
	// Every writebackBytes written, the kernel is asked to start writing
	// the file's dirty pages (sync_file_range SYNC_FILE_RANGE_WRITE), so
	// the disk works while the upload goes on and the publishing fsync
	// waits for the last few MiB instead of the whole file: for 1 GiB on
	// this project's machines, 0.3 s instead of 0.5-0.75 s after the last
	// byte. PostgreSQL (backend_flush_after) and RocksDB (bytes_per_sync)
	// do the same. It is a hint only: durability still comes from fsync.
	writeback bool
	unsynced  atomic.Int64 // bytes written since writeback was last started
	kicks     atomic.Int64 // writebacks started (for tests)
}

// writebackBytes: large enough that a sequential upload asks rarely (one
// system call per 8 MiB), small enough that little is left for fsync.
const writebackBytes = 8 << 20

func (b *backing) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }
func (b *backing) Truncate(size int64) error               { return b.f.Truncate(size) }

func (b *backing) WriteAt(p []byte, off int64) (int, error) {
	n, err := b.f.WriteAt(p, off)
	if b.writeback && b.unsynced.Add(int64(n)) >= writebackBytes {
		b.unsynced.Store(0)
		b.startWriteback()
	}
	return n, err
}

// plainFile is the plaintext view of a stored file that a node reads and
// writes: an envelope.File over the file on disk. It is the seam where
// storage v2 puts a content.File over segment blobs (docs/STORAGE.md,
// step 2), so the node needs no more than this of it.
type plainFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Size() int64
	// Flush writes what is cached through to the stored file.
	Flush() error
	// WriteBehind writes out early what the next write would otherwise
	// wait for (File.WriteBehind).
	WriteBehind() error
	Close() error
}

var _ plainFile = (*envelope.File)(nil)

// node is the one shared open-file state of a file of a home: every handle
// on the file (any protocol, any client) goes through it, so all see one
// size and one chunk cache.
type node struct {
	h *home

	// Guarded by h.mu.
	key        string  // cleaned client name; "" once detached (removed, renamed over, aborted)
	tmp        string  // temporary file while this is an unpublished replacement
	id         fileKey // inode, registered in h.byID once on its final name
	refs       int
	writers    int  // handles open for writing
	superseded bool // replaced under its readers by a new upload: not on the table
	created    bool // the open created the name: Upload suffices to truncate it
	countsFile bool // an unpublished replacement counted in h.files

	size      atomic.Int64 // plaintext size, for Stat without node.mu
	needInval atomic.Bool  // cached hashes of the name must be dropped before the first write
	invalOnce sync.Once

	mu        sync.RWMutex // guards the I/O state below
	back      *backing
	ef        plainFile
	counted   int64         // bytes of this node counted in h.used
	credit    int64         // size of the file this replacement will replace
	mode      fs.FileMode   // permission bits to publish a replacement with
	times     *[2]time.Time // explicit Chtimes while open: re-applied after flushes
	lastWrite time.Time
	dirty     bool // written since the last flush
	synced    bool // fsynced since the last write or truncate (Close and publish both ask)
	// ioErr is the first failed write-back or fsync, sticky: after a
	// writeback error Linux may drop the dirty pages and report the
	// error once, so a later fsync can succeed without the data being on
	// disk. Every later flush, Sync, Close and publish of the node fails
	// with it, and a replacement is never published.
	ioErr     error
	hashDirty bool // written since hashes were last cached
	hs        *hashState
}

// statOpened is f.Stat, or the entry as f's open read it when the disk
// can tell (nsfs.File.OpenedInfo: the same answer, one index view less).
func statOpened(f diskFile) (fs.FileInfo, error) {
	if o, ok := f.(interface{ OpenedInfo() fs.FileInfo }); ok {
		if fi := o.OpenedInfo(); fi != nil {
			return fi, nil
		}
	}
	return f.Stat()
}

// errNotRegular: openInPlace found a directory or another kind of file at
// the name. Clients see a permission error, as for any file they may not
// open.
var errNotRegular = fmt.Errorf("not a regular file: %w", fs.ErrPermission)

// openInPlace opens the regular file rel for in-place use. Caller holds
// h.ns exclusively and has checked rel is not in h.nodes. If the inode is
// already open under another name (a hard link planted on disk), that node
// is returned, so one inode never has two chunk caches.
func (h *home) openInPlace(rel string, writable bool) (*node, error) {
	f, err := h.d.openRegular(rel, os.O_RDWR|syscall.O_NONBLOCK)
	rw := true
	if err != nil && !writable && errors.Is(err, fs.ErrPermission) {
		f, err = h.d.openRegular(rel, os.O_RDONLY|syscall.O_NONBLOCK)
		rw = false
	}
	if errors.Is(err, namespace.ErrIsDir) {
		return nil, errNotRegular
	}
	if err != nil {
		return nil, err
	}
	st, err := statOpened(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() || h.reservedFile(f) {
		f.Close()
		return nil, errNotRegular
	}
	id := idOf(st)
	h.mu.Lock()
	if n := h.byID[id]; n != nil {
		h.mu.Unlock()
		f.Close()
		if writable && !n.back.rw {
			if err := n.upgrade(); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
	h.mu.Unlock()
	back := &backing{f: f, rw: rw}
	ef, err := h.d.plain(h, back, st.Size(), false)
	if err != nil {
		f.Close()
		return nil, err
	}
	// Authenticate the final chunk now (a read at the end does): a file
	// cut short, extended, or a damaged small file fails at open, before
	// a protocol has sent anything (legacy scp announces the size first).
	var one [1]byte
	if _, err := ef.ReadAt(one[:], ef.Size()); err != io.EOF {
		ef.Close()
		f.Close()
		if err == nil {
			err = envelope.ErrFormat
		}
		return nil, err
	}
	n := &node{h: h, key: rel, id: id, back: back, ef: ef, mode: clientMode(st.Mode()), hs: newHashState(h.s.uploadHashes)}
	n.counted = ef.Size()
	n.size.Store(n.counted)
	n.needInval.Store(true)
	h.mu.Lock()
	h.nodes[rel] = n
	h.byID[id] = n
	h.mu.Unlock()
	return n, nil
}

// newReplacement starts an encrypted temporary file that will replace (or
// create) rel when published. Caller holds h.ns exclusively.
func (h *home) newReplacement(rel string, mode fs.FileMode, created bool, credit int64) (*node, error) {
	tmp := tmpName()
	perm := fs.FileMode(0o600)
	if h.root == nil {
		// Storage v2 keeps the mode in the index: the one it will be
		// published with saves a transaction then.
		perm = diskMode(mode, false)
	}
	f, err := h.d.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	back := &backing{f: f, rw: true, writeback: true}
	ef, err := h.d.plain(h, back, 0, true)
	if err != nil {
		f.Close()
		h.d.Remove(tmp)
		return nil, err
	}
	n := &node{h: h, key: rel, tmp: tmp, created: created, countsFile: created,
		back: back, ef: ef, mode: mode, hs: newHashState(h.s.uploadHashes), hashDirty: true, lastWrite: time.Now(), credit: credit}
	h.mu.Lock()
	h.nodes[rel] = n
	h.tmpNodes[tmp] = n
	h.mu.Unlock()
	return n, nil
}

// upgrade reopens a read-only node's file for writing, by name through the
// root, checking it is still the same inode.
func (n *node) upgrade() error {
	n.h.mu.Lock()
	key := n.key
	n.h.mu.Unlock()
	if key == "" {
		return fs.ErrPermission
	}
	f, err := n.h.d.OpenFile(key, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil || idOf(st) != n.id {
		f.Close()
		return fs.ErrPermission
	}
	n.mu.Lock()
	old := n.back.f
	n.back.f, n.back.rw = f, true
	n.mu.Unlock()
	return old.Close()
}

// readAt reads through the shared state.
func (n *node) readAt(p []byte, off int64) (int, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.ef.ReadAt(p, off)
}

// invalidate drops cached hashes of an existing file before its content
// first changes. It must run without n.mu held (it takes h.ns and metaMu).
func (n *node) invalidate() {
	if !n.needInval.Load() {
		return
	}
	n.invalOnce.Do(func() {
		n.h.ns.RLock()
		defer n.h.ns.RUnlock()
		n.h.mu.Lock()
		key := n.key
		n.h.mu.Unlock()
		if key != "" {
			n.h.setHashes(key, nil)
		}
		n.needInval.Store(false)
	})
}

// writeAt writes p at off; if appendMode, at the end instead. It returns
// the offset written at.
func (n *node) writeAt(p []byte, off int64, appendMode bool) (int, int64, error) {
	n.invalidate()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.back.rw {
		return 0, off, fs.ErrPermission
	}
	if appendMode {
		off = n.ef.Size()
	}
	end := off + int64(len(p))
	if end > n.h.s.maxFileSize || end < off {
		return 0, off, ErrFileTooLarge
	}
	if cur := n.ef.Size(); cur > end {
		end = cur
	}
	if d := end - n.counted; d > 0 {
		if err := n.h.reserveBytes(d, n.credit); err != nil {
			return 0, off, err
		}
		n.counted += d
	}
	w, err := n.ef.WriteAt(p, off)
	n.settle()
	if w > 0 {
		n.hs.write(off, p[:w])
		n.dirty, n.hashDirty, n.synced = true, true, false
		n.lastWrite = time.Now()
		n.times = nil
	}
	return w, off, err
}

// writeBehind: see File.WriteBehind.
func (n *node) writeBehind() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.back.rw {
		return nil
	}
	return n.ef.WriteBehind()
}

// truncate changes the size through the shared state.
func (n *node) truncate(size int64) error {
	n.invalidate()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.back.rw {
		return fs.ErrPermission
	}
	if size > n.h.s.maxFileSize {
		return ErrFileTooLarge
	}
	if d := size - n.counted; d > 0 {
		if err := n.h.reserveBytes(d, n.credit); err != nil {
			return err
		}
		n.counted += d
	}
	err := n.ef.Truncate(size)
	n.settle()
	n.hs.truncate(size)
	n.dirty, n.hashDirty, n.synced = true, true, false
	n.lastWrite = time.Now()
	n.times = nil
	return err
}

// settle makes the counted bytes match the file's size. Caller holds n.mu.
func (n *node) settle() {
	s := n.ef.Size()
	if d := s - n.counted; d != 0 {
		n.h.addUsage(d, 0)
		n.counted = s
	}
	n.size.Store(s)
}

// flush writes dirty chunks; with sync also fsyncs. Explicit times set
// while open are re-applied afterwards so the flush does not clobber them.
func (n *node) flush(sync bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.flushLocked(sync)
}

func (n *node) flushLocked(sync bool) error {
	if n.ioErr != nil {
		return n.ioErr
	}
	err := n.ef.Flush()
	if err == nil {
		n.dirty = false
	} else {
		n.ioErr = fmt.Errorf("write back: %w", err)
	}
	if sync && err == nil && n.back.rw && !n.synced {
		if err = n.h.s.fsync(n.back.f); err != nil {
			n.ioErr = fmt.Errorf("fsync: %w", err)
		}
		n.synced = err == nil
	}
	if n.times != nil {
		if terr := setFileTimes(n.back.f, n.times[0], n.times[1]); err == nil {
			err = terr
		}
	}
	return err
}

// setTimes records explicit times (Chtimes while open) and applies them.
func (n *node) setTimes(atime, mtime time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.times = &[2]time.Time{atime, mtime}
	return setFileTimes(n.back.f, atime, mtime)
}

// info returns the client view of the node named base.
func (n *node) info(base string) (fs.FileInfo, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	st, err := n.back.f.Stat()
	if err != nil {
		return nil, err
	}
	// The client's mode: set at open (or creation) and by Chmod. The disk
	// may differ meanwhile (a replacement's temporary file; a write that
	// cleared the setuid bit recording it, put back at the last close).
	mode := n.mode
	mtime := st.ModTime()
	switch {
	case n.times != nil && !n.times[1].IsZero():
		mtime = n.times[1]
	case n.dirty && n.lastWrite.After(mtime):
		mtime = n.lastWrite
	}
	return &fileInfo{name: base, size: n.ef.Size(), mode: mode, mtime: mtime}, nil
}

// publish renames an unpublished replacement onto its name and returns
// its disk info as published (nil if there was nothing to publish, or the
// disk could not tell). Caller holds
// h.ns exclusively, and should fsync the parent directory afterwards
// (outside the lock) to make the rename durable. A replacement that was detached meanwhile (its name
// removed or renamed over, or aborted) is not published.
func (n *node) publish() (fs.FileInfo, error) {
	h := n.h
	h.mu.Lock()
	key, tmp := n.key, n.tmp
	h.mu.Unlock()
	if tmp == "" || key == "" {
		return nil, nil
	}
	n.mu.Lock()
	n.credit = 0 // from now on the node is the file itself
	err := n.flushLocked(true)
	if err == nil {
		err = n.back.f.Chmod(diskMode(n.mode, false))
	}
	var hashes *Hashes
	if hs, ok := n.hs.result(n.ef.Size()); ok && err == nil {
		hashes = &hs
		n.hashDirty = false
	}
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	st, fi, err := h.d.publishAs(n.back.f, tmp, key)
	if err != nil {
		return nil, err
	}
	var oldBytes, oldFiles int64
	if fi != nil && fi.Mode().IsRegular() {
		oldBytes, oldFiles = h.d.plainSize(fi), 1
	}
	h.mu.Lock()
	counts := int64(0)
	if n.countsFile {
		counts = 1
	}
	h.used -= oldBytes
	h.files += 1 - counts - oldFiles
	n.countsFile = false
	delete(h.tmpNodes, tmp)
	n.tmp = ""
	if st != nil {
		n.id = idOf(st)
		h.byID[n.id] = n
	}
	h.mu.Unlock()
	if hashes != nil && st != nil {
		n.mu.RLock()
		hashes.ModTime = st.ModTime()
		if n.times != nil && !n.times[1].IsZero() {
			hashes.ModTime = n.times[1]
		}
		n.mu.RUnlock()
	}
	h.setHashes(key, hashes)
	return st, nil
}

// detach takes the node off its name: it stays usable by its handles and
// is dropped (temporary removed, bytes freed) at its last close. Caller
// holds h.ns exclusively.
func (n *node) detach() {
	h := n.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if n.key != "" && h.nodes[n.key] == n {
		delete(h.nodes, n.key)
	}
	if h.byID[n.id] == n {
		delete(h.byID, n.id)
	}
	n.key = ""
	if n.countsFile {
		h.files--
		n.countsFile = false
	}
}

// supersede takes an in-place node with only readers off the table: a new
// upload replaces its name, the readers keep reading the old file. Its
// bytes stay counted as the name's until the upload publishes (which
// subtracts them), so its last close frees nothing. Caller holds h.ns
// exclusively; the new node is already on the table.
func (n *node) supersede() {
	h := n.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byID[n.id] == n {
		delete(h.byID, n.id)
	}
	if n.key != "" && h.nodes[n.key] == n {
		delete(h.nodes, n.key)
	}
	n.key = ""
	n.superseded = true
}

// rekey moves the node to a new name (Rename). Caller holds h.ns exclusively.
func (n *node) rekey(newKey string) {
	h := n.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nodes[n.key] == n {
		delete(h.nodes, n.key)
	}
	n.key = newKey
	h.nodes[newKey] = n
}

// release drops one reference; the last one flushes and closes the file,
// caches hashes of a sequentially written file, and drops a detached
// node's temporary file and bytes. Caller holds h.ns exclusively.
func (n *node) release() error {
	h := n.h
	h.mu.Lock()
	n.refs--
	last := n.refs == 0
	h.mu.Unlock()
	if !last {
		return n.flush(false)
	}
	n.mu.Lock()
	err := n.flushLocked(false)
	var hashes *Hashes
	if n.hashDirty && err == nil {
		if hs, ok := n.hs.result(n.ef.Size()); ok {
			hashes = &hs
			if st, serr := n.back.f.Stat(); serr == nil {
				hashes.ModTime = st.ModTime()
			}
			if n.times != nil && !n.times[1].IsZero() {
				hashes.ModTime = n.times[1]
			}
		}
	}
	wrote := n.hashDirty
	if wrote && n.back.rw {
		n.h.mu.Lock()
		inPlace := n.tmp == ""
		n.h.mu.Unlock()
		// A write by a non-root process clears setuid (and setgid on a
		// group-executable file), which may hold the client's mode
		// (modes.go): put it back.
		if inPlace {
			if st, serr := n.back.f.Stat(); serr == nil && st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid) != diskMode(n.mode, false) {
				if cerr := n.back.f.Chmod(diskMode(n.mode, false)); err == nil {
					err = cerr
				}
			}
		}
	}
	n.hs.stop()
	if cerr := n.ef.Close(); err == nil {
		err = cerr
	}
	if cerr := n.back.f.Close(); err == nil {
		err = cerr
	}
	n.mu.Unlock()

	h.mu.Lock()
	key, tmp := n.key, n.tmp
	if key != "" && h.nodes[key] == n {
		delete(h.nodes, key)
	}
	if h.byID[n.id] == n {
		delete(h.byID, n.id)
	}
	if tmp != "" {
		delete(h.tmpNodes, tmp)
		h.used -= n.counted
		if n.countsFile {
			h.files--
			n.countsFile = false
		}
	} else if key == "" && !n.superseded {
		h.used -= n.counted
	}
	n.counted = 0
	h.mu.Unlock()
	if tmp != "" {
		h.d.Remove(tmp)
		return err
	}
	if key != "" && wrote {
		h.setHashes(key, hashes)
	}
	return err
}

// syncDir fsyncs a directory so a rename into it is durable.
func (s *Store) syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	err = s.fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
