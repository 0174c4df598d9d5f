package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/namespace"
	"github.com/securefsd/securefsd/internal/nsfs"
)

// Storage version 2's files in the store directory (docs/STORAGE.md): the
// namespace index and the content blobs. Nothing else is there.
const (
	indexFileName = "index.db"
	blobsDirName  = "blobs"
	// relaxedQuiet is how long the changes of a relaxed store pause
	// before it commits them without waiting for the rest of the window
	// (index.Options.Quiet): a client between two files of a transfer
	// pauses for about a millisecond, one that is done for much longer.
	relaxedQuiet = 50 * time.Millisecond
)

// IndexFileName is storage version 2's index file in the store
// directory: a store that has one is a version 2 store.
const IndexFileName = indexFileName

// IndexKeyBinding binds the key file holding Options.IndexKey (wrapped by
// the keyring, internal/keyfile) to its use.
var IndexKeyBinding = []byte("securefsd index key")

// IndexKeySize is the size of Options.IndexKey.
const IndexKeySize = index.RootKeySize

// storeV2 is what a version 2 store opens: the index, the blob directory
// and the file system over them.
type storeV2 struct {
	x     *index.Index
	blobs *blob.Dir // nil when the blobs are the caller's (Options.Blobs)
	fs    *nsfs.Store
	opts  content.Options
	// shared: the index is the caller's (Options.Index), which closes it.
	shared bool
}

// openV2 opens the store as version 2 if it is one, or creates it if
// opts ask for version 2 and the directory is empty.
func (s *Store) openV2(opts Options) error {
	_, err := s.root.Lstat(indexFileName)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("vfs: open store: %w", err)
	case exists && opts.Index != nil:
		return fmt.Errorf("vfs: the store directory has an index of its own (%s), and another was given (etcd): move a single node's store with securefsd migrate: %w", indexFileName, ErrStorageVersion)
	case !exists && opts.Storage != StorageV2 && opts.Index == nil && opts.Blobs == nil:
		return nil
	case !exists:
		names, err := s.treeNames(".")
		if err != nil {
			return fmt.Errorf("vfs: open store: %w", err)
		}
		if len(names) > 0 {
			return fmt.Errorf("vfs: the store holds version 1 homes (%d): run securefsd migrate: %w", len(names), ErrStorageVersion)
		}
	}
	x := opts.Index
	if x == nil {
		if len(opts.IndexKey) != index.RootKeySize {
			return fmt.Errorf("vfs: storage version 2 needs its index key (%d bytes)", index.RootKeySize)
		}
		if x, err = index.OpenWith(filepath.Join(s.dir, indexFileName), opts.IndexKey, index.Options{Relaxed: opts.Relaxed, Quiet: relaxedQuiet}); err != nil {
			return fmt.Errorf("vfs: open index: %w", err)
		}
	}
	v := &storeV2{x: x, shared: opts.Index != nil}
	if err := s.openV2Index(v, opts); err != nil {
		v.close()
		return err
	}
	s.v2 = v
	return nil
}

// openV2Index opens the blobs and the file system over v's index.
func (s *Store) openV2Index(v *storeV2, opts Options) error {
	x := v.x
	// The whole index is checked once at open: a record changed, moved,
	// removed or put back from an older copy while the server was down
	// changes the root hash, and nothing says which file it touched, so
	// the store is not served (fail closed) until verify names it.
	records, err := x.Verify()
	switch {
	case err != nil && !opts.OpenDamaged:
		s.log.Error("vfs: integrity failure", "index", true, "integrity", true, "err", err)
		return fmt.Errorf("vfs: the index fails its check, the store is not served (securefsd verify reports it; restore the data directory from a backup): %w", newIntegrity(err))
	case err != nil:
		s.log.Error("vfs: integrity failure", "index", true, "integrity", true, "err", err)
	default:
		s.log.Debug("vfs: index checked", "records", records)
	}
	blobs := opts.Blobs
	if blobs == nil {
		d, err := blob.OpenDir(filepath.Join(s.dir, blobsDirName))
		if err != nil {
			return fmt.Errorf("vfs: open blobs: %w", err)
		}
		v.blobs, blobs = d, content.DirBlobs{Dir: d}
	}
	ns := namespace.New(x, nil)
	pad, err := padSetting(ns, opts.Pad, s.log)
	if err != nil {
		return fmt.Errorf("vfs: open index: %w", err)
	}
	v.opts = content.Options{Keyring: opts.Keyring, AEAD: s.aead, Pad: pad}
	if !v.shared {
		// Small segments go into the local index with their layout: one
		// commit per small upload, no blob write (docs/STORAGE.md 10c).
		// A shared index (etcd) keeps only metadata: its values and its
		// database are small by design.
		v.opts.InlineMax = content.DefaultInlineMax
	}
	if opts.Pins != nil {
		if v.fs, err = nsfs.NewShared(ns, blobs, v.opts, opts.Pins); err != nil {
			return fmt.Errorf("vfs: open store: %w", err)
		}
	} else {
		v.fs = nsfs.New(ns, blobs, v.opts)
	}
	if _, err := v.fs.Collect(); err != nil {
		s.log.Warn("vfs: collecting unreferenced blobs", "err", err)
	}
	return nil
}

