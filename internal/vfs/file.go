package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
)

// File is an open file or directory of an FS. ReadAt/WriteAt are safe for
// concurrent use (pkg/sftp issues them out of order from 8 workers); Read,
// Write and Seek share one offset. Close waits for operations in flight.
type File struct {
	fs         *FS
	name, rel  string
	n          *node      // regular files
	dir        *dirStream // directories
	readable   bool
	writable   bool
	appendMode bool
	owner      bool // counts as a writer of the node: publishes a replacement on Close
	// vinfo: a view's prefix directory (virtual; its listing is in dir).
	vinfo fs.FileInfo

	ops    sync.RWMutex // in-flight operations (shared) vs Close (exclusive)
	closed bool

	offMu sync.Mutex
	off   int64
}

// Name returns the name the file was opened with.
func (h *File) Name() string { return h.name }

func (h *File) err(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return h.fs.h.pathErr(op, h.name, err)
}

// begin starts an operation; it fails once the file is closed.
func (h *File) begin(op string) error {
	h.ops.RLock()
	if h.closed {
		h.ops.RUnlock()
		return &fs.PathError{Op: op, Path: h.name, Err: fs.ErrClosed}
	}
	return nil
}

func (h *File) end() { h.ops.RUnlock() }

// Stat returns the client view of the open file.
func (h *File) Stat() (fs.FileInfo, error) {
	if err := h.begin("stat"); err != nil {
		return nil, err
	}
	defer h.end()
	if h.vinfo != nil {
		return h.vinfo, nil
	}
	if h.n == nil {
		return h.fs.Stat(h.name)
	}
	fi, err := h.n.info(path.Base(h.rel))
	return fi, h.err("stat", err)
}

// ReadAt reads len(p) bytes at off; io.EOF at the end, like os.File.
func (h *File) ReadAt(p []byte, off int64) (int, error) {
	if err := h.begin("read"); err != nil {
		return 0, err
	}
	defer h.end()
	switch {
	case h.n == nil:
		return 0, h.err("read", ErrIsDir)
	case !h.readable:
		return 0, h.err("read", fs.ErrPermission)
	case off < 0:
		return 0, h.err("read", fs.ErrInvalid)
	}
	n, err := h.n.readAt(p, off)
	return n, h.err("read", err)
}

// WriteAt writes p at off. On a file opened with O_APPEND the data goes to
// the end whatever off is (as pwrite does on Linux).
func (h *File) WriteAt(p []byte, off int64) (int, error) {
	if err := h.begin("write"); err != nil {
		return 0, err
	}
	defer h.end()
	n, _, err := h.writeAt(p, off)
	return n, err
}

// WriteBehind writes out early, from the shared chunk cache, what a later
// write to a part of the file not cached would otherwise have to write out
// before it: a server calls it after answering a write, while it waits for
// the client's next request, so that work overlaps the round trip (random
// 4 KiB writes, which fill the cache with dirty chunks, then wait for one
// load instead of a load and a write-out). It does nothing when the cache
// has room. An error is kept by the file and reported by its next write,
// flush or close.
func (h *File) WriteBehind() error {
	if err := h.begin("write"); err != nil {
		return err
	}
	defer h.end()
	if h.n == nil || !h.writable {
		return nil
	}
	return h.err("write", h.n.writeBehind())
}

func (h *File) writeAt(p []byte, off int64) (int, int64, error) {
	switch {
	case h.n == nil:
		return 0, off, h.err("write", ErrIsDir)
	case !h.writable:
		return 0, off, h.err("write", fs.ErrPermission)
	case off < 0:
		return 0, off, h.err("write", fs.ErrInvalid)
	}
	n, at, err := h.n.writeAt(p, off, h.appendMode)
	return n, at, h.err("write", err)
}

// Read reads at the file offset and advances it.
func (h *File) Read(p []byte) (int, error) {
	if err := h.begin("read"); err != nil {
		return 0, err
	}
	defer h.end()
	if h.n == nil {
		return 0, h.err("read", ErrIsDir)
	}
	if !h.readable {
		return 0, h.err("read", fs.ErrPermission)
	}
	h.offMu.Lock()
	defer h.offMu.Unlock()
	n, err := h.n.readAt(p, h.off)
	h.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, h.err("read", err)
}

// Write writes at the file offset (the end with O_APPEND) and advances it.
func (h *File) Write(p []byte) (int, error) {
	if err := h.begin("write"); err != nil {
		return 0, err
	}
	defer h.end()
	h.offMu.Lock()
	defer h.offMu.Unlock()
	n, at, err := h.writeAt(p, h.off)
	h.off = at + int64(n)
	return n, err
}

// Seek sets the offset for Read and Write.
func (h *File) Seek(off int64, whence int) (int64, error) {
	if err := h.begin("seek"); err != nil {
		return 0, err
	}
	defer h.end()
	h.offMu.Lock()
	defer h.offMu.Unlock()
	if h.n == nil {
		if off == 0 && whence == io.SeekStart {
			h.dir.close()
			h.dir = &dirStream{}
			return 0, nil
		}
		return 0, h.err("seek", ErrIsDir)
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += h.off
	case io.SeekEnd:
		off += h.n.size.Load()
	default:
		return 0, h.err("seek", fs.ErrInvalid)
	}
	if off < 0 {
		return 0, h.err("seek", fs.ErrInvalid)
	}
	h.off = off
	return off, nil
}

