package vfs

// Point-in-time snapshots of the store for online backups (issue 22).
//
// Snapshot freezes the store for as long as it takes to hard-link every
// stored file into a directory beside it: no tree can load, every loaded
// tree's namespace lock is held (no open, publish, rename, removal or
// re-wrap), and every open file's write-back cache is flushed and fsynced,
// so what clients saw acknowledged is on disk. A file open for writing is
// copied instead of linked, because its writer keeps writing that inode.
// Uploads not yet published are not in the snapshot (their temporaries
// are not linked): the snapshot has the name's previous version, or none.
//
// After the freeze, writes that would change a linked inode in place
// break the link first (breakLink: copy, fsync, rename over the name), so
// the snapshot keeps the bytes of its moment; a move between trees of a
// linked file copies instead of re-binding (movedFiles). Freezing costs a
// link(2) per file, not a copy of the data.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// SnapshotStats says what a Snapshot took.
type SnapshotStats struct {
	Files, Linked, Copied int
	Bytes                 int64         // stored (ciphertext) bytes
	Frozen                time.Duration // how long the store was frozen
}

// Snapshot makes dst (a new directory on the store's filesystem, outside
// the store) a point-in-time copy of the store directory, by hard links
// (see above). during, if not nil, runs while the store is frozen (the
// caller copies the users database and other state there, so that all of
// it is of one moment); its error aborts the snapshot.
func (s *Store) Snapshot(ctx context.Context, dst string, during func() error) (SnapshotStats, error) {
	var st SnapshotStats
	if err := os.Mkdir(dst, 0o700); err != nil {
		return st, fmt.Errorf("vfs: snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return st, fmt.Errorf("vfs: snapshot: %w", fs.ErrClosed)
	}
	start := time.Now()
	homes := make([]*home, 0, len(s.homes))
	for _, h := range s.homes {
		homes = append(homes, h)
	}
	slices.SortFunc(homes, func(a, b *home) int { return cmpString(a.name, b.name) })
	for _, h := range homes {
		h.ns.Lock()
	}
	defer func() {
		for _, h := range homes {
			h.ns.Unlock()
		}
	}()
	// Inodes a writer holds open: copied, not linked, with the node held
	// until the copy is done (a write-back cache filling up would write
	// chunks to the file while it is copied).
	copyIDs := map[fileKey]bool{}
	var held []*node
	defer func() {
		for _, n := range held {
			n.mu.Unlock()
		}
	}()
	for _, h := range homes {
		hs, err := h.flushOpen(copyIDs)
		held = append(held, hs...)
		if err != nil {
			return st, fmt.Errorf("vfs: snapshot: flush open files of %s: %w", h.name, err)
		}
	}
	var err error
	if s.v2 != nil {
		// Published blobs never change (a key rotation breaks a link
		// before it rewrites a header): nothing needs holding or copying.
		for _, n := range held {
			n.mu.Unlock()
		}
		held = nil
		err = s.v2.snapshot(ctx, dst, &st)
	} else {
		err = s.linkTree(ctx, ".", dst, copyIDs, &st)
	}
	if err == nil && during != nil {
		err = during()
	}
	st.Frozen = time.Since(start)
	if err != nil {
		return st, fmt.Errorf("vfs: snapshot: %w", err)
	}
	s.log.Info("vfs: snapshot taken", "files", st.Files, "linked", st.Linked, "copied", st.Copied, "bytes", st.Bytes, "frozen", st.Frozen)
	return st, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// flushOpen writes every open file's cache through and adds the inodes
// open for writing to writers, fsyncing them and returning them still
// locked (node.mu) for the caller to release after copying them. Caller
// holds h.ns exclusively.
func (h *home) flushOpen(writers map[fileKey]bool) (held []*node, err error) {
	h.mu.Lock()
	var ns []*node
	var writing []bool
	seen := map[*node]bool{} // a node under two names (a planted hard link) once
	for _, n := range h.nodes {
		if n.tmp == "" && !seen[n] { // a replacement not yet published is not in the snapshot
			seen[n] = true
			ns = append(ns, n)
			writing = append(writing, n.writers > 0)
		}
	}
	h.mu.Unlock()
	for i, n := range ns {
		n.mu.Lock()
		err := n.ef.Flush()
		if err == nil && writing[i] {
			if err = h.s.fsync(n.back.f); err == nil {
				writers[n.id] = true
				held = append(held, n)
				continue
			}
		}
		n.mu.Unlock()
		if err != nil {
			return held, err
		}
	}
	return held, nil
}

// linkTree links (or copies) every regular file below rel of the store
// into dst, making the directories, and skips the store's temporaries and
// move journals.
func (s *Store) linkTree(ctx context.Context, rel, dst string, copyIDs map[fileKey]bool, st *SnapshotStats) error {
	ents, err := fs.ReadDir(s.root.FS(), rel)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		if name == tmpDirName || name == movesDir {
			continue
		}
		r, d := path.Join(rel, name), filepath.Join(dst, name)
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := s.linkTree(ctx, r, d, copyIDs, st); err != nil {
				return err
			}
			os.Chtimes(d, fi.ModTime(), fi.ModTime())
		case fi.Mode().IsRegular():
			st.Files++
			st.Bytes += fi.Size()
			if !copyIDs[idOf(fi)] {
				if err := os.Link(filepath.Join(s.dir, filepath.FromSlash(r)), d); err == nil {
					st.Linked++
					continue
				}
			}
			if err := s.copyStored(r, d, fi); err != nil {
				return err
			}
			st.Copied++
		}
	}
	return nil
}

