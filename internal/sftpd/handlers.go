package sftpd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/vfs"
)

// handlers adapts one session's vfs.FS to pkg/sftp's RequestServer. Paths
// arrive cleaned and absolute ("/a/b"); vfs resolves them inside the home.
// Every error returned to pkg/sftp goes through clientError.
//
// OPEN is not among them: the fast path serves it (openRead, openWrite).
// Implemented optional interfaces: PosixRenameFileCmder, StatVFSFileCmder,
// LstatFileLister,
// RealPathFileLister, ReadlinkFileLister, NameLookupFileLister.
type handlers struct {
	s       *session
	fs      *vfs.FS
	handles atomic.Int64 // open file and directory handles
}

// maxHandles bounds the files and directories one SFTP session holds open
// (each is a file descriptor); OpenSSH's sftp-server allows 512.
const maxHandles = 1024

// errTooManyHandles: the session holds maxHandles open handles.
var errTooManyHandles = errors.New("sftpd: too many open handles")

// errBadMessage: a request's attributes could not be decoded.
var errBadMessage = errors.New("sftpd: malformed attributes")

// takeHandle reserves one handle; the caller calls the returned release
// exactly once when the handle is closed (or its open failed).
func (h *handlers) takeHandle() (release func(), err error) {
	if h.handles.Add(1) > maxHandles {
		h.handles.Add(-1)
		return nil, errTooManyHandles
	}
	if h.s.conn != nil {
		h.s.conn.acquire()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.handles.Add(-1)
			if h.s.conn != nil {
				h.s.conn.release()
			}
		})
	}, nil
}

