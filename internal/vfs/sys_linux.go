package vfs

// The Linux system interface of the store: openat2 and O_PATH for the
// symlink policy, /proc to tell where a descriptor points,
// sync_file_range for early write-back, utimensat on descriptors, the
// stat layout. securefsd serves only on Linux; sys_other.go makes the
// package build elsewhere (for the CLI's offline commands) and NewStore
// refuse.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// supportedOS: the store works here.
const supportedOS = true

// pathFD returns an O_PATH descriptor of root's directory for openat2,
// or -1.
func pathFD(root *os.Root) int {
	d, err := root.OpenFile(".", os.O_RDONLY|unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1
	}
	defer d.Close()
	fd, err := unix.Dup(int(d.Fd()))
	if err != nil {
		return -1
	}
	unix.CloseOnExec(fd)
	return fd
}

func closeFD(fd int) { unix.Close(fd) }

// processUmask reads the process umask from /proc/self/status (Linux 4.7
// and later), which leaves it untouched: umask(2) can only read it by
// setting it, and for that instant files other goroutines of the process
// create would get the temporary mask. Only where /proc has no Umask line
// does it fall back to setting it back at once.
func processUmask() fs.FileMode {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return fs.FileMode(m) & fs.ModePerm
				}
			}
		}
	}
	old := unix.Umask(0o077)
	unix.Umask(old)
	return fs.FileMode(old) & fs.ModePerm
}

// exchange swaps the entries a and b of root atomically (renameat2 with
// RENAME_EXCHANGE). The parents are opened through root, so the call is
// confined like every other; rename never follows the final elements.
func exchange(root *os.Root, a, b string) error {
	pa, err := root.OpenFile(parentOf(a), os.O_RDONLY|unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer pa.Close()
	pb, err := root.OpenFile(parentOf(b), os.O_RDONLY|unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer pb.Close()
	return unix.Renameat2(int(pa.Fd()), path.Base(a), int(pb.Fd()), path.Base(b), unix.RENAME_EXCHANGE)
}

// diskSpace reports the size and the space available to the server of the
// filesystem holding dir.
func diskSpace(dir string) (total, free int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}

// startWriteback starts writing the file's dirty pages without waiting
// for them. Errors are ignored: a filesystem without sync_file_range just
// leaves the work to fsync, and write errors surface there.
func (b *backing) startWriteback() {
	f, ok := b.f.(*os.File)
	if !ok {
		return
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return
	}
	sc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	})
	b.kicks.Add(1)
}

func idOf(fi fs.FileInfo) fileKey {
	switch sys := fi.Sys().(type) {
	case *syscall.Stat_t:
		return fileKey{uint64(sys.Dev), sys.Ino}
	case [16]byte: // storage v2's inode id
		return fileKey{binary.LittleEndian.Uint64(sys[:8]), binary.LittleEndian.Uint64(sys[8:])}
	}
	return fileKey{}
}

// futimens sets the times of an open file (utimensat with a NULL path).
func futimens(f *os.File, atime, mtime time.Time) error {
	var ts [2]unix.Timespec
	for i, t := range []time.Time{atime, mtime} {
		if t.IsZero() {
			ts[i] = unix.Timespec{Nsec: unix.UTIME_OMIT}
		} else {
			ts[i] = unix.NsecToTimespec(t.UnixNano())
		}
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	cerr := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	})
	if cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}

