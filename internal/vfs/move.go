package vfs

// Moves between trees (a home and a shared folder, two folders) by
// re-binding: the entry is renamed on disk from one tree into the other
// and the header of every file it holds is rewritten for the target's
// binding (envelope.Rebind, docs/FORMAT.md 8.4). The content is never read
// or re-encrypted, so a move costs one header write per file, whatever the
// sizes.
//
// Crash safety comes from a move journal written before the rename
// (DATA-DIR/store/.securefsd-moves/): the two trees, the names, the moved
// entry's inode, its metadata entry and the old header of every file. A
// crash after the rename leaves files under the target bound to the
// source; NewStore finishes every journal it finds (rebinds what is left,
// puts back a header a torn write damaged, moves the metadata entry)
// before it serves. A crash before the rename leaves the source as it was
// and the journal is dropped.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"

	"github.com/securefsd/securefsd/internal/envelope"
)

// movesDir is the store's directory of move journals (a reserved name:
// never a tree).
const movesDir = ".securefsd-moves"

// journalBinding binds move journals (docs/FORMAT.md 5.5): a journal is
// no file of any tree.
const journalBinding = "securefsd move journal"

// journalVersion is the "v" of the journals this version writes.
const journalVersion = 1

// moveJournal is one move in progress (see the package comment above).
type moveJournal struct {
	V    int         `json:"v"`
	Src  journalTree `json:"src"`
	Dst  journalTree `json:"dst"`
	From string      `json:"from"` // cleaned name in Src
	To   string      `json:"to"`   // cleaned name in Dst
	Dir  bool        `json:"dir"`
	// Dev and Ino identify the moved entry: it is at To once renamed.
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
	// Meta is a moved file's metadata entry (a directory's travels in its
	// own sidecar).
	Meta *Meta `json:"meta,omitempty"`
	// Headers are the old headers of every file moved, by name relative
	// to the moved entry ("." for a moved file).
	Headers map[string][]byte `json:"headers"`

	name string // the journal's file name in movesDir
}

type journalTree struct {
	Name   string `json:"name"`
	Bind   string `json:"bind"`
	Folder bool   `json:"folder"`
}

func treeOf(h *home) journalTree { return journalTree{h.name, h.bind, h.folder} }

// errMoveByCopy: the entry cannot be moved by re-binding (an open file in
// it, a hard link, another filesystem); the caller copies instead.
var errMoveByCopy = errors.New("vfs: move by copy")

// lockTrees takes the namespace locks of two trees in one global order
// (by name), so two moves in opposite directions cannot deadlock.
func lockTrees(a, b *home) (unlock func()) {
	if b.name < a.name {
		a, b = b, a
	}
	a.ns.Lock()
	b.ns.Lock()
	return func() { b.ns.Unlock(); a.ns.Unlock() }
}

// movedFile is a regular file of a move, by name relative to the moved
// entry.
type movedFile struct {
	rel      string
	reserved bool // the store's own (a metadata sidecar)
	size     int64
}

