// Package backup copies a snapshot of a data directory (made by the
// server: vfs.Store.Snapshot for the store, the users database's
// transactional copy and the other state files, all of one moment) into a
// backup directory, and restores one into a fresh data directory.
//
// Everything it copies is as the data directory holds it: encrypted. A
// backup is noise without the keyring, which is not in it unless asked
// for, and then only sealed by a passphrase (docs/OPERATIONS.md, key
// escrow).
//
// Layout: DEST/<id>/ is one complete backup (id: UTC time,
// 20261204T031500Z). While it is written it is DEST/<id>.partial/, with a
// manifest of the files done (.manifest: one JSON line per file: path,
// size, modification time, and the snapshot's inode); a copy that stops
// (kill -9, a full disk) is resumed by the next run, which skips what the
// manifest lists. A file whose inode, size and time equal those of the
// newest complete backup's manifest is hard-linked from it (incremental),
// so unchanged files cost no space and no copying.
package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ManifestName is the manifest's name in a backup directory.
const ManifestName = ".manifest"

const partialSuffix = ".partial"

// entry is one manifest line.
type entry struct {
	Path  string    `json:"p"`
	Size  int64     `json:"s"`
	Mtime time.Time `json:"t"`
	Ino   uint64    `json:"i"`
	Mode  uint32    `json:"m"`
}

// same: the two lines describe one unchanged file.
func (e entry) same(o entry) bool {
	return e.Path == o.Path && e.Size == o.Size && e.Mtime.Equal(o.Mtime) && e.Ino == o.Ino && e.Mode == o.Mode
}

// Progress is what Copy reports as it goes.
type Progress struct {
	Files, TotalFiles int
	Bytes, TotalBytes int64
	Linked            int // files hard-linked from the previous backup
	Resumed           int // files a stopped run had copied already
}

// Result is a finished backup.
type Result struct {
	Dir string // DEST/<id>
	Progress
}

