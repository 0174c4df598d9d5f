package vfs

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/nsfs"
	"github.com/securefsd/securefsd/internal/perm"
)

// Options configure a Store. Keyring is required; the zero value of the
// other fields works.
type Options struct {
	// Keyring wraps new files' keys (active KEK) and unwraps existing ones.
	// It may be replaced while running with Store.SetKeyring.
	Keyring *envelope.Keyring
	// Logger receives integrity failures and internal errors. nil: discard.
	Logger *slog.Logger
	// UploadHashes are the digests computed while a file is written
	// sequentially (the ones clients ask for right after an upload, e.g.
	// HashMD5 for rclone over SFTP). Zero, the default, computes every
	// digest on demand (Checksums) and caches it: hashing costs several
	// times the encryption, and most uploads are never asked for one.
	UploadHashes HashKind
	// AEAD encrypts new files and metadata (existing files keep theirs).
	// Zero: envelope.PreferredAEAD().
	AEAD envelope.AEAD
	// MaxHandlesPerHome bounds the files and directories open at once in
	// one home (one user), over every session and protocol: beyond it,
	// opens fail with ErrTooManyHandles, so one user cannot take the
	// server's file descriptors. 0: DefaultMaxHandlesPerHome.
	MaxHandlesPerHome int
	// MaxHandles bounds the open files and directories of all homes
	// together. 0: half the process's soft RLIMIT_NOFILE (the other half
	// is the reserve for connections, the admin socket, the user
	// database and internal reads), or unlimited where there is none.
	MaxHandles int
	// MaxFileSize is the largest plaintext size a write or truncate may
	// give a file (ErrFileTooLarge beyond). 0: DefaultMaxFileSize.
	MaxFileSize int64
	// SharedPrefix is the directory of every view (View) under which the
	// shared folders appear: one name, "" for DefaultSharedPrefix. It
	// shadows a home entry of the same name.
	SharedPrefix string
	// Observer, if set, is told of integrity failures and quota refusals
	// as clients meet them (metrics).
	Observer Observer
	// Storage is the layout of a new (empty) store directory: StorageV1,
	// the default, or StorageV2 (docs/STORAGE.md). A store that exists is
	// opened as what it is: version 2 has its index file in the store
	// directory.
	Storage int
	// IndexKey is storage version 2's index root key
	// (index.RootKeySize bytes, kept by the caller in a key file):
	// required to open or create a version 2 store.
	IndexKey []byte
	// Relaxed, if positive, answers a version 2 store's index updates
	// (an upload's CLOSE, a rename, a removal) before they are fsynced,
	// committing them at most Relaxed later (index.Options.Relaxed,
	// `serve --durability relaxed`): a crash of the process loses none, a
	// power cut those of the last Relaxed. Zero: every answered change is
	// on disk. Not for a store whose index is given (Index). A pause of
	// relaxedQuiet in the changes commits them sooner.
	Relaxed time.Duration
	// Pad pads the stored size of version 2's files with Padmé
	// (content.Options.Pad, docs/SECURITY.md).
	Pad bool
	// OpenDamaged opens a version 2 store whose index fails its check at
	// open (a record changed, removed or put back from an older copy),
	// which NewStore otherwise refuses with ErrIntegrity: for Verify,
	// which names what is damaged, and offline management.
	OpenDamaged bool
	// Index, if set, is storage version 2's namespace index, opened by
	// the caller: a cluster's, in etcd (index.OpenEtcd), shared by every
	// node. The store is version 2 whatever Storage says, and the store
	// directory holds no index file (one there is refused). The caller
	// closes it after the Store.
	Index *index.Index
	// Blobs, if set, keeps version 2's content blobs instead of the store
	// directory's blobs/: an object store (s3blob.Store). The caller
	// closes it after the Store. A Store with an Index shared with other
	// nodes needs shared Blobs too.
	Blobs nsfs.Blobs
	// Pins, if set, shares the epochs open files read at with the other
	// nodes serving the same Index (nsfs.Pins, docs/CLUSTER.md), so no
	// node's collector deletes what another node's open file reads. A
	// cluster node sets it and calls Store.Refresh every few seconds.
	Pins nsfs.Pins
}

