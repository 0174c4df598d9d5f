package vfs

import (
	"errors"
	"io/fs"
	"log/slog"
	"syscall"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/namespace"
)

// kindError is a sentinel that also matches the errno (or fs error) it
// stands for, so callers may test either errors.Is(err, vfs.ErrNotEmpty) or
// errors.Is(err, syscall.ENOTEMPTY).
type kindError struct {
	msg  string
	also []error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Is(target error) bool {
	for _, a := range e.also {
		if target == a {
			return true
		}
	}
	return false
}

// Sentinel errors. Every error returned for a client name is a *fs.PathError
// whose Err is one of these or a bare fs.ErrNotExist / fs.ErrExist /
// fs.ErrPermission / fs.ErrClosed / fs.ErrInvalid.
var (
	// ErrQuota: the home's byte or file quota would be exceeded.
	ErrQuota error = &kindError{"quota exceeded", []error{syscall.EDQUOT}}
	// ErrNoSpace: the disk under the store is full (ENOSPC or EDQUOT).
	ErrNoSpace error = &kindError{"no space left on device", []error{syscall.ENOSPC}}
	// ErrIntegrity: stored ciphertext failed authentication or format
	// checks. The PathError's Err also wraps the envelope error.
	ErrIntegrity error = &kindError{"integrity check failed", []error{syscall.EIO}}
	// ErrNotEmpty: directory not empty.
	ErrNotEmpty error = &kindError{"directory not empty", []error{syscall.ENOTEMPTY}}
	// ErrInvalidName: NUL byte, backslash, overlong name. It matches
	// fs.ErrPermission for errors.Is (os.IsPermission does not unwrap it;
	// reserved names get a bare fs.ErrPermission instead).
	ErrInvalidName error = &kindError{"invalid name", []error{fs.ErrPermission, syscall.EINVAL}}
	// ErrIsDir: a file operation on a directory.
	ErrIsDir error = &kindError{"is a directory", []error{syscall.EISDIR}}
	// ErrNotDir: a directory operation on a file, or a file used as a parent.
	ErrNotDir error = &kindError{"not a directory", []error{syscall.ENOTDIR}}
	// ErrUnsupported: an operation the store refuses by policy (symlinks,
	// hard links). It matches errors.ErrUnsupported.
	ErrUnsupported error = &kindError{"operation not supported", []error{errors.ErrUnsupported, syscall.ENOTSUP}}
	// ErrTooManyHandles: the home (or the store) holds as many open files
	// and directories as Options allow; close some and retry.
	ErrTooManyHandles error = &kindError{"too many open files", []error{syscall.EMFILE}}
	// ErrFileTooLarge: a write or truncate would make a file larger than
	// Options.MaxFileSize.
	ErrFileTooLarge error = &kindError{"file too large", []error{syscall.EFBIG}}
	// ErrPropsTooLarge: metadata (WebDAV dead properties) over a cap: one
	// value over MaxPropValue, one entry's over MaxEntryProps, or one
	// directory's over MaxDirProps.
	ErrPropsTooLarge error = &kindError{"properties too large", nil}
	// ErrUnavailable: storage that is not on this machine did not answer
	// (the object store, or etcd without a quorum: index.ErrUnavailable,
	// blob.ErrUnavailable). Nothing was changed that the caller was not
	// told of; retrying later may succeed. A node cut off from etcd
	// refuses every operation with it (fail closed).
	ErrUnavailable error = &kindError{"storage unavailable", nil}
)

// ErrSidecar: a metadata sidecar decrypted and authenticated, but its
// plaintext is not JSON of the format docs/FORMAT.md specifies, or has a
// version this code does not read. Operations report it as ErrIntegrity
// (the PathError's Err wraps both).
var ErrSidecar = errors.New("malformed metadata sidecar")

// integrityError carries the envelope error under ErrIntegrity.
type integrityError struct{ err error }

func (e *integrityError) Error() string   { return "integrity check failed: " + e.err.Error() }
func (e *integrityError) Unwrap() []error { return []error{ErrIntegrity, e.err} }
func newIntegrity(err error) error        { return &integrityError{err} }
func isEnvelopeErr(err error) bool {
	for _, e := range []error{envelope.ErrAuth, envelope.ErrTruncated, envelope.ErrStaleFinal,
		envelope.ErrUnknownKey, envelope.ErrVersion, envelope.ErrFormat} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errInternal replaces errors whose text might name a disk path.
var errInternal = errors.New("internal error")

// pathErr builds the client-facing error for op on client name. err may be
// a raw error from os.Root or envelope (with disk paths inside); only its
// category survives.
func (h *home) pathErr(op, name string, err error) error {
	kind := h.classify(op, name, err)
	if o := h.s.obs; o != nil {
		switch {
		case errors.Is(kind, ErrIntegrity):
			o.IntegrityFailure()
		case kind == ErrQuota:
			o.QuotaRefused()
		}
	}
	if kind == fs.ErrNotExist {
		// A parent that is a new file not yet published is not a
		// directory, as on a plain file system.
		if rel, cerr := cleanName(op, name); cerr == nil && h.pendingAncestor(rel) {
			kind = ErrNotDir
		}
	}
	return &fs.PathError{Op: op, Path: name, Err: kind}
}

// classify maps err to one of the package's sentinel categories.
func (h *home) classify(op, name string, err error) error {
	switch {
	case err == nil:
		return nil
	case isKind(err):
		return unwrapKind(err)
	case isEnvelopeErr(err), errors.Is(err, ErrSidecar):
		h.logger().Error("vfs: integrity failure", "home", h.name, "path", name, "op", op, "integrity", true, "err", err)
		return newIntegrity(err)
	case errors.Is(err, index.ErrUnavailable), errors.Is(err, index.ErrCompacted), errors.Is(err, index.ErrConflict), errors.Is(err, blob.ErrUnavailable):
		h.logger().Warn("vfs: storage unavailable", "home", h.name, "path", name, "op", op, "err", err)
		return ErrUnavailable
	case errors.Is(err, index.ErrAuth), errors.Is(err, content.ErrLayout), errors.Is(err, blob.ErrNotFound):
		// Storage v2: a record or a segment that does not open, or a
		// blob the index names and the disk does not have.
		h.logger().Error("vfs: integrity failure", "home", h.name, "path", name, "op", op, "integrity", true, "err", err)
		return newIntegrity(err)
	case errors.Is(err, namespace.ErrNotDir):
		return ErrNotDir
	case errors.Is(err, namespace.ErrIsDir):
		return ErrIsDir
	case errors.Is(err, namespace.ErrNotEmpty):
		return ErrNotEmpty
	case errors.Is(err, namespace.ErrQuota):
		return ErrQuota
	case errors.Is(err, fs.ErrNotExist):
		return fs.ErrNotExist
	case errors.Is(err, syscall.ENOTEMPTY):
		return ErrNotEmpty
	case errors.Is(err, fs.ErrExist):
		return fs.ErrExist
	case errors.Is(err, syscall.EISDIR):
		return ErrIsDir
	case errors.Is(err, syscall.ENOTDIR):
		return ErrNotDir
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrNoSpace
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		h.logger().Warn("vfs: out of file descriptors", "home", h.name, "path", name, "op", op, "err", err)
		return ErrTooManyHandles
	case errors.Is(err, syscall.EFBIG):
		return ErrFileTooLarge
	case errors.Is(err, syscall.ENAMETOOLONG):
		return ErrInvalidName
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ELOOP), h.s.isEscape(err):
		return fs.ErrPermission
	case errors.Is(err, fs.ErrClosed):
		return fs.ErrClosed
	case errors.Is(err, syscall.EINVAL), errors.Is(err, fs.ErrInvalid):
		return fs.ErrInvalid
	case errors.Is(err, syscall.EXDEV):
		return syscall.EXDEV
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		h.logger().Warn("vfs: i/o error", "home", h.name, "path", name, "op", op, "err", err)
		return errno // errno text names no path
	}
	h.logger().Error("vfs: internal error", "home", h.name, "path", name, "op", op, "err", err)
	return errInternal
}

// kinds are the package's sentinels, in the order classify tests them.
var kinds = []error{ErrQuota, ErrNoSpace, ErrIntegrity, ErrNotEmpty, ErrInvalidName, ErrIsDir, ErrNotDir, ErrUnsupported, ErrTooManyHandles, ErrFileTooLarge, ErrPropsTooLarge, ErrUnavailable}

func isKind(err error) bool {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// unwrapKind returns err itself when it is an integrity error (keeping the
// envelope cause), else the bare sentinel.
func unwrapKind(err error) error {
	var ie *integrityError
	if errors.As(err, &ie) {
		return ie
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return err
}

// isEscape reports os.Root's error for a name that leaves the root.
func (s *Store) isEscape(err error) bool { return s.errEscape != nil && errors.Is(err, s.errEscape) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// pendingAncestor reports whether a parent of rel is an open file (a new
// file not yet on disk makes its "children" ENOTDIR, as on disk).
func (h *home) pendingAncestor(rel string) bool {
	for p := parentOf(rel); p != "."; p = parentOf(p) {
		if h.lookup(p) != nil {
			return true
		}
	}
	return false
}
