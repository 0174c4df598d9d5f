package vfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

// home is the state shared by every FS value of one home tree.
//
// Lock order: ns, then metaMu, then node.mu, then mu. node.mu holders never
// take ns or metaMu.
type home struct {
	s     *Store
	name  string
	root  *os.Root
	real  string // the home's resolved absolute path, for reservedTarget
	dirfd int    // O_PATH descriptor of the home for openat2, or -1

	// ns serializes changes of the namespace (open/create, publish, last
	// close, rename, remove, mkdir, chmod, chtimes): writers hold it
	// exclusively, Stat/ReadDir/Meta share it.
	ns sync.RWMutex
	// metaMu guards the metadata cache and sidecar writes.
	metaMu    sync.Mutex
	metaDirs  map[string]*dirMeta
	metaTimer *time.Timer

	mu       sync.Mutex        // guards the fields below
	nodes    map[string]*node  // open files by cleaned client name
	byID     map[fileKey]*node // in-place nodes by inode (aliases via planted links)
	tmpNodes map[string]*node  // replacing nodes by temporary file name
	used     int64             // plaintext bytes
	files    int64             // regular files
	quota    Quota
	closed   bool

	handles atomic.Int64 // open File values (takeHandle)
}

type fileKey struct{ dev, ino uint64 }

func newHome(s *Store, name string, root *os.Root) *home {
	return &home{
		s: s, name: name, root: root, dirfd: -1,
		nodes:    map[string]*node{},
		byID:     map[fileKey]*node{},
		tmpNodes: map[string]*node{},
		metaDirs: map[string]*dirMeta{},
	}
}

func (h *home) logger() *slog.Logger  { return h.s.log }
func (h *home) kr() *envelope.Keyring { return h.s.keyring() }

// homeBindingPrefix starts the envelope binding context of every file of a
// home (docs/FORMAT.md, section 5.5): a file moved to another home fails
// authentication there. Files are not bound to their path, so renames
// inside a home stay cheap.
const homeBindingPrefix = "securefsd home "

// binding is the envelope binding context of the home's files.
func (h *home) binding() []byte { return []byte(homeBindingPrefix + h.name) }

// init prepares the temporary directory, removes temporaries left by a
// crash, and counts the usage once.
func (h *home) init() error {
	if abs, err := filepath.Abs(filepath.Join(h.s.dir, h.name)); err == nil {
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			h.real = real
		}
	}
	if d, err := h.root.OpenFile(".", os.O_RDONLY|unix.O_PATH|unix.O_DIRECTORY, 0); err == nil {
		if fd, err := unix.Dup(int(d.Fd())); err == nil {
			unix.CloseOnExec(fd)
			h.dirfd = fd
		}
		d.Close()
	}
	if err := h.root.RemoveAll(tmpDirName); err != nil {
		return err
	}
	if err := h.root.Mkdir(tmpDirName, 0o700); err != nil {
		return err
	}
	return h.walk(".", false, func(rel string, fi fs.FileInfo) error {
		if fi.Mode().IsRegular() {
			h.files++
			if ps, err := envelope.PlaintextSize(fi.Size()); err == nil {
				h.used += ps
			}
		}
		return nil
	})
}

// close flushes and closes every open node and the root.
func (h *home) close() error {
	h.ns.Lock()
	defer h.ns.Unlock()
	h.metaMu.Lock()
	if h.metaTimer != nil {
		h.metaTimer.Stop()
		h.metaTimer = nil
	}
	h.flushMetaLocked()
	h.metaMu.Unlock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var ns []*node
	seen := map[*node]bool{}
	for _, m := range []map[string]*node{h.nodes, h.tmpNodes} {
		for _, n := range m {
			if !seen[n] {
				seen[n] = true
				ns = append(ns, n)
			}
		}
	}
	h.mu.Unlock()
	var errs []error
	for _, n := range ns {
		n.mu.Lock()
		if n.ef != nil {
			errs = append(errs, n.ef.Flush())
		}
		n.mu.Unlock()
	}
	errs = append(errs, h.root.Close())
	if h.dirfd >= 0 {
		unix.Close(h.dirfd)
		h.dirfd = -1
	}
	return errors.Join(errs...)
}

// walk calls fn for every entry below dir (depth first, parents before
// children), resolving every name through the root. Reserved entries are
// skipped unless withReserved. The first error stops it.
func (h *home) walk(dir string, withReserved bool, fn func(rel string, fi fs.FileInfo) error) error {
	return h.walkSkip(dir, withReserved, fn, nil)
}

