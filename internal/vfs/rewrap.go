package vfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"

	"github.com/securefsd/securefsd/internal/envelope"
)

// storeFile is one regular file of a home, found by a sweep.
type storeFile struct {
	h   *home
	rel string // disk name inside the home, reserved names included
}

// sweep lists every regular file of every home (or of one home), the
// store's own files (metadata sidecars, temporaries) included.
func (s *Store) sweep(ctx context.Context, only string) ([]storeFile, error) {
	var names []string
	if only != "" {
		if !validHome(only) {
			return nil, fmt.Errorf("vfs: home %q: %w", only, ErrInvalidName)
		}
		if _, err := s.root.Lstat(only); err != nil {
			return nil, fmt.Errorf("vfs: home %q: %w", only, fs.ErrNotExist)
		}
		names = []string{only}
	} else {
		var err error
		if names, err = s.homeNames(); err != nil {
			return nil, fmt.Errorf("vfs: list homes: %w", err)
		}
	}
	var out []storeFile
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := s.home(name)
		if err != nil {
			return nil, err
		}
		h.ns.RLock()
		err = h.walk(".", true, func(rel string, fi fs.FileInfo) error {
			if fi.Mode().IsRegular() {
				out = append(out, storeFile{h, rel})
			}
			return ctx.Err()
		})
		h.ns.RUnlock()
		if err != nil {
			return nil, fmt.Errorf("vfs: walk home %q: %w", name, err)
		}
	}
	return out, nil
}

// Rewrap re-wraps the data key of every file of every home (metadata
// sidecars and temporaries included) under the keyring's active KEK.
// Files already on the active KEK are skipped, so an interrupted run is
// resumed by running it again. It is safe while serving: a file open in
// the VFS is re-wrapped under its shared state's lock, any other file while
// no handle can open it. Files created meanwhile get the active KEK (set
// it with SetKeyring first); a file that moved during a pass (an upload
// published, a client rename) is caught by another pass, run while the
// previous one found files gone. progress, if not nil, is called after
// each file.
func (s *Store) Rewrap(ctx context.Context, progress func(done, total int, name string)) error {
	const maxPasses = 5
	done, total := 0, 0
	var errs []error
	for pass := 0; pass < maxPasses; pass++ {
		files, err := s.sweep(ctx, "")
		if err != nil {
			return err
		}
		total += len(files)
		moved := false
		for _, sf := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := sf.h.rewrap(sf.rel)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				moved = true
			case err != nil:
				sf.h.logger().Error("vfs: rewrap failed", "home", sf.h.name, "path", "/"+sf.rel, "err", err)
				errs = append(errs, fmt.Errorf("vfs: rewrap %s/%s: %w", sf.h.name, sf.rel, err))
			}
			done++
			if progress != nil {
				progress(done, total, sf.h.name+"/"+sf.rel)
			}
		}
		if !moved || len(errs) > 0 {
			break
		}
	}
	return errors.Join(errs...)
}

// rewrap re-wraps one file.
func (h *home) rewrap(rel string) error {
	kr := h.kr()
	// Holding ns (shared) keeps every open, publish, rename and last close
	// of this home out, so the file cannot be opened or moved meanwhile.
	h.ns.RLock()
	defer h.ns.RUnlock()
	if path.Base(rel) == metaFileName || parentOf(rel) == tmpDirName {
		h.mu.Lock()
		n := h.tmpNodes[rel]
		h.mu.Unlock()
		if n != nil {
			return n.rewrap(kr)
		}
		h.metaMu.Lock()
		defer h.metaMu.Unlock()
		return h.rewrapPath(rel, kr)
	}
	if n := h.lookup(rel); n != nil {
		h.mu.Lock()
		inPlace := n.tmp == ""
		h.mu.Unlock()
		if inPlace {
			return n.rewrap(kr)
		}
	}
	return h.rewrapPath(rel, kr)
}

