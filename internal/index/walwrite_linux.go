//go:build linux

package index

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// walWrite appends the pieces of a log entry (marshalWAL) to f with
// writev(2): one system call, and the long values written from where
// they are. It returns the bytes written; a short write is an error.
func walWrite(f *os.File, pieces [][]byte) (int64, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for len(pieces) > 0 {
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
		total += int64(max(n, 0))
		if werr != nil {
			return total, &os.PathError{Op: "writev", Path: f.Name(), Err: werr}
		}
		want := 0
		for _, p := range batch {
			want += len(p)
		}
		if n < want {
			return total, io.ErrShortWrite
		}
		pieces = pieces[len(batch):]
	}
	return total, nil
}
