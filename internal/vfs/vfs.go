// Package vfs is securefsd's encrypting virtual filesystem: one store
// directory holding a confined home tree per user, every regular file in the
// envelope format. SFTP, SCP, WebDAV and the browser client all go through it.
//
// Confinement is enforced by the kernel through one os.Root per home; names
// are also checked (no NUL, no reserved names) before they reach it.
//
// # Layout
//
// The store directory holds one directory per home (<store>/<home>). Inside
// a home, client names map one to one to disk names (names are not
// encrypted; contents, metadata and hashes are). Every regular file is an
// envelope file (internal/envelope, docs/FORMAT.md). The store's own files
// have names starting with ".securefsd", which clients can neither see nor
// use: <home>/.securefsd-tmp/ holds encrypted temporary files of uploads in
// progress (removed when the home is next opened after a crash), and each
// directory may hold .securefsd-meta, the encrypted metadata sidecar of its
// entries (WebDAV dead properties, cached hashes).
//
// # Confinement and links
//
// Every disk access of a home goes through one os.Root opened on it, so
// "..", absolute names and symlinks cannot leave the home (the kernel
// resolves each step relative to the root's descriptor). Client names are
// cleaned like a chroot and refused if they hold a NUL byte or a backslash,
// an element longer than 255 bytes, more than 4096 bytes in all
// (ErrInvalidName, which matches fs.ErrPermission), or a reserved element
// (a bare fs.ErrPermission).
//
// Policy on symbolic links: clients cannot create them (Symlink returns
// ErrUnsupported) and cannot read their targets (Readlink returns
// fs.ErrPermission). A symlink planted in the store by someone with disk
// access is never followed, wherever it points: Lstat and ReadDir report it
// as a symlink, Remove/Rename act on the link itself, and every operation
// that would go through it (Stat, Open, ReadDir, Chmod, Chtimes, Truncate,
// or any name with the link as a parent) gives fs.ErrPermission. The check
// (an O_PATH open of the parent and its /proc path) is policy; the
// confinement itself is os.Root's, which would keep even a followed link
// inside the home. Hard links are not offered. Only regular files and
// directories can be opened: FIFOs, sockets and devices give
// fs.ErrPermission.
//
// # Sizes, handles, replacement
//
// Sizes are computed from the ciphertext length (envelope.PlaintextSize);
// listing a directory reads it once plus one lstat per entry, never opening
// a file. All handles on a file (from any protocol) share one open-file
// state (one envelope.File with its chunk cache), so they see one size and
// the same bytes, and a writer's size wins over the disk's.
//
// O_CREATE of a new file and O_TRUNC of an existing file write an encrypted
// temporary file, renamed over the name when the writer closes (Abort
// drops it): a failed upload never leaves a partial file under its name
// (the old content stays). While it is written, the new file is visible to
// Stat, ReadDir and Open through the open-file table. Handles that were
// only reading the old file keep reading the old content. Writes without
// O_TRUNC (resume, sshfs edits, OpenSSH scp which truncates with SETSTAT
// afterwards), and O_TRUNC of a file another handle has open for writing,
// happen in place through the shared state. Plaintext never reaches the
// disk, temporary files included.
//
// Files that are not valid envelope files (plaintext put there by hand, or
// damaged ciphertext) fail with ErrIntegrity, logged with the client path;
// their bytes never pass through.
//
// # Modes and times
//
// Permission bits given by clients (Chmod, create mode minus the process
// umask read at NewStore) are metadata, reported as set: the server's own
// access never depends on them. The disk entry always grants the owner
// read and write (and search on directories); owner bits a client removed
// are recorded in the setuid/setgid/sticky bits (modes.go). Entries
// without owner access (older stores) are repaired when the home opens.
// Modification times are the disk entry's; an explicit Chtimes on an open
// file is re-applied after every later flush and at close, so it survives
// the write-back of buffered data.
//
// # Metadata and hashes
//
// Meta (WebDAV dead properties, cached hashes) lives in the encrypted
// sidecar of the entry's directory; a directory's own metadata is in its
// own sidecar, so it moves with it. Rename moves a file's entry, Remove
// drops it. Property changes are written through (temporary file, fsync,
// rename); hash-only changes in directories of more than 256 entries are
// written behind within a second, so bulk uploads do not rewrite a large
// sidecar per file. MD5 and SHA-1 of a file written sequentially from
// offset 0 are computed during the upload on background goroutines (the
// digests rclone checks after an upload: md5sum over SFTP, ownCloud
// SHA1/MD5 over WebDAV); otherwise, and for SHA-256, Checksums reads the
// file once and caches all three. A cached value is
// used only while the file's size and mtime match and no handle has it
// open; an in-place write drops it at once, Chtimes keeps it valid.
// ReadDirMeta gives a directory listing with its entries' metadata from
// one sidecar read (WebDAV Depth: 1 PROPFIND), not a lookup per entry.
//
// # Limits
//
// Open files and directories are counted per home over every FS value and
// protocol (Options.MaxHandlesPerHome) and per store (Options.MaxHandles):
// beyond, opens fail with ErrTooManyHandles. A directory handle holds at
// most one file descriptor between reads (none once read to the end). A write or truncate that would make a
// file larger than Options.MaxFileSize fails with ErrFileTooLarge.
//
// # Durability
//
// A failed write-back or fsync of a file is sticky: every later flush,
// Sync and Close of it fails, and a replacement that met one is never
// published (Linux may report a writeback error once and let a later
// fsync succeed without the data).
//
// # Quota and usage
//
// A home's usage (plaintext bytes, regular files; directories and the
// store's own files do not count) is counted once when the home is first
// opened and kept up to date; writes that would exceed the quota fail with
// ErrQuota, a full disk with ErrNoSpace. A replacement upload is credited
// the size of the file it replaces, so a file can be replaced near the
// quota; the file quota is checked when a new name is created.
//
// # Concurrency
//
// Store, FS and File are safe for concurrent use. Only one process may
// serve a store at a time.
package vfs

