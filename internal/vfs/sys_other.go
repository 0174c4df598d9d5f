//go:build !linux

package vfs

// Stubs that make the package build on systems other than Linux (see
// sys_linux.go): NewStore refuses with ErrUnsupportedOS, so none of these
// runs.

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"time"
)

const supportedOS = false

var errNoLinux = errors.New("vfs: not on Linux")

func pathFD(*os.Root) int                           { return -1 }
func closeFD(int)                                   {}
func processUmask() fs.FileMode                     { return 0o022 }
func diskSpace(string) (int64, int64, error)        { return 0, 0, errNoLinux }
func (b *backing) startWriteback()                  {}
func idOf(fs.FileInfo) fileKey                      { return fileKey{} }
func futimens(*os.File, time.Time, time.Time) error { return errNoLinux }
func (h *home) reservedTarget(*os.File) bool        { return true }
func (h *home) probe(string) (fs.FileInfo, error)   { return nil, errNoLinux }
func restoreTimes(*os.File, fs.FileInfo)            {}
func defaultMaxHandles() int64                      { return math.MaxInt64 }
func exchange(*os.Root, string, string) error       { return errNoLinux }
func nlink(fs.FileInfo) uint64                      { return 1 }
func (s *Store) syncFS() error                      { return errNoLinux }
func renameBetween(*home, string, *home, string, bool) error {
	return errNoLinux
}