// Truncate changes the file's size through the shared state.
func (h *File) Truncate(size int64) error {
	if err := h.begin("truncate"); err != nil {
		return err
	}
	defer h.end()
	switch {
	case h.n == nil:
		return h.err("truncate", ErrIsDir)
	case !h.writable:
		return h.err("truncate", fs.ErrInvalid) // as ftruncate(2) on a read-only fd
	case size < 0:
		return h.err("truncate", fs.ErrInvalid)
	}
	return h.err("truncate", h.n.truncate(size))
}

// Sync writes buffered data to the disk and fsyncs it.
func (h *File) Sync() error {
	if err := h.begin("sync"); err != nil {
		return err
	}
	defer h.end()
	if h.n == nil {
		return nil
	}
	err := h.n.flush(true)
	if err == nil {
		// A relaxed version 2 index answers changes before they are on
		// disk (Options.Relaxed); the client asked for the disk.
		h.n.mu.RLock()
		d, ok := h.n.back.f.(interface{ Durable() error })
		h.n.mu.RUnlock()
		if ok {
			err = d.Durable()
		}
	}
	return h.err("sync", err)
}

// Close flushes the file; a replacement opened for writing is published
// (renamed over its name). Errors (write-back, no space, quota) are
// returned: the caller must report them.
func (h *File) Close() error { return h.close(false, nil) }

// CloseInfo is Close that also returns, for a replacement it publishes,
// the file's info as a Stat right after it would give it (nil for other
// files), so that a caller answering with it (a PUT's ETag) needs no
// lookup of its own.
func (h *File) CloseInfo() (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := h.close(false, &fi)
	if err != nil {
		return nil, err
	}
	return fi, nil
}

// Abort closes a replacement without publishing it: the name keeps its
// old content (or, for a new file, disappears). On a file written in
// place it is Close: in-place writes cannot be undone.
func (h *File) Abort() error { return h.close(true, nil) }

// close is Close, or Abort with abort; with info, it sets *info to what
// CloseInfo returns.
func (h *File) close(abort bool, info *fs.FileInfo) error {
	h.ops.Lock()
	defer h.ops.Unlock()
	if h.closed {
		return &fs.PathError{Op: "close", Path: h.name, Err: fs.ErrClosed}
	}
	h.closed = true
	defer h.fs.h.putHandle()
	if h.n == nil {
		h.dir.close()
		return nil
	}
	fh := h.fs.h
	var err error
	if h.owner && !abort {
		// Write back (and fsync a replacement about to be published)
		// before taking the namespace lock, so other operations of the
		// home do not wait for the disk. A failure here is the client's
		// error, and a replacement that failed it is not published (its
		// data may not be on disk, whatever a second fsync would say).
		fh.mu.Lock()
		replacing := h.n.tmp != ""
		fh.mu.Unlock()
		err = h.n.flush(replacing)
	}
	fh.ns.Lock()
	published := ""
	if h.owner {
		fh.mu.Lock()
		replacing := h.n.tmp != "" && h.n.key != ""
		key, created := h.n.key, h.n.created
		fh.mu.Unlock()
		if replacing {
			if abort || err != nil {
				if created {
					fh.dropMetaLogged(key) // the new name disappears with its metadata
				}
				h.n.detach()
			} else if st, perr := h.n.publish(); perr != nil {
				err = perr
				h.n.detach()
			} else {
				published = key
				if info != nil && st != nil {
					*info = fh.toInfo(path.Base(h.rel), st)
				}
			}
		}
	}
	if h.owner {
		fh.mu.Lock()
		h.n.writers--
		fh.mu.Unlock()
	}
	if rerr := h.n.release(); err == nil {
		err = rerr
	}
	fh.ns.Unlock()
	if published != "" {
		// The new name is visible but not durable until its directory
		// is fsynced: a failure is the client's error (it must not
		// count on the upload surviving a crash).
		if serr := fh.syncParent(published); err == nil && serr != nil {
			err = fmt.Errorf("fsync directory: %w", serr)
		}
	}
	return h.err("close", err)
}

// Readdir reads a directory: n > 0 returns at most n entries per call and
// io.EOF at the end; n <= 0 returns all remaining entries. Reserved
// entries are hidden.
func (h *File) Readdir(n int) ([]fs.FileInfo, error) {
	if err := h.begin("readdir"); err != nil {
		return nil, err
	}
	defer h.end()
	if h.dir == nil {
		return nil, h.err("readdir", ErrNotDir)
	}
	if !h.fs.can(PermList) {
		return nil, h.fs.denied("readdir", h.name)
	}
	h.offMu.Lock()
	defer h.offMu.Unlock()
	out, err := h.dir.read(h.fs.h, h.rel, n)
	return out, h.err("readdir", err)
}

// ReadDir is Readdir returning fs.DirEntry values.
func (h *File) ReadDir(n int) ([]fs.DirEntry, error) {
	fis, err := h.Readdir(n)
	out := make([]fs.DirEntry, len(fis))
	for i, fi := range fis {
		out[i] = fs.FileInfoToDirEntry(fi)
	}
	return out, err
}