// recoverTo turns a panic in a handler (a bug, possibly reached by hostile
// input) into a failed request instead of a crashed server, and logs it.
func recoverTo(log *slog.Logger, op string, err *error) {
	if v := recover(); v != nil {
		log.Error("panic in request handler", "op", op, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		*err = errFailure
	}
}

var (
	_ sftp.FileReader           = opensByFastPath{}
	_ sftp.FileWriter           = opensByFastPath{}
	_ sftp.PosixRenameFileCmder = (*handlers)(nil)
	_ sftp.StatVFSFileCmder     = (*handlers)(nil)
	_ sftp.LstatFileLister      = (*handlers)(nil)
	_ sftp.RealPathFileLister   = (*handlers)(nil)
	_ sftp.ReadlinkFileLister   = (*handlers)(nil)
	_ sftp.NameLookupFileLister = (*handlers)(nil)
)

// openRead opens a file for reading (OPEN with READ only). The fast path
// (fileMux.open) calls it and openWrite for every OPEN: pkg/sftp never
// sees one, so handlers implements none of its file-opening interfaces
// (see opensByFastPath).
func (h *handlers) openRead(r *sftp.Request) (_ *transfer, err error) {
	defer recoverTo(h.s.log, "download", &err)
	start := time.Now()
	release, err := h.takeHandle()
	if err != nil {
		h.s.logOp("download", r.Filepath, -1, start, err)
		return nil, clientError(err)
	}
	f, err := h.fs.OpenFile(r.Filepath, os.O_RDONLY, 0)
	if err != nil {
		release()
		h.s.logOp("download", r.Filepath, -1, start, err)
		return nil, clientError(err)
	}
	return newTransfer(h.s, f, "download", r.Filepath, false, release), nil
}

// opensByFastPath fills sftp.Handlers' FileGet and FilePut, which pkg/sftp
// calls only for OPEN: the fast path serves every OPEN itself, so these
// are never reached. Were one reached, the open fails rather than
// bypassing the fast path's accounting.
type opensByFastPath struct{}

func (opensByFastPath) Fileread(*sftp.Request) (io.ReaderAt, error) {
	return nil, sftp.ErrSSHFxOpUnsupported
}

func (opensByFastPath) Filewrite(*sftp.Request) (io.WriterAt, error) {
	return nil, sftp.ErrSSHFxOpUnsupported
}

// openWrite applies the SFTP open flags. APPEND is not mapped to O_APPEND:
// the client sends the offsets (OpenSSH's reput opens with APPEND and
// writes from the remote size), and O_APPEND would conflict with WriteAt.
// Without TRUNC an existing file is written in place (resume); with TRUNC
// (or creating a new file) vfs writes a replacement that is renamed into
// place on Close.
func (h *handlers) openWrite(r *sftp.Request, flag int) (_ *transfer, err error) {
	defer recoverTo(h.s.log, "upload", &err)
	start := time.Now()
	release, err := h.takeHandle()
	if err != nil {
		h.s.logOp("upload", r.Filepath, -1, start, err)
		return nil, clientError(err)
	}
	pf := r.Pflags()
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	// Overwriting an existing file: if the transfer breaks, keep the old
	// content (Abort) rather than publishing a truncated one. A new file's
	// partial content is kept so that "reput" can resume it.
	replacing := false
	if pf.Trunc {
		if fi, err := h.fs.Stat(r.Filepath); err == nil && fi.Mode().IsRegular() {
			replacing = true
		}
	}
	f, err := h.fs.OpenFile(r.Filepath, flag, 0o644)
	if err != nil {
		release()
		h.s.logOp("upload", r.Filepath, -1, start, err)
		return nil, clientError(err)
	}
	return newTransfer(h.s, f, "upload", r.Filepath, replacing, release), nil
}

// transfer is an open file handle of the fast path (fileMux), which calls
// ReadAt/WriteAt in client order; vfs.File would also be safe for
// concurrent and out-of-order calls. Close is called once (CLOSE, or the
// end of the session after TransferError).
type transfer struct {
	s          *session
	f          *vfs.File
	op, path   string
	replacing  bool
	start      time.Time
	read       atomic.Int64
	written    atomic.Int64
	ioErr      atomic.Pointer[error] // first read/write error
	interrupt  atomic.Pointer[error] // set by TransferError
	closedOnce sync.Once
	release    func() // gives the session's handle slot back
}

func newTransfer(s *session, f *vfs.File, op, name string, replacing bool, release func()) *transfer {
	s.using(name)
	return &transfer{s: s, f: f, op: op, path: name, replacing: replacing, start: time.Now(), release: release}
}

func (t *transfer) ReadAt(p []byte, off int64) (n int, err error) {
	defer recoverTo(t.s.log, "read", &err)
	n, err = t.f.ReadAt(p, off)
	t.read.Add(int64(n))
	if err != nil && err != io.EOF {
		t.ioErr.CompareAndSwap(nil, &err)
		return n, clientError(err)
	}
	return n, err
}

func (t *transfer) WriteAt(p []byte, off int64) (n int, err error) {
	defer recoverTo(t.s.log, "write", &err)
	n, err = t.f.WriteAt(p, off)
	t.written.Add(int64(n))
	if err != nil {
		t.ioErr.CompareAndSwap(nil, &err)
		return n, clientError(err)
	}
	return n, nil
}

// writeBehind gives the file the chance to write out early what its next
// write would wait for (vfs.File.WriteBehind). A failure is the file's to
// report, at that next write or the CLOSE.
func (t *transfer) writeBehind() {
	var err error
	defer recoverTo(t.s.log, "write behind", &err)
	t.f.WriteBehind()
}

// Sync answers fsync@openssh.com: what the handle wrote is on disk when
// it returns. An upload that creates or replaces a file still becomes
// visible only at its CLOSE (atomic, and durable then too): a crash
// before it loses the upload whole, never leaves part of it.
func (t *transfer) Sync() (err error) {
	defer recoverTo(t.s.log, "fsync", &err)
	if err = t.f.Sync(); err != nil {
		t.ioErr.CompareAndSwap(nil, &err)
		return clientError(err)
	}
	return nil
}

// TransferError is called by the fast path when the session ends with the
// handle still open (connection lost, client killed).
func (t *transfer) TransferError(err error) {
	t.interrupt.CompareAndSwap(nil, &err)
}

func (t *transfer) Close() (err error) {
	defer recoverTo(t.s.log, "close", &err)
	t.closedOnce.Do(func() {
		defer t.release()
		interrupted := t.interrupt.Load()
		switch {
		case t.replacing && (interrupted != nil || t.ioErr.Load() != nil):
			// A broken overwrite (connection lost, quota or disk full):
			// keep the previous content instead of a truncated file.
			err = t.f.Abort()
			if ioErr := t.ioErr.Load(); err == nil && ioErr != nil {
				err = *ioErr
			}
		default:
			err = t.f.Close()
		}
		bytes := t.read.Load() + t.written.Load()
		op := t.op
		if t.written.Load() > 0 && t.read.Load() > 0 {
			op = "readwrite"
		}
		logErr := err
		if logErr == nil && t.ioErr.Load() != nil {
			logErr = *t.ioErr.Load()
		}
		if interrupted != nil {
			extra := []any{"interrupted", (*interrupted).Error()}
			if t.replacing {
				extra = append(extra, "kept", "previous content")
			}
			if logErr == nil {
				logErr = errInterrupted
			}
			t.s.logOp(op, t.path, bytes, t.start, logErr, extra...)
			return
		}
		t.s.logOp(op, t.path, bytes, t.start, logErr)
	})
	return clientError(err)
}

var errInterrupted = errors.New("transfer interrupted")

// Filecmd runs the path commands.
func (h *handlers) Filecmd(r *sftp.Request) (err error) {
	defer recoverTo(h.s.log, r.Method, &err)
	start := time.Now()
	op := r.Method
	switch r.Method {
	case "Setstat":
		return h.setstat(r)
	case "Rename":
		// SFTP v3 rename never replaces an existing target
		// (posix-rename@openssh.com does).
		op = "rename"
		err = h.fs.Rename(r.Filepath, r.Target, false)
	case "Rmdir":
		op = "rmdir"
		err = h.requireType(r.Filepath, true)
		if err == nil {
			err = h.fs.Remove(r.Filepath)
		}
	case "Remove":
		op = "remove"
		err = h.requireType(r.Filepath, false)
		if err == nil {
			err = h.fs.Remove(r.Filepath)
		}
	case "Mkdir":
		op = "mkdir"
		err = h.fs.Mkdir(r.Filepath, 0o755)
	case "Symlink":
		// pkg/sftp puts the link's target in Filepath and the new link's
		// name in Target.
		op = "symlink"
		err = h.fs.Symlink(r.Filepath, r.Target)
	case "Link":
		op = "link"
		err = sftp.ErrSSHFxOpUnsupported
	default:
		err = sftp.ErrSSHFxOpUnsupported
	}
	if r.Target != "" {
		h.s.logOp(op, r.Filepath, -1, start, err, "target", r.Target)
	} else {
		h.s.logOp(op, r.Filepath, -1, start, err)
	}
	return clientError(err)
}

// requireType checks that name is a directory (dir) or not one, so that
// RMDIR never removes a file and REMOVE never removes a directory.
func (h *handlers) requireType(name string, dir bool) error {
	fi, err := h.fs.Lstat(name)
	if err != nil {
		return err
	}
	switch {
	case dir && !fi.IsDir():
		return &fs.PathError{Op: "rmdir", Path: name, Err: vfs.ErrNotDir}
	case !dir && fi.IsDir():
		return &fs.PathError{Op: "remove", Path: name, Err: vfs.ErrIsDir}
	}
	return nil
}

// setstat applies SETSTAT/FSETSTAT in OpenSSH's order: size, permissions,
// times (so a truncate does not move the mtime just set). FSETSTAT arrives
// as a path request while the handle may be open; vfs applies Truncate
// through the open file's shared state. UID/GID changes are ignored, as
// OpenSSH's server does for non-root users when they match.
func (h *handlers) setstat(r *sftp.Request) error {
	start := time.Now()
	af := r.AttrFlags()
	a := r.Attributes()
	if a == nil {
		h.s.logOp("setstat", r.Filepath, -1, start, errBadMessage)
		return clientError(errBadMessage)
	}
	var (
		err   error
		extra []any
	)
	if af.Size {
		extra = append(extra, "size", a.Size)
		if a.Size > 1<<62 {
			err = &fs.PathError{Op: "truncate", Path: r.Filepath, Err: fs.ErrInvalid}
		} else {
			err = h.fs.Truncate(r.Filepath, int64(a.Size))
		}
	}
	if err == nil && af.Permissions {
		mode := fs.FileMode(a.Mode & 0o777)
		extra = append(extra, "mode", mode.String())
		err = h.fs.Chmod(r.Filepath, mode)
	}
	if err == nil && af.Acmodtime {
		mtime := time.Unix(int64(a.Mtime), 0)
		extra = append(extra, "mtime", mtime.UTC().Format(time.RFC3339))
		err = h.fs.Chtimes(r.Filepath, time.Unix(int64(a.Atime), 0), mtime)
	}
	if len(extra) > 0 || err != nil {
		h.s.logOp("setstat", r.Filepath, -1, start, err, extra...)
	}
	return clientError(err)
}

// PosixRename renames, replacing an existing target atomically.
func (h *handlers) PosixRename(r *sftp.Request) (err error) {
	defer recoverTo(h.s.log, "rename", &err)
	start := time.Now()
	err = h.fs.Rename(r.Filepath, r.Target, true)
	h.s.logOp("rename", r.Filepath, -1, start, err, "target", r.Target, "overwrite", true)
	return clientError(err)
}

// statvfs reports the user's quota when one is set, else the disk under
// the store. Block size 4 KiB.
const statvfsBlock = 4096

// StatVFS answers statvfs@openssh.com (df in sftp, rclone about).
func (h *handlers) StatVFS(r *sftp.Request) (_ *sftp.StatVFS, err error) {
	defer recoverTo(h.s.log, "statvfs", &err)
	u, err := h.fs.UsageAt(r.Filepath) // a shared folder has its own quota
	if err != nil {
		h.s.log.Debug("statvfs failed", "path", r.Filepath, "err", err)
		return nil, clientError(err)
	}
	return statVFS(u), nil
}

func statVFS(u vfs.Usage) *sftp.StatVFS {
	total, free := u.DiskTotal, u.DiskFree
	if u.QuotaBytes > 0 {
		total = u.QuotaBytes
		free = min(max(u.QuotaBytes-u.UsedBytes, 0), u.DiskFree)
	}
	files, ffree := u.Files+1<<31, int64(1<<31)
	if u.QuotaFiles > 0 {
		files = u.QuotaFiles
		ffree = max(u.QuotaFiles-u.Files, 0)
	}
	blocks := func(n int64) uint64 { return uint64(max(n, 0)) / statvfsBlock }
	st := &sftp.StatVFS{
		Bsize:   statvfsBlock,
		Frsize:  statvfsBlock,
		Blocks:  blocks(total),
		Bfree:   blocks(free),
		Bavail:  blocks(free),
		Files:   uint64(files),
		Ffree:   uint64(ffree),
		Favail:  uint64(ffree),
		Namemax: 255,
	}
	return st
}

// Filelist serves OPENDIR (Method "List") and STAT/FSTAT ("Stat").
func (h *handlers) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer recoverTo(h.s.log, r.Method, &err)
	switch r.Method {
	case "List":
		release, err := h.takeHandle()
		if err != nil {
			h.s.logOp("opendir", r.Filepath, -1, time.Time{}, err)
			return nil, clientError(err)
		}
		d, err := h.fs.Open(r.Filepath)
		if err != nil {
			release()
			h.s.log.Debug("opendir failed", "path", r.Filepath, "err", err)
			h.s.auditOp("list", r.Filepath, -1, err, nil)
			return nil, clientError(err)
		}
		fi, err := d.Stat()
		if err == nil && !fi.IsDir() {
			err = &fs.PathError{Op: "opendir", Path: r.Filepath, Err: vfs.ErrNotDir}
		}
		if err != nil {
			d.Close()
			release()
			return nil, clientError(err)
		}
		return &dirLister{s: h.s, f: d, path: r.Filepath, start: time.Now(), release: release}, nil
	case "Stat":
		fi, err := h.fs.Stat(r.Filepath)
		if err != nil {
			return nil, clientError(err)
		}
		return statLister{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat does not follow symlinks (vfs reports planted ones as such).
func (h *handlers) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer recoverTo(h.s.log, "lstat", &err)
	fi, err := h.fs.Lstat(r.Filepath)
	if err != nil {
		return nil, clientError(err)
	}
	return statLister{fi}, nil
}

// RealPath canonicalises a client path: the home is "/", ".." stops there.
// vfs follows no symlinks, so there is nothing to resolve.
func (h *handlers) RealPath(p string) (string, error) {
	return path.Clean("/" + p), nil
}

// Readlink follows vfs's symlink policy (planted links: permission denied).
func (h *handlers) Readlink(p string) (_ string, err error) {
	defer recoverTo(h.s.log, "readlink", &err)
	target, err := h.fs.Readlink(p)
	if err != nil {
		return "", clientError(err)
	}
	return target, nil
}

// LookupUserName and LookupGroupName make "ls -l" show the session's user
// as owner of everything (the tree is theirs) instead of server uids.
func (h *handlers) LookupUserName(string) string  { return h.s.user }
func (h *handlers) LookupGroupName(string) string { return h.s.user }

// statLister is a one-entry ListerAt for STAT/LSTAT.
type statLister [1]fs.FileInfo

func (l statLister) ListAt(buf []os.FileInfo, off int64) (int, error) {
	if off > 0 || len(buf) == 0 {
		return 0, io.EOF
	}
	buf[0] = l[0]
	return 1, io.EOF
}

// dirLister streams a directory: each READDIR reads the next batch from
// the open directory, so a huge directory is never held in memory at once
// (the handle counts against the user's vfs handle limit).
// pkg/sftp asks with increasing offsets from one worker; an offset that
// does not continue the stream is refused.
type dirLister struct {
	s     *session
	f     *vfs.File
	path  string
	start time.Time

	release func()

	mu      sync.Mutex
	pos     int64
	eof     bool
	listErr error
}

func (l *dirLister) ListAt(buf []os.FileInfo, off int64) (_ int, err error) {
	defer recoverTo(l.s.log, "readdir", &err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if off != l.pos {
		return 0, sftp.ErrSSHFxFailure
	}
	if l.eof {
		return 0, io.EOF
	}
	fis, err := l.f.Readdir(len(buf))
	n := copy(buf, fis)
	l.pos += int64(n)
	switch {
	case err == io.EOF || (err == nil && n == 0):
		l.eof = true
		return n, io.EOF
	case err != nil:
		l.listErr = err
		return n, clientError(err)
	}
	return n, nil
}

func (l *dirLister) Close() error {
	defer l.release()
	err := l.f.Close()
	l.s.log.Debug("list", "path", l.path, "entries", l.pos, "duration", time.Since(l.start).Round(time.Millisecond), "err", errors.Join(l.listErr, err))
	l.s.auditOp("list", l.path, -1, l.listErr, nil)
	return nil
}
