// Package vfs is securefsd's encrypting virtual filesystem: one store
// directory holding a confined home tree per user, every regular file in the
// envelope format. SFTP, SCP, WebDAV and the browser client all go through it.
//
// Confinement is enforced by the kernel through one os.Root per home; names
// are also checked (no NUL, no reserved names) before they reach it.
//
// Client names are slash-separated, absolute or relative to the home
// ("/a/b", "a/b", "." and "/" mean the home), cleaned like a chroot: ".."
// at the top stays at the top. Every error from an operation on a client
// name is a *fs.PathError whose Path is the client name (never a disk
// path) and whose Err is one of the sentinel errors (ErrQuota,
// ErrIntegrity, ...; each also matches its errno) or a bare fs.ErrNotExist,
// fs.ErrExist, fs.ErrPermission, fs.ErrClosed or fs.ErrInvalid. The API
// itself is what `go doc` shows.
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
// sidecar per file. Digests (MD5, SHA-1, SHA-256: what rclone checks
// after an upload, md5sum over SFTP, ownCloud checksums over WebDAV) are
// computed on demand: Checksums reads the file once and caches the kinds
// asked for. Only the kinds in Options.UploadHashes (none by default) are
// computed during an upload, for files written sequentially from offset
// 0. A cached value is
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
// serve a store at a time. Every operation on a client name enters through
// FS.enter (fs.go); the lock order is in docs/ARCHITECTURE.md.
package vfs