// rebindMove moves src.name of one tree to dst.name of another by
// re-binding (see the package comment above). It returns errMoveByCopy,
// having changed nothing, when the move must be done by copying; other
// errors are the client's. The caller has checked the rights for the
// move; overwrite: an existing target file may be replaced.
func rebindMove(src, dst route, oldname, newname string, overwrite bool) error {
	const op = "rename"
	sh, dh := src.fs.h, dst.fs.h
	ro, err := cleanName(op, src.name)
	if err != nil {
		return clientPath(err, oldname)
	}
	rn, err := cleanName(op, dst.name)
	if err != nil {
		return clientPath(err, newname)
	}
	unlock := lockTrees(sh, dh)
	defer unlock()

	ofi, err := sh.linkFree(ro, true)
	if err != nil {
		return sh.pathErr(op, oldname, err)
	}
	if ofi == nil {
		return &fs.PathError{Op: op, Path: oldname, Err: fs.ErrNotExist}
	}
	tfi, err := dh.linkFree(rn, true)
	if err != nil {
		return dh.pathErr(op, newname, err)
	}
	if err := dh.parentDir(rn); err != nil {
		return dh.pathErr(op, newname, err)
	}
	if len(sh.nodesUnder(ro)) > 0 || dh.lookup(rn) != nil {
		return errMoveByCopy // open files keep their tree's state: copy
	}
	var credit int64
	replaced := int64(0)
	if tfi != nil {
		switch {
		case ofi.IsDir() || !overwrite:
			return &fs.PathError{Op: op, Path: newname, Err: fs.ErrExist}
		case tfi.IsDir():
			return &fs.PathError{Op: op, Path: newname, Err: ErrIsDir}
		case !tfi.Mode().IsRegular():
			return &fs.PathError{Op: op, Path: newname, Err: fs.ErrPermission}
		case !dst.fs.can(PermOverwrite):
			return dst.fs.denied(op, newname)
		}
		credit, replaced = sh.d.plainSize(tfi), 1
	}
	if sh.root == nil {
		return moveV2(sh, dh, ro, rn, ofi, credit, replaced)
	}
	if ofi.IsDir() {
		// Write the cached sidecars below ro out first: they move, and
		// their headers go into the journal.
		sh.forgetMeta(ro, false)
	}
	files, err := sh.movedFiles(ro, ofi)
	if err != nil {
		return err
	}
	var bytes, count int64
	for _, f := range files {
		if !f.reserved {
			bytes += plainSize(f.size)
			count++
		}
	}
	j := &moveJournal{V: journalVersion, Src: treeOf(sh), Dst: treeOf(dh), From: ro, To: rn,
		Dir: ofi.IsDir(), Dev: idOf(ofi).dev, Ino: idOf(ofi).ino, Headers: map[string][]byte{}}
	for _, f := range files {
		hdr, err := sh.checkedHeader(path.Join(ro, f.rel))
		if err != nil {
			// A file the move could not open in its own tree: the copy
			// reports it to the client as its read would.
			return errMoveByCopy
		}
		j.Headers[f.rel] = hdr
	}
	if err := dh.reserveFiles(count-replaced, bytes, credit); err != nil {
		return dh.pathErr(op, newname, err)
	}
	undo := func() { dh.addUsage(-bytes, -(count - replaced)) }
	if m, err := sh.readMeta(ro); err == nil && !j.Dir && !m.empty() {
		j.Meta = &m
	}
	if err := sh.s.writeJournal(j); err != nil {
		undo()
		return fmt.Errorf("vfs: move journal: %w", err)
	}
	if err := sh.s.moveStop("journal"); err != nil {
		return err
	}
	if err := renameBetween(sh, ro, dh, rn, tfi == nil); err != nil {
		undo()
		sh.s.dropJournal(j)
		if errors.Is(err, syscall.EXDEV) {
			return errMoveByCopy
		}
		return dh.pathErr(op, newname, err)
	}
	if tfi != nil {
		dh.addUsage(-credit, 0) // the replaced file's bytes; its count was netted above
	}
	sh.addUsage(-bytes, -count)
	if err := sh.s.moveStop("renamed"); err != nil {
		return err
	}
	if err := sh.s.finishMove(j, sh, dh); err != nil {
		// The rename is done and the journal kept: the next start
		// finishes the move. Until then the client sees the error.
		return dh.pathErr(op, newname, err)
	}
	sh.logger().Info("vfs: moved between trees", "from", sh.name, "to", dh.name, "files", len(files), "bytes", bytes)
	return nil
}

// movedFiles lists the regular files of the entry rel (rel itself when it
// is a file), reserved ones (sidecars) included. A symlink, a special file
// or a hard-linked file in it sends the move to the copy path (which
// refuses the first two like any move, and copies the last).
func (h *home) movedFiles(rel string, fi fs.FileInfo) ([]movedFile, error) {
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() || nlink(fi) != 1 {
			return nil, errMoveByCopy
		}
		return []movedFile{{rel: ".", size: fi.Size()}}, nil
	}
	var files []movedFile
	err := h.walk(rel, true, func(r string, fi fs.FileInfo) error {
		switch {
		case fi.IsDir():
			return nil
		case !fi.Mode().IsRegular() || nlink(fi) != 1:
			return errMoveByCopy
		}
		files = append(files, movedFile{rel: r[len(rel)+1:], reserved: isReserved(path.Base(r)), size: fi.Size()})
		return nil
	})
	return files, err
}

// checkedHeader returns the header of rel after checking that it opens
// with the tree's binding.
func (h *home) checkedHeader(rel string) ([]byte, error) {
	f, _, err := openSealed(h.root, rel, h.kr(), h.binding())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr := make([]byte, envelope.HeaderSize)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, err
	}
	return hdr, nil
}

