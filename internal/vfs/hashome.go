package vfs

import (
	"errors"
	"fmt"
	"io/fs"
)

// HasHome reports whether the store holds an entry named home, without
// creating it (Home does). The admin layer asks before giving a new account
// a name whose home a deleted account left behind.
func (s *Store) HasHome(home string) (bool, error) {
	if !validHome(home) {
		return false, fmt.Errorf("vfs: home %q: %w", home, ErrInvalidName)
	}
	if s.v2 != nil {
		return s.v2.fs.HasTree(home)
	}
	_, err := s.root.Lstat(home)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("vfs: home %q: %w", home, err)
	}
	return true, nil
}
