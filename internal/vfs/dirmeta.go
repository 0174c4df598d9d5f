package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
)

// ReadDirMeta lists directory name like ReadDir and returns, keyed by
// entry name, the metadata of the entries that have some: a listing costs
// one directory read plus one sidecar read (cached afterwards), not a path
// walk per entry as Meta would. A subdirectory's metadata lives in its own
// sidecar, which is read only if it exists.
//
// Cached hashes are included only while they are valid for the listed
// entry (its size and mtime match and no handle has it open) and the FS
// may read them (PermDownload or PermUpload); otherwise Hashes is nil and
// Checksums is the way to get them. The Meta values are the caller's own.
//
// If a sidecar cannot be read (ErrIntegrity for a damaged one), the
// listing is still returned with the metadata that could be read, and err
// is a *fs.PathError naming the first failure; a listing failure returns
// no entries.
func (f *FS) ReadDirMeta(name string) ([]fs.FileInfo, map[string]Meta, error) {
	if f.view != nil {
		return f.view.readDirMeta(name)
	}
	const op = "readdirmeta"
	infos, err := f.ReadDir(name)
	if err != nil {
		return nil, nil, err
	}
	rel, err := f.checked(op, name, PermList)
	if err != nil {
		return nil, nil, err
	}
	hashes := f.can(PermDownload) || f.can(PermUpload)
	h := f.h
	h.ns.RLock()
	defer h.ns.RUnlock()
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	out := map[string]Meta{}
	var firstErr error
	fail := func(sub string, err error) {
		if firstErr == nil {
			firstErr = h.pathErr(op, path.Join("/", name, sub), err)
		}
	}
	var files map[string]Meta
	if dm, err := h.loadDir(rel); err != nil {
		fail("", fmt.Errorf("metadata: %w", err))
	} else {
		files = dm.entries
	}
	for _, fi := range infos {
		base := fi.Name()
		switch {
		case fi.IsDir():
			m, err := h.dirOwnMeta(path.Join(rel, base))
			if err != nil {
				fail(base, fmt.Errorf("metadata: %w", err))
				continue
			}
			if !m.empty() {
				m.Hashes = nil // directories have no content hashes
				out[base] = cloneMeta(m)
			}
		case fi.Mode().IsRegular():
			m, ok := files[base]
			if !ok || m.empty() {
				continue
			}
			m = cloneMeta(m)
			if hs := m.Hashes; hs != nil && (!hashes || hs.Size != fi.Size() || !hs.ModTime.Equal(fi.ModTime()) ||
				h.lookup(path.Join(rel, base)) != nil) {
				m.Hashes = nil
			}
			if !m.empty() {
				out[base] = m
			}
		}
	}
	return infos, out, firstErr
}

// dirOwnMeta returns directory rel's own metadata (the "." entry of its
// sidecar): from the cache if loaded, else by reading the sidecar without
// caching it (a listing of many subdirectories must not evict the cache,
// nor prune every one of them). Caller holds h.ns and h.metaMu.
func (h *home) dirOwnMeta(rel string) (Meta, error) {
	if dm := h.metaDirs[rel]; dm != nil {
		return dm.entries["."], nil
	}
	m, err := h.readSidecar(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return Meta{}, nil // vanished meanwhile
	}
	if err != nil {
		return Meta{}, err
	}
	return m["."], nil
}