// The storage layouts (Options.Storage).
const (
	StorageV1 = 1
	StorageV2 = 2
)

// ErrStorageVersion: the store directory holds another layout than the
// one asked for.
var ErrStorageVersion = errors.New("vfs: storage version mismatch")

// Observer is told of events worth counting (metrics). Its methods are
// called synchronously, from any goroutine, and must be quick.
type Observer interface {
	IntegrityFailure()
	QuotaRefused()
}

// ErrUnsupportedOS: the store needs Linux (openat2, O_PATH, /proc); on
// other systems the package builds, for the CLI's offline commands that
// do not open a store, but NewStore refuses.
var ErrUnsupportedOS = errors.New("vfs: the store needs Linux (securefsd serve and the commands that open the store run only on Linux)")

// DefaultMaxHandlesPerHome is Options.MaxHandlesPerHome's default: twice
// what OpenSSH's sftp-server allows one session.
const DefaultMaxHandlesPerHome = 1024

// DefaultMaxFileSize is Options.MaxFileSize's default, 1 TiB.
const DefaultMaxFileSize = 1 << 40

// Quota limits a home in plaintext bytes and regular files. 0 = unlimited.
type Quota struct{ Bytes, Files int64 }

// Perm is the set of rights an FS grants: perm.Perm, the type users
// stores, so no conversion stands between a user's rights and the FS. What
// each right allows is documented in package perm. The zero value grants
// nothing.
type Perm = perm.Perm

// Rights, named for use inside vfs (see package perm).
const (
	PermList      = perm.List
	PermDownload  = perm.Download
	PermUpload    = perm.Upload
	PermOverwrite = perm.Overwrite
	PermDelete    = perm.Delete
	PermRename    = perm.Rename
	PermMkdir     = perm.Mkdir
	PermChmod     = perm.Chmod
)

// PermAll grants every right.
const PermAll = perm.All

// HomeOptions configure one FS value returned by Store.Home.
type HomeOptions struct {
	Quota Quota
	Perm  Perm
}

// Usage is what FS.Usage reports: the home's plaintext usage and quota, and
// the disk under the store.
type Usage struct {
	UsedBytes, Files       int64
	QuotaBytes, QuotaFiles int64
	DiskTotal, DiskFree    int64
}

// Store is the store directory: one home tree per user. Safe for concurrent
// use.
type Store struct {
	dir  string
	root *os.Root
	// v2 is storage version 2's file system (nil in version 1), over
	// the index file and blob directory it owns.
	v2    *storeV2
	kr    atomic.Pointer[envelope.Keyring]
	log   *slog.Logger
	umask fs.FileMode
	// uploadHashes: Options.UploadHashes.
	uploadHashes HashKind
	aead         envelope.AEAD

	// maxPerHome, maxHandles: the handle caps (Options); handles counts
	// the open handles of every home.
	maxPerHome, maxHandles int64
	handles                atomic.Int64
	// maxFileSize: Options.MaxFileSize.
	maxFileSize int64
	// sharedPrefix: Options.SharedPrefix; opened: when NewStore ran (the
	// prefix directory's modification time).
	sharedPrefix string
	opened       time.Time
	// obs: Options.Observer (nil: none).
	obs Observer

	// errEscape is os.Root's error for a name leaving the root. os keeps
	// it unexported; NewStore captures it once (an Lstat of "..") so
	// errors are matched with errors.Is, never by their text.
	errEscape error

	// syncFile fsyncs a file whose data must be durable (a replacement
	// before it is published, Sync). nil: (*os.File).Sync. Tests set it
	// to inject fsync failures.
	syncFile func(diskFile) error
	// walkDirHook, if set, is called before a walk lists a directory
	// (home name, directory); an error it returns is that listing's.
	// Tests set it to inject failures into sweeps.
	walkDirHook func(home, dir string) error
	// moveHook, if set, is called at each stage of a move between trees
	// (move.go); an error it returns stops the move there, as a crash
	// would. Tests set it.
	moveHook func(stage string) error

	mu     sync.Mutex
	homes  map[string]*home
	closed bool
}

// fsync makes f's data durable (through the test seam if set).
func (s *Store) fsync(f diskFile) error {
	if s.syncFile != nil {
		return s.syncFile(f)
	}
	return f.Sync()
}

