//go:build !linux

package index

import (
	"bytes"
	"os"
)

// walWrite appends the pieces of a log entry (marshalWAL) to f in one
// write.
func walWrite(f *os.File, pieces [][]byte) (int64, error) {
	n, err := f.Write(bytes.Join(pieces, nil))
	return int64(n), err
}
