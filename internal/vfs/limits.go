package vfs

import (
	"math"

	"golang.org/x/sys/unix"
)

// defaultMaxHandles is half the soft RLIMIT_NOFILE (Go raises it to the
// hard limit at start on Linux), the other half kept as a reserve for
// connections, the admin socket and the user database. Unlimited if the
// limit cannot be read.
func defaultMaxHandles() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > math.MaxInt64 {
		return math.MaxInt64
	}
	return max(int64(rl.Cur/2), 1)
}

// takeHandle counts one more open handle of the home, or fails with
// ErrTooManyHandles at the home's or the store's cap. Each call that
// succeeds is paired with one putHandle.
func (h *home) takeHandle() error {
	s := h.s
	if s.handles.Add(1) > s.maxHandles {
		s.handles.Add(-1)
		s.log.Warn("vfs: open handle limit of the store reached", "home", h.name, "limit", s.maxHandles)
		return ErrTooManyHandles
	}
	if h.handles.Add(1) > s.maxPerHome {
		h.handles.Add(-1)
		s.handles.Add(-1)
		s.log.Debug("vfs: open handle limit of the home reached", "home", h.name, "limit", s.maxPerHome)
		return ErrTooManyHandles
	}
	return nil
}

// putHandle uncounts a handle counted by takeHandle.
func (h *home) putHandle() {
	h.handles.Add(-1)
	h.s.handles.Add(-1)
}
