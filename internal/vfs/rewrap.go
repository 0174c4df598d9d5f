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
// store's own files (metadata sidecars, temporaries) included. A home or
// directory that cannot be read does not stop it: it goes on with the
// rest and returns those failures as skipped (client-style paths), for
// the caller to report at the end.
func (s *Store) sweep(ctx context.Context, only string) (files []storeFile, skipped []skippedEntry, err error) {
	var names []string
	if only != "" {
		if !validHome(only) {
			return nil, nil, fmt.Errorf("vfs: home %q: %w", only, ErrInvalidName)
		}
		if _, err := s.root.Lstat(only); err != nil {
			return nil, nil, fmt.Errorf("vfs: home %q: %w", only, fs.ErrNotExist)
		}
		names = []string{only}
	} else {
		if names, err = s.homeNames(); err != nil {
			return nil, nil, fmt.Errorf("vfs: list homes: %w", err)
		}
	}
	trees := make([]func() (*home, error), 0, len(names))
	for _, name := range names {
		trees = append(trees, func() (*home, error) { return s.home(name) })
	}
	if only == "" {
		// Shared folders are trees of their own (their own binding).
		fnames, err := s.FolderNames()
		if err != nil {
			return nil, nil, fmt.Errorf("vfs: list folders: %w", err)
		}
		for _, fn := range fnames {
			names = append(names, foldersDir+"/"+fn)
			trees = append(trees, func() (*home, error) { return s.folder(fn) })
		}
	}
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		h, err := trees[i]()
		if err != nil {
			s.log.Error("vfs: sweep cannot open a home", "home", name, "err", err)
			skipped = append(skipped, skippedEntry{name, err})
			continue
		}
		h.ns.RLock()
		err = h.walkSkip(".", true, func(rel string, fi fs.FileInfo) error {
			if fi.Mode().IsRegular() {
				files = append(files, storeFile{h, rel})
			}
			return ctx.Err()
		}, func(rel string, err error) {
			s.log.Error("vfs: sweep cannot read an entry", "home", name, "path", "/"+rel, "err", err)
			skipped = append(skipped, skippedEntry{name + "/" + rel, err})
		})
		h.ns.RUnlock()
		if err != nil {
			return nil, nil, fmt.Errorf("vfs: walk home %q: %w", name, err)
		}
	}
	return files, skipped, nil
}

// skippedEntry is an entry a sweep could not read: its client-style path
// "home/a/b" and why.
type skippedEntry struct {
	path string
	err  error
}

func (e skippedEntry) error() error { return fmt.Errorf("%s: %w", e.path, e.err) }

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
	if s.v2 != nil {
		return s.rewrapV2(ctx, progress)
	}
	const maxPasses = 5
	done, total := 0, 0
	var errs []error
	for pass := 0; pass < maxPasses; pass++ {
		files, skipped, err := s.sweep(ctx, "")
		if err != nil {
			return err
		}
		for _, e := range skipped {
			errs = append(errs, e.error())
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
				errs = append(errs, fmt.Errorf("%s/%s: %w", sf.h.name, sf.rel, err))
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
	if len(errs) > 0 {
		return &SweepError{Op: "rewrap", Errs: errs}
	}
	return nil
}

// ErrSweepIncomplete: a sweep (Rewrap, Verify, KeyIDsInUse) went past
// files or directories it could not handle. errors.As gives the
// *SweepError with each failure.
var ErrSweepIncomplete = errors.New("vfs: sweep incomplete")

// SweepError lists what a sweep could not handle; the sweep went on with
// everything else. It matches ErrSweepIncomplete.
type SweepError struct {
	Op   string
	Errs []error // one per failed entry, naming it as "home/a/b"
}

func (e *SweepError) Error() string {
	msg := fmt.Sprintf("vfs: %s: %d entries failed", e.Op, len(e.Errs))
	for i, err := range e.Errs {
		if i == 10 {
			msg += fmt.Sprintf("; and %d more (see the log)", len(e.Errs)-i)
			break
		}
		msg += "; " + err.Error()
	}
	return msg
}

func (e *SweepError) Is(target error) bool { return target == ErrSweepIncomplete }

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
	// Client modes never take the owner's write access (modes.go).
	f, st, err := h.openStored(rel, os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	changed, err := envelope.Rewrap(f, st.Size(), kr, envelope.Options{Binding: h.binding()})
	if changed {
		if serr := f.Sync(); err == nil {
			err = serr
		}
		restoreMode(f, st)
		restoreTimes(f, st)
	}
	return err
}

// restoreMode puts back st's mode after a write: a non-root writer's
// write clears setuid (and setgid with group execute), which may hold a
// client's mode (modes.go).
func restoreMode(f *os.File, st fs.FileInfo) {
	const kept = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	if now, err := f.Stat(); err == nil && now.Mode()&kept != st.Mode()&kept {
		f.Chmod(st.Mode() & kept)
	}
}

func readKeyIDs(root *os.Root, rel string) ([]uint32, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return envelope.KeyIDs(f)
}

// rewrap re-wraps an open node's file under its lock.
func (n *node) rewrap(kr *envelope.Keyring) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.back.rw {
		return fmt.Errorf("open read-only, retry later: %w", fs.ErrPermission)
	}
	f, ok := n.back.f.(*os.File)
	if !ok {
		return errNotOnV2
	}
	if err := n.ef.Flush(); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	changed, err := envelope.Rewrap(f, st.Size(), kr, envelope.Options{Binding: n.h.binding()})
	if changed {
		restoreMode(f, st)
		restoreTimes(f, st)
		if n.times != nil {
			futimens(f, n.times[0], n.times[1])
		}
	}
	return err
}

// Verify authenticates every file of every home (or of home, if not empty),
// metadata sidecars included, and calls report (if not nil) for each
// damaged one with a client-style path "home/a/b". It returns how many
// files it checked.
func (s *Store) Verify(ctx context.Context, home string, report func(path string, err error)) (int, error) {
	if s.v2 != nil {
		return s.verifyV2(ctx, home, report)
	}
	files, skipped, err := s.sweep(ctx, home)
	if err != nil {
		return 0, err
	}
	checked := 0
	if report != nil {
		// Entries the sweep could not even list: reported like damage,
		// so the run fails (the sweep went on with the rest).
		for _, e := range skipped {
			report(e.path, e.err)
		}
	}
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
		f, st, err := h.openStored(rel, os.O_RDONLY)
		if err != nil {
			return err
		}
		defer f.Close()
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

// openStored opens the disk file of rel for a sweep (flag: os.O_RDONLY or
// os.O_RDWR; O_NONBLOCK so a FIFO planted in the store cannot block the
// sweep) and returns it with its fstat. The caller closes f.
func (h *home) openStored(rel string, flag int) (f *os.File, st fs.FileInfo, err error) {
	f, err = h.root.OpenFile(rel, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	if st, err = f.Stat(); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}
