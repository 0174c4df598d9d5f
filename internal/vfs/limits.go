package vfs

import ()

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