func (v *storeV2) setKeyring(kr *envelope.Keyring) {
	o := v.opts
	o.Keyring = kr
	v.fs.SetKeyring(o)
}

// close closes what the store opened itself (not Options.Index, Blobs).
func (v *storeV2) close() error {
	var errs []error
	if v.blobs != nil {
		errs = append(errs, v.blobs.Close())
	}
	if !v.shared {
		errs = append(errs, v.x.Close())
	}
	return errors.Join(errs...)
}

// treeNames lists the trees directly in dir ("." for homes, foldersDir
// for folders), as the directories of a version 1 store.
func (v *storeV2) treeNames(dir string) ([]string, error) {
	all, err := v.fs.TreeNames()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range all {
		rest, ok := n, dir == "."
		if dir != "." {
			rest, ok = strings.CutPrefix(n, dir+"/")
		}
		if ok && validHome(rest) && !strings.Contains(rest, "/") {
			out = append(out, rest)
		}
	}
	return out, nil
}

// treeV2 opens tree name of a version 2 store. Caller holds s.mu.
func (s *Store) treeV2(name, bind string, folder bool) (*home, error) {
	t, err := s.v2.fs.Tree(name)
	if err != nil {
		return nil, fmt.Errorf("vfs: open home %q: %w", name, err)
	}
	h := newHome(s, name, nil)
	h.d = nsDisk{t: t}
	h.bind, h.folder = bind, folder
	if err := h.init(); err != nil {
		return nil, fmt.Errorf("vfs: open home %q: %w", name, err)
	}
	s.homes[name] = h
	return h, nil
}

// syncParent makes a rename into published's directory durable: an fsync
// of the directory in version 1; in version 2 the index transaction that
// renamed it was durable when it returned.
func (h *home) syncParent(published string) error {
	if h.root == nil {
		return nil
	}
	return h.s.syncDir(h.root, parentOf(published))
}

// Collect deletes storage version 2's blobs that nothing references any
// more (garbage no open file still reads, and what a crash left). Version
// 1 has nothing to collect.
func (s *Store) Collect() error {
	if s.v2 == nil {
		return nil
	}
	_, err := s.v2.fs.Collect()
	return err
}

// Refresh publishes a cluster node's pin as of now and deletes the
// garbage no node reads any more (nsfs.Store.Refresh): a node with
// Options.Pins calls it every few seconds. Elsewhere it only collects
// garbage; version 1 has none.
func (s *Store) Refresh() error {
	if s.v2 == nil {
		return nil
	}
	return s.v2.fs.Refresh()
}

// StorageVersion is the store's layout: StorageV1 or StorageV2.
func (s *Store) StorageVersion() int {
	if s.v2 != nil {
		return StorageV2
	}
	return StorageV1
}

// moveV2 is rebindMove in storage version 2: the entry and everything
// below it change tree in one index transaction (nsfs.Tree.RenameTo); no
// content is touched (a blob's binding names its inode, not its tree), so
// nothing needs a journal. Caller holds both trees' namespace locks and
// has checked the names and the target.
func moveV2(sh, dh *home, ro, rn string, ofi fs.FileInfo, credit, replaced int64) error {
	const op = "rename"
	var bytes, count int64
	if ofi.IsDir() {
		sh.forgetMeta(ro, false) // cached sidecars below ro move with it: write them out
		if err := sh.walk(ro, false, func(_ string, fi fs.FileInfo) error {
			if fi.Mode().IsRegular() {
				bytes += fi.Size()
				count++
			}
			return nil
		}); err != nil {
			return sh.pathErr(op, ro, err)
		}
	} else {
		bytes, count = ofi.Size(), 1
	}
	if err := dh.reserveFiles(count-replaced, bytes, credit); err != nil {
		return dh.pathErr(op, rn, err)
	}
	var meta *Meta
	if m, err := sh.readMeta(ro); err == nil && !ofi.IsDir() && !m.empty() {
		meta = &m
	}
	st, dt := sh.d.(nsDisk).t, dh.d.(nsDisk).t
	if err := st.RenameTo(ro, dt, rn); err != nil {
		dh.addUsage(-bytes, -(count - replaced))
		return dh.pathErr(op, rn, err)
	}
	if replaced > 0 {
		dh.addUsage(-credit, 0)
	}
	sh.addUsage(-bytes, -count)
	if ofi.IsDir() {
		moveDirProps(sh, dh, ro, rn)
	} else {
		dh.putMeta(rn, meta)
		if err := sh.dropMeta(ro); err != nil {
			sh.logger().Warn("vfs: cannot drop moved metadata", "home", sh.name, "path", "/"+ro, "err", err)
		}
	}
	sh.logger().Info("vfs: moved between trees", "from", sh.name, "to", dh.name, "files", count, "bytes", bytes)
	return nil
}