// API CONTRACT (kept stable for internal/sftpd, internal/davd, internal/webui,
// internal/admin and cmd/securefsd; the implementation is split over files):
//
// Client names are slash-separated, absolute or relative to the home ("/a/b",
// "a/b", "." and "/" mean the home). They are cleaned like a chroot: ".." at
// the top stays at the top. Names whose element starts with ".securefsd" are
// reserved for the store's own files (temporary files, metadata) and never
// listed; a client using one gets a *fs.PathError wrapping fs.ErrPermission.
//
//	var ErrQuota      // user's byte or file quota exceeded
//	var ErrNoSpace    // the disk under the store is full (ENOSPC/EDQUOT)
//	var ErrIntegrity  // stored ciphertext failed authentication/format checks (wraps envelope's error)
//	var ErrNotEmpty   // directory not empty
//	var ErrInvalidName // NUL byte, backslash, too long (matches fs.ErrPermission; reserved names give a bare fs.ErrPermission)
//	var ErrIsDir, ErrNotDir
//	var ErrUnsupported // e.g. symlink creation
//	var ErrTooManyHandles, ErrFileTooLarge // Options.MaxHandlesPerHome/MaxHandles, MaxFileSize
// Every error from an operation on a client name is a *fs.PathError whose Path
// is the client name (never a disk path) and whose Err is one of the above or
// a bare fs.ErrNotExist / fs.ErrExist / fs.ErrPermission, so os.IsNotExist works.
//
//	type Options struct {
//		Keyring *envelope.Keyring   // required; may be rotated while running (see Store.SetKeyring)
//		Logger  *slog.Logger        // nil: discard
//	}
//	func NewStore(dir string, opts Options) (*Store, error)  // creates dir 0700 if missing
//	func (s *Store) Close() error
//	func (s *Store) SetKeyring(kr *envelope.Keyring)          // after rotation
//	type Quota struct{ Bytes, Files int64 }                  // 0 = unlimited
//	// Perm: the rights an FS grants, perm.Perm (the type users stores, no
//	// conversion); what each right allows is documented in package perm.
//	// Zero grants nothing (fail closed).
//	type Perm = perm.Perm
//	const ( PermList = perm.List; ...; PermChmod = perm.Chmod ); const PermAll = perm.All
//	// A denied operation is a *fs.PathError wrapping fs.ErrPermission.
//	type HomeOptions struct{ Quota Quota; Perm Perm }
//	// Home opens (creating if needed) the home tree named home (a single
//	// path element, e.g. the user name). Opening the same home twice returns
//	// FS values sharing one open-file table, usage counter and locks (each FS
//	// value carries its own Perm).
//	func (s *Store) Home(home string, opts HomeOptions) (*FS, error)
//	func (s *Store) RemoveHome(ctx context.Context, home string) error // purge, resumable
//	// Rotate re-wraps every file of every home under the keyring's active KEK.
//	// Safe while serving; resumable; progress called per file (may be nil).
//	func (s *Store) Rewrap(ctx context.Context, progress func(done, total int, name string)) error
//	// Verify authenticates every file (all homes, or one if home != "") and
//	// calls report for each damaged one with a client-style path "home/a/b".
//	func (s *Store) Verify(ctx context.Context, home string, report func(path string, err error)) (checked int, err error)
//
//	// FS: one user's home. Safe for concurrent use.
//	func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (*File, error)
//	        // flags: os.O_RDONLY/O_WRONLY/O_RDWR|O_CREATE|O_EXCL|O_TRUNC|O_APPEND.
//	        // O_TRUNC on an existing file (or O_CREATE of a new one) writes to an
//	        // encrypted temporary file and renames it over name on Close
//	        // ("replacement"); other writes are in place through the shared
//	        // open-file state. Opening a directory (O_RDONLY, or O_RDWR for
//	        // WebDAV PROPPATCH) gives a File whose Readdir works.
//	func (f *FS) Open(name string) (*File, error)
//	func (f *FS) Create(name string) (*File, error)
//	func (f *FS) Stat(name string) (fs.FileInfo, error)   // plaintext size from ciphertext length; an open writer's size wins
//	func (f *FS) Lstat(name string) (fs.FileInfo, error)  // planted symlinks are reported as symlinks, never followed
//	func (f *FS) ReadDir(name string) ([]fs.FileInfo, error) // sorted by name; reserved names hidden
//	func (f *FS) Mkdir(name string, perm fs.FileMode) error
//	func (f *FS) MkdirAll(name string, perm fs.FileMode) error
//	func (f *FS) Remove(name string) error            // file or empty directory
//	func (f *FS) RemoveAll(name string) error
//	func (f *FS) Rename(oldname, newname string, overwrite bool) error // see its doc for atomicity; overwrite=false gives fs.ErrExist
//	func (f *FS) Chtimes(name string, atime, mtime time.Time) error
//	func (f *FS) Chmod(name string, mode fs.FileMode) error   // permission bits kept (metadata: never the server's access) and reported
//	func (f *FS) Truncate(name string, size int64) error      // through an open handle's state if one is open
//	func (f *FS) Symlink(oldname, newname string) error        // ErrUnsupported (documented policy)
//	func (f *FS) Readlink(name string) (string, error)         // planted symlinks: fs.ErrPermission
//	func (f *FS) Usage() (Usage, error)
//	type Usage struct{ UsedBytes, Files, QuotaBytes, QuotaFiles, DiskTotal, DiskFree int64 }
//	// Per-entry metadata, encrypted at rest, kept with the entry across Rename
//	// and deleted with it: WebDAV dead properties and cached content hashes.
//	func (f *FS) Meta(name string) (Meta, error)            // zero Meta if none
//	func (f *FS) UpdateMeta(name string, fn func(*Meta) error) error
//	// ReadDirMeta: ReadDir plus the metadata of the entries that have some
//	// (keyed by entry name) in one pass: one directory read and one sidecar
//	// read, no per-entry lookup. Hashes only while valid for the listed
//	// entry. A damaged sidecar still gives the listing, with an error.
//	func (f *FS) ReadDirMeta(name string) ([]fs.FileInfo, map[string]Meta, error)
//	type Meta struct {
//		Props map[string]string // WebDAV dead properties: key "{namespace}local", value raw inner XML
//		Hashes *Hashes          // nil if unknown
//	}
//	type Hashes struct{ MD5, SHA1, SHA256 string; Size int64; ModTime time.Time } // valid if Size/ModTime match the file; "" = not computed
//	type HashKind uint8
//	const ( HashMD5 HashKind = 1 << iota; HashSHA1; HashSHA256; HashAll = HashMD5|HashSHA1|HashSHA256 )
//	// Checksums returns the file's hex digests of the kinds in want (all
//	// three if none given), from the cache if valid and holding them, else
//	// by reading the file once (computing and caching all three). Files
//	// written sequentially from offset 0 get MD5 and SHA-1 computed during
//	// the upload; SHA-256 only on demand, so callers needing only MD5/SHA-1
//	// should say so (a file read per file otherwise).
//	func (f *FS) Checksums(ctx context.Context, name string, want ...HashKind) (Hashes, error)
//
//	// File: Safe for concurrent ReadAt/WriteAt (pkg/sftp issues them out of order from 8 workers).
//	func (h *File) Name() string                      // client name
//	func (h *File) Stat() (fs.FileInfo, error)
//	func (h *File) Read(p []byte) (int, error)
//	func (h *File) Write(p []byte) (int, error)
//	func (h *File) ReadAt(p []byte, off int64) (int, error)
//	func (h *File) WriteAt(p []byte, off int64) (int, error)
//	func (h *File) Seek(off int64, whence int) (int64, error)
//	func (h *File) Truncate(size int64) error
//	func (h *File) Sync() error
//	func (h *File) Close() error                     // flushes; for replacements renames into place; errors reach the caller
//	func (h *File) Abort() error                     // close a replacement without publishing it (upload failed)
//	func (h *File) Readdir(n int) ([]fs.FileInfo, error) // directories; n>0 streams in batches like os.File.Readdir
//	func (h *File) ReadDir(n int) ([]fs.DirEntry, error)
