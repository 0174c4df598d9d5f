package webui

import (
	"errors"
	"io/fs"
	"net/http"

	"github.com/securefsd/securefsd/internal/vfs"
)

// httpError maps an error from vfs to a status and a fixed, friendly
// message. The message never includes err's text: it may name store paths.
// Order matters: the specific vfs sentinels come before the fs ones they
// may also wrap.
func httpError(err error) (int, string) {
	switch {
	case errors.Is(err, vfs.ErrQuota):
		return http.StatusInsufficientStorage, "Your storage quota is exceeded: delete some files and try again."
	case errors.Is(err, vfs.ErrFileTooLarge):
		return http.StatusRequestEntityTooLarge, "The file is larger than this server allows."
	case errors.Is(err, vfs.ErrTooManyHandles):
		return http.StatusServiceUnavailable, "Too many files are open. Please try again later."
	case errors.Is(err, vfs.ErrUnavailable):
		return http.StatusServiceUnavailable, "The storage is unavailable. Please try again later."
	case errors.Is(err, vfs.ErrNoSpace):
		return http.StatusInsufficientStorage, "The server's disk is full. Please try again later."
	case errors.Is(err, vfs.ErrNotEmpty):
		return http.StatusConflict, "The folder is not empty."
	case errors.Is(err, vfs.ErrInvalidName):
		return http.StatusBadRequest, "That name is not allowed."
	case errors.Is(err, vfs.ErrIsDir):
		return http.StatusConflict, "That is a folder."
	case errors.Is(err, vfs.ErrNotDir):
		return http.StatusConflict, "That is not a folder."
	case errors.Is(err, vfs.ErrIntegrity):
		return http.StatusInternalServerError, "The stored file is damaged and cannot be read."
	case errors.Is(err, vfs.ErrUnsupported):
		return http.StatusNotImplemented, "That operation is not supported."
	case errors.Is(err, fs.ErrExist):
		return http.StatusConflict, "A file or folder with that name already exists."
	case errors.Is(err, fs.ErrPermission):
		return http.StatusForbidden, "You do not have permission to do that."
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound, "The file or folder was not found."
	}
	return http.StatusInternalServerError, "Something went wrong on the server. Please try again."
}
