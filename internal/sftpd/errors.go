package sftpd

import (
	"context"
	"errors"
	"io"
	"io/fs"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/vfs"
)

// statusError is what clients see: an SFTP status code (through Unwrap, which
// pkg/sftp's statusFromError finds with errors.As) and a fixed short message.
// It carries no path and no wrapped cause, so nothing about the disk leaks.
type statusError struct {
	code error  // one of sftp.ErrSSHFx*
	msg  string // sent to SFTP clients as the status message
	text string // POSIX-style text for SCP and the checksum commands
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.code }

// errorMap is the one table from internal errors to what clients see. Order
// matters: the first entry whose target matches (errors.Is) wins, so the
// specific vfs sentinels come before the generic fs ones they may wrap.
var errorMap = []struct {
	target error
	status *statusError
}{
	{vfs.ErrQuota, &statusError{sftp.ErrSSHFxFailure, "quota exceeded", "Disk quota exceeded"}},
	{vfs.ErrNoSpace, &statusError{sftp.ErrSSHFxFailure, "no space left on device", "No space left on device"}},
	{vfs.ErrIntegrity, &statusError{sftp.ErrSSHFxFailure, "file failed integrity check", "Input/output error"}},
	{vfs.ErrNotEmpty, &statusError{sftp.ErrSSHFxFailure, "directory not empty", "Directory not empty"}},
	{vfs.ErrInvalidName, &statusError{sftp.ErrSSHFxFailure, "invalid file name", "Invalid argument"}},
	{vfs.ErrIsDir, &statusError{sftp.ErrSSHFxFailure, "is a directory", "Is a directory"}},
	{vfs.ErrNotDir, &statusError{sftp.ErrSSHFxFailure, "not a directory", "Not a directory"}},
	{vfs.ErrUnsupported, &statusError{sftp.ErrSSHFxOpUnsupported, "operation unsupported", "Operation not supported"}},
	{vfs.ErrTooManyHandles, &statusError{sftp.ErrSSHFxFailure, "too many open files", "Too many open files"}},
	{vfs.ErrFileTooLarge, &statusError{sftp.ErrSSHFxFailure, "file too large", "File too large"}},
	{vfs.ErrUnavailable, &statusError{sftp.ErrSSHFxFailure, "storage unavailable, try again later", "Storage unavailable, try again later"}},
	{errors.ErrUnsupported, &statusError{sftp.ErrSSHFxOpUnsupported, "operation unsupported", "Operation not supported"}},
	{sftp.ErrSSHFxOpUnsupported, &statusError{sftp.ErrSSHFxOpUnsupported, "operation unsupported", "Operation not supported"}},
	{fs.ErrNotExist, &statusError{sftp.ErrSSHFxNoSuchFile, "no such file", "No such file or directory"}},
	{sftp.ErrSSHFxNoSuchFile, &statusError{sftp.ErrSSHFxNoSuchFile, "no such file", "No such file or directory"}},
	{fs.ErrPermission, &statusError{sftp.ErrSSHFxPermissionDenied, "permission denied", "Permission denied"}},
	{sftp.ErrSSHFxPermissionDenied, &statusError{sftp.ErrSSHFxPermissionDenied, "permission denied", "Permission denied"}},
	{fs.ErrExist, &statusError{sftp.ErrSSHFxFailure, "file exists", "File exists"}},
	{errNotRegular, &statusError{sftp.ErrSSHFxFailure, "not a regular file", "not a regular file"}},
	{errTooManyHandles, &statusError{sftp.ErrSSHFxFailure, "too many open files", "Too many open files"}},
	{errBadMessage, &statusError{sftp.ErrSSHFxBadMessage, "bad message", "Bad message"}},
	{context.Canceled, &statusError{sftp.ErrSSHFxFailure, "operation canceled", "Operation canceled"}},
}

var errFailure = &statusError{sftp.ErrSSHFxFailure, "failure", "Failure"}

// errNotRegular: an operation that needs a regular file met something else.
var errNotRegular = errors.New("sftpd: not a regular file")

// clientError maps err to the error handed to pkg/sftp (and so to the
// client). nil stays nil and io.EOF stays io.EOF (pkg/sftp turns it into
// SSH_FX_EOF for reads and directory listings). Everything else becomes a
// *statusError with a fixed message: detail goes to the log, never the wire.
func clientError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return statusFor(err)
}

// statusFor returns the table entry matching err, or the generic failure.
func statusFor(err error) *statusError {
	var se *statusError
	if errors.As(err, &se) {
		return se
	}
	for _, m := range errorMap {
		if errors.Is(err, m.target) {
			return m.status
		}
	}
	return errFailure
}