// NewStore opens (creating with mode 0700 if missing) the store directory.
// The process umask is read once here and applied to client-created files.
func NewStore(dir string, opts Options) (*Store, error) {
	if !supportedOS {
		return nil, ErrUnsupportedOS
	}
	if opts.Keyring == nil {
		return nil, errors.New("vfs: Options.Keyring is required")
	}
	if opts.AEAD != 0 && opts.AEAD != envelope.XAES256GCM && opts.AEAD != envelope.XChaCha20Poly1305 {
		return nil, fmt.Errorf("vfs: unknown AEAD %v", opts.AEAD)
	}
	if opts.MaxHandlesPerHome < 0 || opts.MaxHandles < 0 || opts.MaxFileSize < 0 {
		return nil, errors.New("vfs: negative limit in Options")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vfs: create store: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("vfs: open store: %w", err)
	}
	s := &Store{dir: dir, root: root, log: opts.Logger, uploadHashes: opts.UploadHashes & HashAll, aead: cmp.Or(opts.AEAD, envelope.PreferredAEAD()), homes: map[string]*home{}}
	if s.log == nil {
		s.log = discardLogger()
	}
	s.maxPerHome = int64(cmp.Or(opts.MaxHandlesPerHome, DefaultMaxHandlesPerHome))
	s.maxHandles = int64(opts.MaxHandles)
	if s.maxHandles == 0 {
		s.maxHandles = defaultMaxHandles()
	}
	s.maxFileSize = cmp.Or(opts.MaxFileSize, DefaultMaxFileSize)
	s.sharedPrefix = cmp.Or(opts.SharedPrefix, DefaultSharedPrefix)
	if !validPrefix(s.sharedPrefix) {
		root.Close()
		return nil, fmt.Errorf("vfs: shared prefix %q: %w", opts.SharedPrefix, ErrInvalidName)
	}
	s.opened = time.Now().Truncate(time.Second)
	s.obs = opts.Observer
	s.umask = processUmask()
	s.kr.Store(opts.Keyring)
	var pe *fs.PathError
	if _, err := root.Lstat(".."); errors.As(err, &pe) {
		s.errEscape = pe.Err
	} else {
		root.Close()
		return nil, fmt.Errorf("vfs: os.Root let a name leave the store (%v)", err)
	}
	if opts.Relaxed > 0 && opts.Index != nil {
		root.Close()
		return nil, errors.New("vfs: relaxed durability is for an index file, not a shared index")
	}
	if err := s.openV2(opts); err != nil {
		root.Close()
		return nil, err
	}
	if s.v2 == nil && opts.Relaxed > 0 {
		root.Close()
		return nil, fmt.Errorf("vfs: relaxed durability needs storage version 2 (this store is version 1; securefsd migrate): %w", ErrStorageVersion)
	}
	if s.v2 == nil {
		s.recoverMoves()
	}
	return s, nil
}

// OpenHandles returns the files and directories open in every home now.
func (s *Store) OpenHandles() int64 { return s.handles.Load() }

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// DiskSpace returns the size and the free bytes of the file system holding
// the store.
func (s *Store) DiskSpace() (total, free int64, err error) { return diskSpace(s.dir) }

// Close closes every home. Open handles are flushed best effort; later
// operations on FS values of this store fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, h := range s.homes {
		errs = append(errs, h.close())
	}
	s.homes = nil
	if s.v2 != nil {
		errs = append(errs, s.v2.close())
	}
	errs = append(errs, s.root.Close())
	return errors.Join(errs...)
}

// SetKeyring replaces the keyring (after a rotation): new files are wrapped
// under its active KEK, and Rewrap moves existing ones to it.
func (s *Store) SetKeyring(kr *envelope.Keyring) {
	if kr != nil {
		s.kr.Store(kr)
		if s.v2 != nil {
			s.v2.setKeyring(kr)
		}
	}
}

func (s *Store) keyring() *envelope.Keyring { return s.kr.Load() }

// Home opens (creating if needed) the home tree named home, a single path
// element such as the user name. Opening the same home twice returns FS
// values sharing one open-file table, usage counter and locks; each FS value
// carries its own Perm. The latest Quota given applies to the shared home.
func (s *Store) Home(home string, opts HomeOptions) (*FS, error) {
	h, err := s.home(home)
	if err != nil {
		return nil, err
	}
	return h.open(opts), nil
}

