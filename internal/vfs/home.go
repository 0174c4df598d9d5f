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
	s    *Store
	name string // the tree's directory in the store (logs, walk hooks)
	// bind is the envelope binding context of the tree's files.
	bind string
	// folder: the tree is a shared folder (namespace.go).
	folder bool
	// d holds the tree's entries; root is the same tree as an os.Root
	// in version 1 (nil in storage version 2), for what only a directory
	// on disk has (disk.go).
	d     disk
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
	metaBytes int64 // property bytes held by metaDirs (bounded by metaCacheBytes)
	metaTimer *time.Timer

	mu       sync.Mutex        // guards the fields below
	nodes    map[string]*node  // open files by cleaned client name
	byID     map[fileKey]*node // in-place nodes by inode (aliases via planted links)
	tmpNodes map[string]*node  // replacing nodes by temporary file name
	used     int64             // plaintext bytes of files
	files    int64             // regular files
	// props is the bytes of WebDAV dead properties in the home's sidecars
	// (dirProps per directory); they count against the byte quota.
	// dirPropsStale: directories moved or went, so dirProps' paths may be
	// wrong; countProps runs again before props decide a PROPPATCH.
	props         int64
	dirProps      map[string]int64
	dirPropsStale bool
	quota         Quota
	closed        bool

	handles atomic.Int64 // open File values (takeHandle)
}

type fileKey struct{ dev, ino uint64 }

func newHome(s *Store, name string, root *os.Root) *home {
	return &home{
		s: s, name: name, bind: homeBindingPrefix + name, d: osDisk{root}, root: root, dirfd: -1,
		nodes:    map[string]*node{},
		byID:     map[fileKey]*node{},
		tmpNodes: map[string]*node{},
		metaDirs: map[string]*dirMeta{},
		dirProps: map[string]int64{},
	}
}

func (h *home) logger() *slog.Logger  { return h.s.log }
func (h *home) kr() *envelope.Keyring { return h.s.keyring() }

// homeBindingPrefix starts the envelope binding context of every file of a
// home (docs/FORMAT.md, section 5.5): a file moved to another home fails
// authentication there. Files are not bound to their path, so renames
// inside a home stay cheap.
const homeBindingPrefix = "securefsd home "

// folderBindingPrefix starts the binding context of a shared folder's
// files: a file moved on disk between a folder and a home, or between two
// folders, fails authentication as between homes. A home binding and a
// folder binding never coincide (the prefixes differ).
const folderBindingPrefix = "securefsd folder "

// binding is the envelope binding context of the home's files.
func (h *home) binding() []byte { return []byte(h.bind) }

// init prepares the temporary directory, removes temporaries left by a
// crash, and counts the usage once.
func (h *home) init() error {
	if h.root != nil {
		if abs, err := filepath.Abs(filepath.Join(h.s.dir, h.name)); err == nil {
			if real, err := filepath.EvalSymlinks(abs); err == nil {
				h.real = real
			}
		}
		h.dirfd = pathFD(h.root)
	}
	if err := h.d.RemoveAll(tmpDirName); err != nil {
		return err
	}
	if err := h.d.Mkdir(tmpDirName, 0o700); err != nil {
		return err
	}
	err := h.walk(".", false, func(rel string, fi fs.FileInfo) error {
		if fi.Mode().IsRegular() {
			h.files++
			h.used += h.d.plainSize(fi)
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.countProps()
	return nil
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
	errs = append(errs, h.d.Close())
	if h.dirfd >= 0 {
		closeFD(h.dirfd)
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
	d, err := h.d.Open(dir)
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
		fi, err := h.d.Lstat(rel)
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
	if n > 0 && h.quota.Bytes > 0 && h.used+h.props+n-credit > h.quota.Bytes {
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

// noLinks enforces the symlink policy: the store never follows a symlink
// planted on disk. It refuses (fs.ErrPermission) a name whose parent path
// goes through a symlink and, if final, a name that is itself one (for
// operations that would follow it). Other errors are left for the
// operation to report. Caller holds h.ns.
func (h *home) noLinks(rel string, final bool) error {
	if h.root == nil {
		return nil // storage v2 has no links, and nothing to look up here
	}
	_, err := h.linkFree(rel, final)
	return err
}

// linkFree is noLinks that also returns what it saw at rel (nil if rel
// does not exist), so that a caller needs no second lstat.
func (h *home) linkFree(rel string, final bool) (fs.FileInfo, error) {
	fi, _, err := h.linkFreeAbsent(rel, final)
	return fi, err
}

// linkFreeAbsent is linkFree that also reports a name known not to exist:
// on storage v2, which has no links, the lstat's "not found" is what any
// later lookup under the same lock would find, so the caller need not
// look again (on v1 a missing name may sit below a link, and is looked
// up again by the operation).
func (h *home) linkFreeAbsent(rel string, final bool) (fi fs.FileInfo, absent bool, err error) {
	fi, err = h.probe(rel)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return nil, false, err
	case errors.Is(err, fs.ErrNotExist) && h.root == nil:
		return nil, true, nil // storage v2 has no links to refuse
	case errors.Is(err, fs.ErrNotExist):
		// A name to be created: its parent must pass.
		pfi, err := h.probe(parentOf(rel))
		if errors.Is(err, fs.ErrPermission) {
			return nil, false, err
		}
		if err == nil && pfi.Mode()&fs.ModeSymlink != 0 {
			return nil, false, fs.ErrPermission
		}
		return nil, false, nil
	case err != nil:
		return nil, false, nil // left for the operation to report
	case final && fi.Mode()&fs.ModeSymlink != 0:
		return nil, false, fs.ErrPermission
	}
	return fi, false, nil
}