// finishMove completes a move whose rename is done: it rebinds every file
// now under j.To in dh (putting back an old header a torn write damaged),
// makes that durable, moves a file's metadata entry, and drops the
// journal. It is what NewStore runs for a journal left by a crash, so
// every step may have run before. Caller holds both trees' ns (or the
// trees are not serving yet).
func (s *Store) finishMove(j *moveJournal, sh, dh *home) error {
	var errs []error
	for rel := range j.Headers {
		if err := dh.rebindFile(path.Join(j.To, rel), []byte(j.Src.Bind), j.Headers[rel]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.moveStop("rebound"); err != nil {
		return err
	}
	if err := dh.syncMoved(j.To, j.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Error("vfs: move between trees not finished", "from", j.Src.Name, "to", j.Dst.Name, "journal", j.name, "err", err)
		return err
	}
	if !j.Dir {
		// The target's entry (a replaced file's) goes with it.
		dh.putMeta(j.To, j.Meta)
		if err := sh.dropMeta(j.From); err != nil {
			sh.logger().Warn("vfs: cannot drop moved metadata", "home", sh.name, "path", "/"+j.From, "err", err)
		}
	}
	if j.Dir {
		moveDirProps(sh, dh, j.From, j.To)
	}
	s.dropJournal(j)
	return nil
}

// rebindFile rebinds rel from binding from to the tree's. A header that
// opens with neither (a torn write) is replaced by old, then rebound.
func (h *home) rebindFile(rel string, from, old []byte) error {
	f, err := h.root.OpenFile(rel, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("rebind /%s: %w", rel, err)
	}
	defer f.Close()
	_, err = envelope.Rebind(f, h.kr(), from, h.binding())
	if errors.Is(err, envelope.ErrAuth) && len(old) == envelope.HeaderSize {
		if _, werr := f.WriteAt(old, 0); werr != nil {
			return fmt.Errorf("rebind /%s: restore header: %w", rel, werr)
		}
		h.logger().Warn("vfs: move put back a damaged header", "home", h.name, "path", "/"+rel)
		_, err = envelope.Rebind(f, h.kr(), from, h.binding())
	}
	if err != nil {
		return fmt.Errorf("rebind /%s: %w", rel, err)
	}
	return nil
}

// syncMoved makes the rename and the rewritten headers durable: for a
// file, its fsync and its directory's; for a directory (any number of
// files), one syncfs of the store's filesystem.
func (h *home) syncMoved(rel string, dir bool) error {
	if dir {
		return h.s.syncFS()
	}
	for _, name := range []string{rel, parentOf(rel)} {
		f, err := h.root.Open(name)
		if err != nil {
			return err
		}
		err = h.s.fsync(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("sync /%s: %w", name, err)
		}
	}
	return nil
}

// putMeta makes m (nil: none) the metadata entry of file rel, as a move
// brings it: its properties were stored already, so no cap refuses them.
func (h *home) putMeta(rel string, m *Meta) {
	dir, key := parentOf(rel), path.Base(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	dm, err := h.loadDir(dir)
	if err == nil {
		prev, had := dm.entries[key]
		if m == nil && !had {
			return
		}
		var after int64
		if m == nil {
			delete(dm.entries, key)
		} else {
			dm.entries[key] = cloneMeta(*m)
			after = propBytes(*m)
		}
		dm.props += after - propBytes(prev)
		h.metaBytes += after - propBytes(prev)
		err = h.commit(dir, dm, true)
	}
	if err != nil {
		h.logger().Warn("vfs: cannot store moved metadata", "home", h.name, "path", "/"+rel, "err", err)
	}
}

// moveDirProps moves the property counts of the sidecars below ro of sh
// (a directory that moved) to rn of dh. A count already stale stays
// stale (countProps runs again before props decide anything).
func moveDirProps(sh, dh *home, ro, rn string) {
	moved := map[string]int64{}
	sh.mu.Lock()
	for dir, n := range sh.dirProps {
		if under(dir, ro) {
			moved[rn+dir[len(ro):]] = n
			sh.props -= n
			delete(sh.dirProps, dir)
		}
	}
	sh.mu.Unlock()
	dh.mu.Lock()
	for dir, n := range moved {
		dh.props += n - dh.dirProps[dir]
		dh.dirProps[dir] = n
	}
	dh.mu.Unlock()
}

// reserveFiles checks both quotas for n more files of bytes plaintext
// bytes (credit: the bytes of a file they replace) and counts them.
func (h *home) reserveFiles(n, bytes, credit int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n > 0 && h.quota.Files > 0 && h.files+n > h.quota.Files {
		return ErrQuota
	}
	if bytes > credit && h.quota.Bytes > 0 && h.used+h.props+bytes-credit > h.quota.Bytes {
		return ErrQuota
	}
	h.files += n
	h.used += bytes
	return nil
}

// writeJournal stores j durably under movesDir (encrypted, written to a
// temporary name, fsynced, renamed: a journal that exists is whole).
func (s *Store) writeJournal(j *moveJournal) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := s.root.Mkdir(movesDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	var b [16]byte
	rand.Read(b[:])
	j.name = hex.EncodeToString(b[:])
	tmp := path.Join(movesDir, "tmp-"+j.name)
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w, err := envelope.NewWriter(f, s.keyring(), envelope.Options{Binding: []byte(journalBinding), AEAD: s.aead})
	if err == nil {
		if _, err = w.Write(data); err == nil {
			err = w.Close()
		}
	}
	if err == nil {
		err = s.fsync(f)
	}
	f.Close()
	if err == nil {
		err = s.root.Rename(tmp, path.Join(movesDir, j.name))
	}
	if err == nil {
		err = s.syncDir(s.root, movesDir)
	}
	if err != nil {
		s.root.Remove(tmp)
		return err
	}
	return nil
}

// dropJournal removes a finished (or never started) move's journal.
func (s *Store) dropJournal(j *moveJournal) {
	if err := s.root.Remove(path.Join(movesDir, j.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("vfs: cannot remove a move journal", "journal", j.name, "err", err)
	}
}

// readJournal reads the journal named name.
func (s *Store) readJournal(name string) (*moveJournal, error) {
	f, r, err := openSealed(s.root, path.Join(movesDir, name), s.keyring(), []byte(journalBinding))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxSidecar))
	if err != nil {
		return nil, err
	}
	j := &moveJournal{name: name}
	if err := json.Unmarshal(data, j); err != nil {
		return nil, err
	}
	if j.V != journalVersion {
		return nil, fmt.Errorf("journal version %d (this version reads %d)", j.V, journalVersion)
	}
	return j, nil
}

// recoverMoves finishes the moves a crash interrupted (see the package
// comment above). A journal it cannot read is kept and logged: its files
// stay as the crash left them until a keyring that opens it is given.
func (s *Store) recoverMoves() {
	ents, err := fs.ReadDir(s.root.FS(), movesDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("vfs: cannot list move journals", "err", err)
		}
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if len(name) > 4 && name[:4] == "tmp-" {
			s.root.Remove(path.Join(movesDir, name)) // never renamed: no move started
			continue
		}
		j, err := s.readJournal(name)
		if err == nil {
			err = s.recoverMove(j)
		}
		if err != nil {
			s.log.Error("vfs: cannot finish an interrupted move between trees", "journal", name, "err", err)
		}
	}
}

func (s *Store) recoverMove(j *moveJournal) error {
	for _, t := range []journalTree{j.Src, j.Dst} {
		if !validTree(t.Name, t.Folder) || t.Bind != bindingOf(t.Name, t.Folder) {
			return fmt.Errorf("journal names tree %q with binding %q", t.Name, t.Bind)
		}
	}
	if slices.ContainsFunc([]string{j.From, j.To}, func(rel string) bool { _, err := cleanName("recover", rel); return err != nil || rel == "." }) {
		return fmt.Errorf("journal names %q and %q", j.From, j.To)
	}
	sh, err := s.tree(j.Src.Name, j.Src.Bind, j.Src.Folder)
	if err != nil {
		return err
	}
	dh, err := s.tree(j.Dst.Name, j.Dst.Bind, j.Dst.Folder)
	if err != nil {
		return err
	}
	unlock := lockTrees(sh, dh)
	defer unlock()
	if fi, err := dh.root.Lstat(j.To); err == nil && idOf(fi) == (fileKey{j.Dev, j.Ino}) {
		s.log.Warn("vfs: finishing a move between trees a crash interrupted", "from", j.Src.Name, "to", j.Dst.Name)
		return s.finishMove(j, sh, dh)
	}
	// Not renamed: the source is as it was.
	s.dropJournal(j)
	return nil
}

// validTree: name is a tree directory of the store: a home, or (folder) a
// folder under foldersDir.
func validTree(name string, folder bool) bool {
	if folder {
		f, ok := cutFolder(name)
		return ok && validHome(f)
	}
	return validHome(name)
}

func cutFolder(name string) (string, bool) {
	if len(name) > len(foldersDir)+1 && name[:len(foldersDir)+1] == foldersDir+"/" {
		return name[len(foldersDir)+1:], true
	}
	return "", false
}

// bindingOf is the binding of the tree directory name.
func bindingOf(name string, folder bool) string {
	if f, ok := cutFolder(name); ok && folder {
		return folderBindingPrefix + f
	}
	return homeBindingPrefix + name
}

// moveStop is the tests' seam to stop a move at a stage, as a crash
// would (nil: never).
func (s *Store) moveStop(stage string) error {
	if s.moveHook != nil {
		return s.moveHook(stage)
	}
	return nil
}

// openSealed opens the envelope file name of root for a streamed read
// with binding (the header authenticated); the caller closes f.
func openSealed(root *os.Root, name string, kr *envelope.Keyring, binding []byte) (f *os.File, r io.Reader, err error) {
	if f, err = root.Open(name); err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil {
		r, err = envelope.NewReader(f, st.Size(), kr, envelope.Options{Binding: binding})
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, r, nil
}