// copyStored copies the stored file rel of the store to the new file dst
// with its modification time.
func (s *Store) copyStored(rel, dst string, fi fs.FileInfo) error {
	in, err := s.root.Open(rel)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, fi.ModTime(), fi.ModTime())
	}
	return err
}

// breakLink gives the stored file rel an inode of its own when a snapshot
// shares its inode (link count above one): the content is copied to a
// temporary of the tree, fsynced and renamed over rel, with rel's mode and
// modification time. It reports whether it did. Caller holds h.ns
// exclusively, and no node is open on rel for writing.
func (h *home) breakLink(rel string) (bool, error) {
	fi, err := h.root.Lstat(rel)
	if err != nil || !fi.Mode().IsRegular() || nlink(fi) < 2 {
		return false, nil
	}
	in, err := h.root.Open(rel)
	if err != nil {
		return false, err
	}
	defer in.Close()
	tmp := tmpName()
	out, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return false, err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = h.s.fsync(out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = h.root.Chtimes(tmp, fi.ModTime(), fi.ModTime())
	}
	if err == nil {
		err = h.root.Rename(tmp, rel)
	}
	if err != nil {
		h.root.Remove(tmp)
		return false, fmt.Errorf("break the snapshot's link of /%s: %w", rel, err)
	}
	return true, nil
}

// ownInode gives an in-place node an inode of its own before a writer
// uses it, if a snapshot shares its inode (breakLink): the node's
// descriptor moves to the copy, which has the same bytes, so its cache
// stays valid. Caller holds h.ns exclusively.
func (n *node) ownInode() error {
	h := n.h
	h.mu.Lock()
	key, tmp := n.key, n.tmp
	h.mu.Unlock()
	if key == "" || tmp != "" || h.root == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := n.back.f.Stat()
	if err != nil || nlink(st) < 2 {
		return err
	}
	if err := n.ef.Flush(); err != nil {
		return err
	}
	if broke, err := h.breakLink(key); err != nil || !broke {
		return err
	}
	f, err := h.root.OpenFile(key, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	st, err = f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	h.mu.Lock()
	if h.byID[n.id] == n {
		delete(h.byID, n.id)
	}
	n.id = idOf(st)
	h.byID[n.id] = n
	h.mu.Unlock()
	old := n.back.f
	n.back.f, n.back.rw = f, true
	return old.Close()
}