// Copy copies the snapshot directory snap into DEST/<id> (id: snap's
// base name) as above. progress, if not nil, is called after each file.
// A backup of that id already complete is an error (ErrExists).
func Copy(ctx context.Context, snap, dest string, progress func(Progress)) (Result, error) {
	id := filepath.Base(snap)
	final := filepath.Join(dest, id)
	part := final + partialSuffix
	if _, err := os.Stat(final); err == nil {
		return Result{}, fmt.Errorf("backup %s: %w", final, fs.ErrExist)
	}
	if err := os.MkdirAll(part, 0o700); err != nil {
		return Result{}, fmt.Errorf("backup: %w", err)
	}
	done, err := readManifest(filepath.Join(part, ManifestName))
	if err != nil {
		return Result{}, err
	}
	prevDir, prev, err := newest(dest, id)
	if err != nil {
		return Result{}, err
	}
	files, err := list(snap)
	if err != nil {
		return Result{}, err
	}
	var p Progress
	p.TotalFiles = len(files)
	for _, f := range files {
		p.TotalBytes += f.Size
	}
	mf, err := os.OpenFile(filepath.Join(part, ManifestName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Result{}, fmt.Errorf("backup: manifest: %w", err)
	}
	defer mf.Close()
	enc := json.NewEncoder(mf)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		dst := filepath.Join(part, filepath.FromSlash(f.Path))
		if d, ok := done[f.Path]; ok && d.same(f) {
			p.Resumed++
		} else {
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return Result{}, fmt.Errorf("backup: %w", err)
			}
			os.Remove(dst) // a copy a stopped run left half done
			if pe, ok := prev[f.Path]; ok && pe.same(f) && os.Link(filepath.Join(prevDir, filepath.FromSlash(f.Path)), dst) == nil {
				p.Linked++
			} else if err := copyFile(filepath.Join(snap, filepath.FromSlash(f.Path)), dst, f); err != nil {
				return Result{}, err
			}
			if err := enc.Encode(f); err != nil {
				return Result{}, fmt.Errorf("backup: manifest: %w", err)
			}
		}
		p.Files++
		p.Bytes += f.Size
		if progress != nil {
			progress(p)
		}
	}
	if err := mf.Sync(); err != nil {
		return Result{}, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := syncTree(part); err != nil {
		return Result{}, err
	}
	if err := os.Rename(part, final); err != nil {
		return Result{}, fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(dest); err != nil {
		return Result{}, err
	}
	return Result{Dir: final, Progress: p}, nil
}

// list walks snap: every regular file, sorted by path.
func list(snap string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(snap, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(snap, p)
		if err != nil {
			return err
		}
		e := entry{Path: filepath.ToSlash(rel), Size: fi.Size(), Mtime: fi.ModTime().UTC(), Mode: uint32(fi.Mode().Perm()), Ino: inode(fi)}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", snap, err)
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// readManifest reads a manifest (none: empty). A last line cut by a crash
// is ignored: that file is copied again.
func readManifest(path string) (map[string]entry, error) {
	out := map[string]entry{}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: manifest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e entry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Path != "" {
			e.Mtime = e.Mtime.UTC()
			out[e.Path] = e
		}
	}
	return out, sc.Err()
}

// newest finds the newest complete backup in dest other than id.
func newest(dest, id string) (string, map[string]entry, error) {
	ents, err := os.ReadDir(dest)
	if err != nil {
		return "", nil, fmt.Errorf("backup: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasSuffix(e.Name(), partialSuffix) && e.Name() != id {
			if _, err := os.Stat(filepath.Join(dest, e.Name(), ManifestName)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		return "", map[string]entry{}, nil
	}
	slices.Sort(names)
	dir := filepath.Join(dest, names[len(names)-1])
	m, err := readManifest(filepath.Join(dir, ManifestName))
	return dir, m, err
}

func copyFile(src, dst string, e entry) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, e.Mtime, e.Mtime)
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("backup: copy %s: %w", e.Path, err)
	}
	return nil
}

// syncTree fsyncs every directory below root (the files were fsynced as
// they were copied), so the rename that completes a backup comes after.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Restore copies the complete backup src (DEST/<id>) into the data
// directory dir, which must not exist or be empty. Files get mode 0600,
// directories 0700, their modification times kept; the manifest stays
// behind.
func Restore(src, dir string) (Progress, error) {
	var p Progress
	if strings.HasSuffix(filepath.Clean(src), partialSuffix) {
		return p, fmt.Errorf("restore: %s is an unfinished backup (run backup again to complete it)", src)
	}
	m, err := readManifest(filepath.Join(src, ManifestName))
	if err != nil {
		return p, err
	}
	if len(m) == 0 {
		return p, fmt.Errorf("restore: %s has no manifest: not a backup", src)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return p, fmt.Errorf("restore: %s is not empty: restore into a new directory", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return p, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, err
	}
	root, err := os.OpenRoot(src)
	if err != nil {
		return p, err
	}
	defer root.Close()
	paths := make([]string, 0, len(m))
	for path := range m {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	p.TotalFiles = len(paths)
	for _, path := range paths {
		e := m[path]
		if !filepath.IsLocal(filepath.FromSlash(path)) {
			return p, fmt.Errorf("restore: manifest names %q, outside the backup", path)
		}
		srcPath := filepath.Join(src, filepath.FromSlash(path))
		// Through an os.Root of the backup: a symlink planted in it does
		// not lead the restore to read files outside it.
		if fi, err := root.Lstat(filepath.FromSlash(path)); err != nil || !fi.Mode().IsRegular() || fi.Size() != e.Size {
			return p, fmt.Errorf("restore: %s: missing, not a regular file, or not the size the manifest says (%d): the backup is damaged", path, e.Size)
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return p, err
		}
		if err := copyFile(srcPath, dst, e); err != nil {
			return p, err
		}
		p.Files++
		p.Bytes += e.Size
	}
	return p, syncTree(dir)
}