// walkSkip is walk; if skip is not nil, an entry that cannot be read (a
// directory that cannot be listed, an entry whose mode cannot be
// repaired) is passed to skip and the walk goes on with the rest. Errors
// of fn always stop it.
func (h *home) walkSkip(dir string, withReserved bool, fn func(rel string, fi fs.FileInfo) error, skip func(rel string, err error)) error {
	fail := func(rel string, err error) error {
		if skip == nil {
			return err
		}
		skip(rel, err)
		return nil
	}
	if hook := h.s.walkDirHook; hook != nil {
		if err := hook(h.name, dir); err != nil {
			return fail(dir, err)
		}
	}
	d, err := h.root.Open(dir)
	if err != nil {
		return fail(dir, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fail(dir, err)
	}
	for _, name := range names {
		if !withReserved && isReserved(name) {
			continue
		}
		rel := path.Join(dir, name)
		fi, err := h.root.Lstat(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err := fail(rel, err); err != nil {
				return err
			}
			continue
		}
		if !isReserved(name) {
			// An entry a client chmod closed to the server (or an older
			// version's store): give the owner access back (modes.go).
			if fi, err = h.repairMode(rel, fi); err != nil {
				if err := fail(rel, fmt.Errorf("repair mode: %w", err)); err != nil {
					return err
				}
				continue
			}
		}
		if err := fn(rel, fi); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := h.walkSkip(rel, withReserved, fn, skip); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// tmpName returns a fresh random name in the temporary directory.
func tmpName() string {
	var b [16]byte
	rand.Read(b[:])
	return tmpDirName + "/" + hex.EncodeToString(b[:])
}

// addUsage adjusts the counters; negative deltas free.
func (h *home) addUsage(bytes, files int64) {
	h.mu.Lock()
	h.used += bytes
	h.files += files
	h.mu.Unlock()
}

// reserveFile checks the file quota and counts one more file.
func (h *home) reserveFile() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.quota.Files > 0 && h.files+1 > h.quota.Files {
		return ErrQuota
	}
	h.files++
	return nil
}

// reserveBytes checks the byte quota and counts n more bytes. credit is
// what the write will free when it completes (the size of the file an
// upload replaces), so replacing a file near the quota works.
func (h *home) reserveBytes(n, credit int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n > 0 && h.quota.Bytes > 0 && h.used+n-credit > h.quota.Bytes {
		return ErrQuota
	}
	h.used += n
	return nil
}

// plainSize is the client-visible size of a regular disk file of
// ciphertext size cs; files that are not envelope files count as 0.
func plainSize(cs int64) int64 {
	ps, err := envelope.PlaintextSize(cs)
	if err != nil {
		return 0
	}
	return ps
}

// lookup returns the node open under rel, if any. Caller holds ns.
func (h *home) lookup(rel string) *node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[rel]
}

// nodesUnder returns the open nodes whose name is dir or inside it.
func (h *home) nodesUnder(dir string) []*node {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*node
	for k, n := range h.nodes {
		if under(k, dir) {
			out = append(out, n)
		}
	}
	return out
}

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

// noLinks enforces the symlink policy: the store never follows a symlink
// planted on disk. It refuses (fs.ErrPermission) a name whose parent path
// goes through a symlink and, if final, a name that is itself one (for
// operations that would follow it). Other errors are left for the
// operation to report. Caller holds h.ns.
func (h *home) noLinks(rel string, final bool) error {
	fi, err := h.probe(rel)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return err
	case errors.Is(err, fs.ErrNotExist):
		// A name to be created: its parent must pass.
		pfi, err := h.probe(parentOf(rel))
		if errors.Is(err, fs.ErrPermission) {
			return err
		}
		if err == nil && pfi.Mode()&fs.ModeSymlink != 0 {
			return fs.ErrPermission
		}
	case err == nil && final && fi.Mode()&fs.ModeSymlink != 0:
		return fs.ErrPermission
	}
	return nil
}

// probe is Lstat of rel, refusing (fs.ErrPermission) a path that goes
// through a symlink. With openat2 (Linux 5.6+) the kernel resolves the
// whole name in one call with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS;
// without it, os.Root resolves it and /proc tells whether the path taken
// was the literal one.
func (h *home) probe(rel string) (fs.FileInfo, error) {
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