// rewrapPath re-wraps a file nobody has open, keeping its times and mode.
func (h *home) rewrapPath(rel string, kr *envelope.Keyring) error {
	fi, err := h.root.Lstat(rel)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	if ids, err := readKeyIDs(h.root, rel); err == nil && len(ids) == 1 && ids[0] == kr.Active() {
		return nil
	}
	f, err := h.root.OpenFile(rel, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrPermission) {
		// A client made it read-only: lend the owner write access.
		if cerr := h.root.Chmod(rel, fi.Mode().Perm()|0o200); cerr == nil {
			defer h.root.Chmod(rel, fi.Mode().Perm())
			f, err = h.root.OpenFile(rel, os.O_RDWR|syscall.O_NONBLOCK, 0)
		}
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	changed, err := envelope.Rewrap(f, st.Size(), kr, envelope.Options{Binding: h.binding()})
	if changed {
		if serr := f.Sync(); err == nil {
			err = serr
		}
		restoreTimes(f, st)
	}
	return err
}

func readKeyIDs(root *os.Root, rel string) ([]uint32, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return envelope.KeyIDs(f)
}

// restoreTimes puts back the access and modification times of st.
func restoreTimes(f *os.File, st fs.FileInfo) {
	atime := st.ModTime()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		atime = timespecTime(sys.Atim)
	}
	futimens(f, atime, st.ModTime())
}

// rewrap re-wraps an open node's file under its lock.
func (n *node) rewrap(kr *envelope.Keyring) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.back.rw {
		return fmt.Errorf("open read-only, retry later: %w", fs.ErrPermission)
	}
	if err := n.ef.Flush(); err != nil {
		return err
	}
	st, err := n.back.f.Stat()
	if err != nil {
		return err
	}
	changed, err := envelope.Rewrap(n.back.f, st.Size(), kr, envelope.Options{Binding: n.h.binding()})
	if changed {
		restoreTimes(n.back.f, st)
		if n.times != nil {
			futimens(n.back.f, n.times[0], n.times[1])
		}
	}
	return err
}

// Verify authenticates every file of every home (or of home, if not empty),
// metadata sidecars included, and calls report (if not nil) for each
// damaged one with a client-style path "home/a/b". It returns how many
// files it checked.
func (s *Store) Verify(ctx context.Context, home string, report func(path string, err error)) (int, error) {
	files, err := s.sweep(ctx, home)
	if err != nil {
		return 0, err
	}
	checked := 0
	for _, sf := range files {
		if err := ctx.Err(); err != nil {
			return checked, err
		}
		if parentOf(sf.rel) == tmpDirName {
			continue // in-flight uploads
		}
		err := sf.h.verify(sf.rel)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		checked++
		if err != nil {
			sf.h.logger().Error("vfs: integrity failure", "home", sf.h.name, "path", "/"+sf.rel, "integrity", true, "err", err)
			if report != nil {
				report(sf.h.name+"/"+sf.rel, err)
			}
		}
	}
	return checked, nil
}

// verify authenticates one file; a file open for writing is flushed and
// checked under its lock so in-flight writes do not look like damage.
func (h *home) verify(rel string) error {
	kr := h.kr()
	h.ns.RLock()
	n := h.lookup(rel)
	if n != nil {
		h.mu.Lock()
		inPlace := n.tmp == ""
		h.mu.Unlock()
		if inPlace {
			defer h.ns.RUnlock()
			n.mu.Lock()
			defer n.mu.Unlock()
			if err := n.ef.Flush(); err != nil {
				return err
			}
			st, err := n.back.f.Stat()
			if err != nil {
				return err
			}
			return envelope.Verify(n.back, st.Size(), kr, envelope.Options{Binding: h.binding()})
		}
	}
	h.ns.RUnlock()
	check := func() error {
		f, err := h.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		return envelope.Verify(f, st.Size(), kr, envelope.Options{Binding: h.binding()})
	}
	if err := check(); err == nil || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Confirm with the home's namespace held, in case a writer opened the
	// file and changed it under the first check.
	h.ns.Lock()
	defer h.ns.Unlock()
	if n := h.lookup(rel); n != nil {
		n.mu.Lock()
		err := n.ef.Flush()
		n.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return check()
}