// verifyV2 is Verify in storage version 2: the index as a whole first
// (every record opens under its key, the root hash matches: a record
// removed, moved or put back from an older copy), then every file of
// every tree (or of home) read to its end, sidecars included, which
// authenticates each segment under its inode and generation.
func (s *Store) verifyV2(ctx context.Context, only string, report func(path string, err error)) (int, error) {
	if _, err := s.v2.x.Verify(); err != nil {
		s.log.Error("vfs: integrity failure", "index", true, "integrity", true, "err", err)
		if report != nil {
			report("index", err)
		}
		return 0, nil
	}
	hs, err := s.treesV2(only)
	if err != nil {
		return 0, err
	}
	checked := 0
	buf := make([]byte, 256<<10)
	for _, h := range hs {
		werr := h.walkSkip(".", true, func(rel string, fi fs.FileInfo) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !fi.Mode().IsRegular() || parentOf(rel) == tmpDirName {
				return nil
			}
			checked++
			err := readThrough(h, rel, buf)
			if err != nil && report != nil {
				h.logger().Error("vfs: integrity failure", "home", h.name, "path", "/"+rel, "integrity", true, "err", err)
				report(h.name+"/"+rel, err)
			}
			return nil
		}, func(rel string, err error) {
			if report != nil {
				report(h.name+"/"+rel, err)
			}
		})
		if werr != nil {
			return checked, werr
		}
	}
	return checked, nil
}

// readThrough reads file rel of a version 2 tree to its end.
func readThrough(h *home, rel string, buf []byte) error {
	f, err := h.d.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		off += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// treesV2 opens every tree of a version 2 store, or only tree only.
func (s *Store) treesV2(only string) ([]*home, error) {
	names := []string{only}
	if only == "" {
		var err error
		if names, err = s.v2.fs.TreeNames(); err != nil {
			return nil, err
		}
	}
	var out []*home
	for _, name := range names {
		var h *home
		var err error
		if folder, ok := strings.CutPrefix(name, foldersDir+"/"); ok {
			h, err = s.folder(folder)
		} else {
			h, err = s.home(name)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// eachFileV2 calls fn for every regular file of every tree of a version 2
// store, the store's own (sidecars, uploads in progress) included;
// entries that cannot be listed go to skip.
func (s *Store) eachFileV2(ctx context.Context, fn func(h *home, rel string) error, skip func(h *home, rel string, err error)) error {
	hs, err := s.treesV2("")
	if err != nil {
		return err
	}
	for _, h := range hs {
		err := h.walkSkip(".", true, func(rel string, fi fs.FileInfo) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return nil
			}
			return fn(h, rel)
		}, func(rel string, err error) { skip(h, rel, err) })
		if err != nil {
			return err
		}
	}
	return nil
}

// rewrapV2 is Rewrap in storage version 2: every published segment's key
// slot is re-wrapped in place, pass after pass until a pass changes
// nothing (files published meanwhile under the old keyring).
func (s *Store) rewrapV2(ctx context.Context, progress func(done, total int, name string)) error {
	const maxPasses = 5
	done, total := 0, 0
	var errs []error
	for pass := 0; pass < maxPasses; pass++ {
		changed := 0
		err := s.eachFileV2(ctx, func(h *home, rel string) error {
			total++
			n, err := h.rewrapV2(rel)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				h.logger().Error("vfs: rewrap failed", "home", h.name, "path", "/"+rel, "err", err)
				errs = append(errs, fmt.Errorf("%s/%s: %w", h.name, rel, err))
			}
			changed += n
			done++
			if progress != nil {
				progress(done, total, h.name+"/"+rel)
			}
			return nil
		}, func(h *home, rel string, err error) {
			errs = append(errs, fmt.Errorf("%s/%s: %w", h.name, rel, err))
		})
		if err != nil {
			return err
		}
		if changed == 0 || len(errs) > 0 {
			break
		}
	}
	if len(errs) > 0 {
		return &SweepError{Op: "rewrap", Errs: errs}
	}
	// The retired key may go once this returns: the records re-wrapped in
	// the index must be on disk first (a relaxed index holds them in its
	// overlay until it commits).
	if err := s.v2.x.Sync(); err != nil {
		return fmt.Errorf("vfs: rewrap: %w", err)
	}
	return nil
}

// rewrapV2 re-wraps file rel's segments. An open file publishes first, so
// the segments it wrote under the old keyring are among them and what it
// writes next is sealed under the new one.
func (h *home) rewrapV2(rel string) (int, error) {
	h.ns.RLock()
	h.mu.Lock()
	n := h.nodes[rel]
	if n == nil {
		n = h.tmpNodes[rel]
	}
	h.mu.Unlock()
	var err error
	if n != nil {
		err = n.flush(false)
	}
	h.ns.RUnlock()
	if err != nil {
		return 0, err
	}
	return h.d.(nsDisk).t.Rewrap(rel)
}

// keyIDsV2 is KeyIDsInUse in storage version 2: the KEK ids of every
// published segment's header.
func (s *Store) keyIDsV2(ctx context.Context) (map[uint32]int, error) {
	inUse := map[uint32]int{}
	err := s.eachFileV2(ctx, func(h *home, rel string) error {
		err := h.d.(nsDisk).t.KeyIDs(rel, inUse)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			inUse[0]++ // unreadable: may use any key
		}
		return nil
	}, func(*home, string, error) { inUse[0]++ })
	return inUse, err
}