// open returns an FS on the tree h with opts' rights, after making opts'
// quota the tree's (the latest given applies to every FS of the tree).
func (h *home) open(opts HomeOptions) *FS {
	h.mu.Lock()
	h.quota = opts.Quota
	h.mu.Unlock()
	return &FS{h: h, perm: opts.Perm}
}

// home returns the shared state of a home, opening it on first use.
func (s *Store) home(name string) (*home, error) {
	if !validHome(name) {
		return nil, fmt.Errorf("vfs: home %q: %w", name, ErrInvalidName)
	}
	return s.tree(name, homeBindingPrefix+name, false)
}

// tree returns the shared state of the tree at dir (a home, or a folder
// under foldersDir when folder) whose files are bound to bind, opening it
// on first use.
func (s *Store) tree(name, bind string, folder bool) (*home, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("vfs: home %q: %w", name, fs.ErrClosed)
	}
	if h := s.homes[name]; h != nil {
		return h, nil
	}
	if s.v2 != nil {
		return s.treeV2(name, bind, folder)
	}
	if err := s.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("vfs: create home %q: %w", name, err)
	}
	fi, err := s.root.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("vfs: home %q: %w", name, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("vfs: home %q is not a directory: %w", name, ErrNotDir)
	}
	root, err := s.root.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("vfs: open home %q: %w", name, err)
	}
	h := newHome(s, name, root)
	h.bind, h.folder = bind, folder
	if err := h.init(); err != nil {
		root.Close()
		return nil, fmt.Errorf("vfs: open home %q: %w", name, err)
	}
	s.homes[name] = h
	return h, nil
}

// homeNames lists the home directories in the store.
func (s *Store) homeNames() ([]string, error) { return s.treeNames(".") }

// treeNames lists the trees (homes or folders) in the store's directory
// dir: the directories with a valid name, sorted.
func (s *Store) treeNames(dir string) ([]string, error) {
	if s.v2 != nil {
		return s.v2.treeNames(dir)
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if !validHome(n) {
			continue
		}
		if fi, err := s.root.Lstat(path.Join(dir, n)); err == nil && fi.IsDir() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// RemoveHome deletes a home tree and everything in it. Handles still open
// on it fail afterwards. It is idempotent, so an interrupted purge is
// resumed by calling it again.
func (s *Store) RemoveHome(ctx context.Context, home string) error {
	if !validHome(home) {
		return fmt.Errorf("vfs: home %q: %w", home, ErrInvalidName)
	}
	return s.removeTree(ctx, home)
}

// removeTree deletes the tree at dir (a home or a folder), closing its
// open state first. Idempotent.
func (s *Store) removeTree(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	h := s.homes[dir]
	delete(s.homes, dir)
	s.mu.Unlock()
	if h != nil {
		h.close()
	}
	if s.v2 != nil {
		if err := s.v2.fs.RemoveTree(dir); err != nil {
			return fmt.Errorf("vfs: remove %q: %w", dir, err)
		}
		return nil
	}
	err := s.root.RemoveAll(dir)
	if err != nil {
		// Directories a client made read-only (chmod 0555) block removal
		// for a non-root server: give the owner rights back, retry.
		s.makeRemovable(dir)
		err = s.root.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("vfs: remove %q: %w", dir, err)
	}
	return nil
}

func (s *Store) makeRemovable(dir string) {
	fi, err := s.root.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return
	}
	s.root.Chmod(dir, fi.Mode().Perm()|0o700)
	d, err := s.root.Open(dir)
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		s.makeRemovable(path.Join(dir, n))
	}
}

// CheckWritable creates, writes, syncs and removes a file in the store
// directory (readiness probes): it fails on a read-only or full file
// system. The probe's name is a dot-file, which is never a home.
func (s *Store) CheckWritable() error {
	name := ".probe-" + rand.Text()
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("vfs: store not writable: %w", err)
	}
	_, err = f.Write([]byte{0})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := s.root.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("vfs: store not writable: %w", err)
	}
	return nil
}
