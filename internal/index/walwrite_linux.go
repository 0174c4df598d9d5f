//go:build linux

package index

import (
	"os"

	"golang.org/x/sys/unix"
)

// walWrite appends the pieces of a log entry (marshalWAL) to f with
// writev(2): one system call, and the long values written from where
// they are. It returns the bytes written. A short write (a disk that
// fills up partway) goes on with the rest, so that the error is the
// kernel's (ENOSPC), as os.File.Write gives it.
func walWrite(f *os.File, pieces [][]byte) (int64, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	pieces = append([][]byte(nil), pieces...) // trimmed below as they go out
	var total int64
	for {
		for len(pieces) > 0 && len(pieces[0]) == 0 {
			pieces = pieces[1:]
		}
		if len(pieces) == 0 {
			return total, nil
		}
		batch := pieces[:min(len(pieces), 1024)] // IOV_MAX
		var n int
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			for {
				n, werr = unix.Writev(int(fd), batch)
				if werr != unix.EINTR {
					return true
				}
			}
		}); err != nil {
			return total, err
		}
		if werr != nil {
			return total, &os.PathError{Op: "write", Path: f.Name(), Err: werr}
		}
		if n <= 0 {
			return total, &os.PathError{Op: "write", Path: f.Name(), Err: unix.EIO}
		}
		total += int64(n)
		for n > 0 {
			if n < len(pieces[0]) {
				pieces[0] = pieces[0][n:]
				break
			}
			n -= len(pieces[0])
			pieces = pieces[1:]
		}
	}
}
