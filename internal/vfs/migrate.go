package vfs

// Migration of a version 1 store to storage version 2 (docs/STORAGE.md
// section 9, `securefsd migrate`).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"time"
)

// MigrateProgress is what Migrate reports after each file: counts only,
// never a name (the log of a migration must not name what the migration
// hides).
type MigrateProgress struct {
	Trees, Files, Skipped int
	Bytes                 int64
}

// ErrMigrateMismatch: a file read back from the version 2 store differs
// from what was read from version 1.
var ErrMigrateMismatch = errors.New("vfs: migrate: the copy differs from the original")

// Migrate copies every tree of the version 1 store src (homes and shared
// folders) into the version 2 store dst: directories, files, client modes
// and modification times, WebDAV dead properties. Each file is streamed,
// hashed as it is read, published in dst under its name only once whole
// (an upload), then read back and compared. It can be run again after an
// interruption: a file already in dst with the size and time of the
// original is not copied again, one that is partly there is replaced.
// progress (may be nil) is called after each file.
func Migrate(ctx context.Context, src, dst *Store, progress func(MigrateProgress)) (MigrateProgress, error) {
	var p MigrateProgress
	if src.v2 != nil || dst.v2 == nil {
		return p, errors.New("vfs: migrate: from a version 1 store to a version 2 store")
	}
	homes, err := src.homeNames()
	if err != nil {
		return p, fmt.Errorf("vfs: migrate: list homes: %w", err)
	}
	folders, err := src.FolderNames()
	if err != nil {
		return p, fmt.Errorf("vfs: migrate: list folders: %w", err)
	}
	type tree struct {
		name   string
		folder bool
	}
	var trees []tree
	for _, h := range homes {
		trees = append(trees, tree{h, false})
	}
	for _, f := range folders {
		trees = append(trees, tree{f, true})
	}
	buf := make([]byte, 1<<20)
	for _, tr := range trees {
		var from, to *FS
		if tr.folder {
			from, err = src.Folder(tr.name, HomeOptions{Perm: PermAll})
			if err == nil {
				to, err = dst.Folder(tr.name, HomeOptions{Perm: PermAll})
			}
		} else {
			from, err = src.Home(tr.name, HomeOptions{Perm: PermAll})
			if err == nil {
				to, err = dst.Home(tr.name, HomeOptions{Perm: PermAll})
			}
		}
		if err != nil {
			return p, fmt.Errorf("vfs: migrate: open tree %d: %w", p.Trees+1, err)
		}
		if err := migrateTree(ctx, from, to, buf, &p, progress); err != nil {
			return p, fmt.Errorf("vfs: migrate: tree %d: %w", p.Trees+1, err)
		}
		p.Trees++
	}
	return p, nil
}

// migrateTree copies one tree, depth first; directories' times are set
// after their contents.
func migrateTree(ctx context.Context, from, to *FS, buf []byte, p *MigrateProgress, progress func(MigrateProgress)) error {
	var walk func(dir string) error
	walk = func(dir string) error {
		fis, err := from.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, fi := range fis {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := path.Join(dir, fi.Name())
			switch {
			case fi.IsDir():
				if err := to.MkdirAll(name, 0o700); err != nil {
					return err
				}
				if err := walk(name); err != nil {
					return err
				}
				if err := to.Chmod(name, fi.Mode().Perm()); err != nil {
					return err
				}
				if err := migrateMeta(from, to, name); err != nil {
					return err
				}
				if err := to.Chtimes(name, time.Time{}, fi.ModTime()); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				skipped, err := migrateFile(from, to, name, fi, buf)
				if err != nil {
					return err
				}
				p.Files++
				if skipped {
					p.Skipped++
				} else {
					p.Bytes += fi.Size()
				}
				if progress != nil {
					progress(*p)
				}
			}
			// Anything else (a symlink planted on disk) is not a client
			// entry: version 1 refuses to serve it, version 2 has none.
		}
		return nil
	}
	if err := walk("/"); err != nil {
		return err
	}
	root, err := from.Stat("/")
	if err != nil {
		return err
	}
	if err := to.Chmod("/", root.Mode().Perm()); err != nil {
		return err
	}
	if err := migrateMeta(from, to, "/"); err != nil {
		return err
	}
	return to.Chtimes("/", time.Time{}, root.ModTime())
}

// migrateFile copies file name unless dst has it already (same size and
// time), then compares the copy with what it read.
func migrateFile(from, to *FS, name string, fi fs.FileInfo, buf []byte) (skipped bool, err error) {
	if have, err := to.Stat(name); err == nil && have.Mode().IsRegular() && have.Size() == fi.Size() && have.ModTime().Equal(fi.ModTime()) {
		return true, nil
	}
	r, err := from.Open(name)
	if err != nil {
		return false, err
	}
	defer r.Close()
	w, err := to.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return false, err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(w, h), readerOnly{r}, buf)
	if err != nil {
		w.Abort()
		return false, err
	}
	if err := w.Close(); err != nil {
		return false, err
	}
	want := h.Sum(nil)
	if err := to.Chmod(name, fi.Mode().Perm()); err != nil {
		return false, err
	}
	if err := migrateMeta(from, to, name); err != nil {
		return false, err
	}
	if err := to.Chtimes(name, time.Time{}, fi.ModTime()); err != nil {
		return false, err
	}
	back, err := to.Open(name)
	if err != nil {
		return false, err
	}
	defer back.Close()
	h.Reset()
	if _, err := io.CopyBuffer(h, readerOnly{back}, buf); err != nil {
		return false, err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return false, &fs.PathError{Op: "migrate", Path: name, Err: ErrMigrateMismatch}
	}
	return false, nil
}

// migrateMeta copies an entry's WebDAV dead properties (cached hashes are
// not copied: they are computed again when asked for).
func migrateMeta(from, to *FS, name string) error {
	m, err := from.Meta(name)
	if err != nil || len(m.Props) == 0 {
		return err
	}
	return to.UpdateMeta(name, func(dm *Meta) error {
		dm.Props = maps.Clone(m.Props)
		return nil
	})
}

// readerOnly hides a File's WriterTo/ReaderFrom so io.Copy uses buf.
type readerOnly struct{ io.Reader }
