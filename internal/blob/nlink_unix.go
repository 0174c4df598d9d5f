//go:build unix

package blob

import (
	"io/fs"
	"syscall"
)

// nlink is the link count of a file (1 where unknown).
func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