// ErrNoAnchor: the rollback anchor file of the index does not exist yet.
var ErrNoAnchor = index.ErrNoAnchor

// ErrRolledBack: the index is older than its rollback anchor (a data
// directory put back from a copy), or its root hash does not match.
var ErrRolledBack = index.ErrRolledBack

// CheckAnchor compares a version 2 store's index with its rollback anchor
// at path (docs/STORAGE.md section 4): ErrRolledBack if the index is
// older, ErrNoAnchor if there is no file. Version 1 has no index: nil.
func (s *Store) CheckAnchor(path string) error {
	if s.v2 == nil {
		return nil
	}
	return s.v2.x.CheckAnchor(path)
}

// WriteAnchor records a version 2 store's index epoch and root hash in
// the rollback anchor at path. Version 1: nothing to do.
func (s *Store) WriteAnchor(path string) error {
	if s.v2 == nil {
		return nil
	}
	return s.v2.x.WriteAnchor(path)
}

// Epoch is a version 2 store's index epoch (0 in version 1): it changes
// with every change of the namespace.
func (s *Store) Epoch() uint64 {
	if s.v2 == nil {
		return 0
	}
	e, _ := s.v2.x.Epoch()
	return e
}

// padSetting is whether the store pads its segments: chosen when the
// store is created (Options.Pad) and kept in the index, since a padded
// segment's stored length is part of what a reader checks. A later
// Options.Pad that differs is logged and ignored.
func padSetting(ns *namespace.NS, want bool, log *slog.Logger) (bool, error) {
	var v string
	err := ns.View(func(tx *namespace.Tx) error {
		var err error
		v, err = tx.Setting("pad")
		return err
	})
	if err != nil {
		return false, err
	}
	if v == "" {
		v = strconv.FormatBool(want)
		err = ns.Update(func(tx *namespace.Tx) error { return tx.SetSetting("pad", v) })
	}
	pad := v == "true"
	if err == nil && pad != want {
		log.Warn("vfs: padding is chosen when a storage v2 store is created; this one keeps its own", "pad", pad)
	}
	return pad, err
}

// snapshot is Snapshot's copy of a version 2 store, the store frozen: the
// index copied as of this moment and every published blob hard-linked,
// into dst laid out as the store is.
func (v *storeV2) snapshot(ctx context.Context, dst string, st *SnapshotStats) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if v.shared || v.blobs == nil {
		return errors.New("vfs: a store on etcd or an object store is not backed up through a node: run securefsd backup --etcd-endpoints ... --store s3://... DEST (docs/CLUSTER.md, Backup of a cluster)")
	}
	if err := v.x.CopyTo(filepath.Join(dst, indexFileName)); err != nil {
		return err
	}
	n, bytes, err := v.blobs.LinkTo(filepath.Join(dst, blobsDirName))
	st.Files += n + 1
	st.Linked += n
	st.Copied++
	st.Bytes += bytes
	return err
}
