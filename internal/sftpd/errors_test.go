package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/vfs"
)

func TestClientError(t *testing.T) {
	pe := func(err error) error { return &fs.PathError{Op: "open", Path: "/secret/disk/path", Err: err} }
	tests := []struct {
		name string
		err  error
		code error  // want errors.Is(got, code)
		msg  string // exact client message
		text string // scp/checksum text
	}{
		{"not exist", pe(fs.ErrNotExist), sftp.ErrSSHFxNoSuchFile, "no such file", "No such file or directory"},
		{"ENOENT", pe(syscall.ENOENT), sftp.ErrSSHFxNoSuchFile, "no such file", "No such file or directory"},
		{"permission", pe(fs.ErrPermission), sftp.ErrSSHFxPermissionDenied, "permission denied", "Permission denied"},
		{"EACCES wrapped", fmt.Errorf("vfs: x: %w", syscall.EACCES), sftp.ErrSSHFxPermissionDenied, "permission denied", "Permission denied"},
		{"exist", pe(fs.ErrExist), sftp.ErrSSHFxFailure, "file exists", "File exists"},
		{"quota", pe(vfs.ErrQuota), sftp.ErrSSHFxFailure, "quota exceeded", "Disk quota exceeded"},
		{"no space", pe(vfs.ErrNoSpace), sftp.ErrSSHFxFailure, "no space left on device", "No space left on device"},
		{"integrity", pe(fmt.Errorf("%w: chunk 7: bad tag /data/x", vfs.ErrIntegrity)), sftp.ErrSSHFxFailure, "file failed integrity check", "Input/output error"},
		{"not empty", pe(vfs.ErrNotEmpty), sftp.ErrSSHFxFailure, "directory not empty", "Directory not empty"},
		{"invalid name", pe(vfs.ErrInvalidName), sftp.ErrSSHFxFailure, "invalid file name", "Invalid argument"},
		{"is dir", pe(vfs.ErrIsDir), sftp.ErrSSHFxFailure, "is a directory", "Is a directory"},
		{"not dir", pe(vfs.ErrNotDir), sftp.ErrSSHFxFailure, "not a directory", "Not a directory"},
		{"unsupported", pe(vfs.ErrUnsupported), sftp.ErrSSHFxOpUnsupported, "operation unsupported", "Operation not supported"},
		{"too many handles", pe(vfs.ErrTooManyHandles), sftp.ErrSSHFxFailure, "too many open files", "Too many open files"},
		{"file too large", pe(vfs.ErrFileTooLarge), sftp.ErrSSHFxFailure, "file too large", "File too large"},
		{"storage unavailable", pe(vfs.ErrUnavailable), sftp.ErrSSHFxFailure, "storage unavailable, try again later", "Storage unavailable, try again later"},
		{"errors.ErrUnsupported", errors.ErrUnsupported, sftp.ErrSSHFxOpUnsupported, "operation unsupported", "Operation not supported"},
		{"sftp op unsupported", sftp.ErrSSHFxOpUnsupported, sftp.ErrSSHFxOpUnsupported, "operation unsupported", "Operation not supported"},
		{"canceled", context.Canceled, sftp.ErrSSHFxFailure, "operation canceled", "Operation canceled"},
		{"generic with path", errors.New("open /var/lib/securefsd/homes/alice/x: input/output error"), sftp.ErrSSHFxFailure, "failure", "Failure"},
		{"already mapped", clientError(pe(fs.ErrNotExist)), sftp.ErrSSHFxNoSuchFile, "no such file", "No such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clientError(tt.err)
			if !errors.Is(got, tt.code) {
				t.Errorf("clientError(%v) = %v, not %v", tt.err, got, tt.code)
			}
			if got.Error() != tt.msg {
				t.Errorf("message = %q, want %q", got.Error(), tt.msg)
			}
			if strings.Contains(got.Error(), "/") {
				t.Errorf("message %q leaks a path", got.Error())
			}
			if errText(tt.err) != tt.text {
				t.Errorf("errText = %q, want %q", errText(tt.err), tt.text)
			}
			// pkg/sftp's statusFromError must not override the code:
			// os.IsNotExist only for not-exist, no syscall translation.
			if os.IsNotExist(got) != errors.Is(tt.code, sftp.ErrSSHFxNoSuchFile) && tt.code != sftp.ErrSSHFxNoSuchFile {
				t.Errorf("os.IsNotExist(%v) = true for a non-not-exist error", got)
			}
		})
	}
	if clientError(nil) != nil {
		t.Error("clientError(nil) != nil")
	}
	if clientError(io.EOF) != io.EOF {
		t.Error("clientError(io.EOF) must stay io.EOF for SSH_FX_EOF")
	}
}

func TestClientErrorLimits(t *testing.T) {
	if got := clientError(errTooManyHandles); got.Error() != "too many open files" || !errors.Is(got, sftp.ErrSSHFxFailure) {
		t.Errorf("too many handles: %v", got)
	}
	if got := clientError(errBadMessage); !errors.Is(got, sftp.ErrSSHFxBadMessage) {
		t.Errorf("bad message: %v", got)
	}
}

func TestStatVFS(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name             string
		u                vfs.Usage
		total, free      uint64
		files, freeFiles uint64
	}{
		{"disk", vfs.Usage{UsedBytes: 5, Files: 3, DiskTotal: 100 * gib, DiskFree: 40 * gib}, 100 * gib, 40 * gib, 3 + 1<<31, 1 << 31},
		{"quota", vfs.Usage{UsedBytes: gib, Files: 3, QuotaBytes: 10 * gib, QuotaFiles: 100, DiskTotal: 100 * gib, DiskFree: 40 * gib}, 10 * gib, 9 * gib, 100, 97},
		{"quota above free disk", vfs.Usage{UsedBytes: 0, QuotaBytes: 10 * gib, DiskTotal: 100 * gib, DiskFree: 2 * gib}, 10 * gib, 2 * gib, 1 << 31, 1 << 31},
		{"over quota", vfs.Usage{UsedBytes: 11 * gib, Files: 120, QuotaBytes: 10 * gib, QuotaFiles: 100, DiskTotal: 100 * gib, DiskFree: 40 * gib}, 10 * gib, 0, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := statVFS(tt.u)
			if st.TotalSpace() != tt.total || st.FreeSpace() != tt.free || st.Files != tt.files || st.Ffree != tt.freeFiles {
				t.Errorf("statVFS = total %d free %d files %d ffree %d", st.TotalSpace(), st.FreeSpace(), st.Files, st.Ffree)
			}
		})
	}
}