func timespecTime(ts syscall.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// reservedTarget reports whether an opened file or directory is one of
// the store's own (reached through a planted symlink inside the home).
// It asks /proc where the descriptor points; without /proc it reports
// false (os.Root still confines the access to the home).
func (h *home) reservedTarget(f *os.File) bool {
	if h.real == "" {
		return false
	}
	target, err := os.Readlink(procFD(f))
	if err != nil {
		return false
	}
	rest, ok := strings.CutPrefix(target, h.real)
	if !ok {
		return true // not inside the home at all: refuse
	}
	for elem := range strings.SplitSeq(rest, "/") {
		if isReserved(elem) {
			return true
		}
	}
	return false
}

func procFD(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// probe is Lstat of rel, refusing (fs.ErrPermission) a path that goes
// through a symlink. With openat2 (Linux 5.6+) the kernel resolves the
// whole name in one call with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS;
// without it, os.Root resolves it and /proc tells whether the path taken
// was the literal one.
func (h *home) probe(rel string) (fs.FileInfo, error) {
	if h.root == nil {
		return h.d.Lstat(rel) // storage v2: no links to refuse
	}
	if rel == "." {
		return h.root.Lstat(".")
	}
	if h.dirfd >= 0 {
		fd, err := unix.Openat2(h.dirfd, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			var st syscall.Stat_t
			err = syscall.Fstat(fd, &st)
			unix.Close(fd)
			if err != nil {
				return nil, err
			}
			return statInfo(path.Base(rel), &st), nil
		}
		switch err {
		case unix.ELOOP, unix.EXDEV:
			return nil, fs.ErrPermission
		case unix.ENOSYS, unix.EPERM:
			// No openat2 (or filtered by seccomp): fall back below.
		default:
			return nil, err
		}
	}
	f, err := h.root.OpenFile(rel, os.O_RDONLY|unix.O_PATH, 0)
	if err != nil {
		if h.s.isEscape(err) || errors.Is(err, syscall.ELOOP) {
			return nil, fs.ErrPermission
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if h.real != "" {
		if target, err := os.Readlink(procFD(f)); err == nil && target != h.real+"/"+rel {
			return nil, fs.ErrPermission
		}
	}
	return st, nil
}

// statInfo converts a stat result to an fs.FileInfo (as os.Lstat would).
func statInfo(name string, st *syscall.Stat_t) fs.FileInfo {
	mode := fs.FileMode(st.Mode & 0o777)
	if st.Mode&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if st.Mode&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if st.Mode&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		mode |= fs.ModeSocket
	case syscall.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		mode |= fs.ModeDevice
	}
	return &diskInfo{name: name, size: st.Size, mode: mode, mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), sys: st}
}

type diskInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
	sys   *syscall.Stat_t
}

func (i *diskInfo) Name() string       { return i.name }
func (i *diskInfo) Size() int64        { return i.size }
func (i *diskInfo) Mode() fs.FileMode  { return i.mode }
func (i *diskInfo) ModTime() time.Time { return i.mtime }
func (i *diskInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *diskInfo) Sys() any           { return i.sys }

// restoreTimes puts back the access and modification times of st.
func restoreTimes(f *os.File, st fs.FileInfo) {
	atime := st.ModTime()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		atime = timespecTime(sys.Atim)
	}
	futimens(f, atime, st.ModTime())
}

// defaultMaxHandles is half the soft RLIMIT_NOFILE (Go raises it to the
// hard limit at start on Linux), the other half kept as a reserve for
// connections, the admin socket and the user database. Unlimited if the
// limit cannot be read.
func defaultMaxHandles() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > math.MaxInt64 {
		return math.MaxInt64
	}
	return max(int64(rl.Cur/2), 1)
}

// nlink is the link count of a file (1 where unknown).
func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// renameBetween renames ro of tree a to rn of tree b (renameat2 between
// their parent directories, each opened through its tree's root; the
// caller has applied the symlink policy to both names under both
// namespace locks). noReplace: fail if rn exists (RENAME_NOREPLACE).
func renameBetween(a *home, ro string, b *home, rn string, noReplace bool) error {
	od, err := a.root.OpenFile(parentOf(ro), os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer od.Close()
	nd, err := b.root.OpenFile(parentOf(rn), os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer nd.Close()
	var flags uint
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	if err := unix.Renameat2(int(od.Fd()), path.Base(ro), int(nd.Fd()), path.Base(rn), flags); err != nil {
		return &os.LinkError{Op: "renameat2", Old: ro, New: rn, Err: err}
	}
	return nil
}

// syncFS makes everything written to the store's filesystem durable
// (syncfs): one call for a move of many files instead of an fsync each.
func (s *Store) syncFS() error {
	f, err := s.root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}
