// Package nsfs is storage version 2's file system (docs/STORAGE.md): the
// trees of a data directory (homes, shared folders) as the namespace index
// keeps them (internal/namespace) and their files' plaintext as content
// blobs (internal/content). It offers what internal/vfs uses of an os.Root
// and its files in version 1, in plaintext terms: names are resolved in
// the index, never on a disk, sizes are plaintext sizes, modes and times
// are the client's, and a file's bytes are read and written through its
// segments.
//
// A File buffers nothing of its own: writes go to the pending blobs of
// its segments, and Sync or Close publishes them with one index
// transaction (a new generation of the file). Until then the name keeps
// its last published content; a crash loses the unpublished writes and
// leaves only unreferenced blobs, which Collect deletes.
//
// Names are clean slash-separated paths relative to the tree ("." is its
// root), as io/fs.ValidPath accepts them; the caller (vfs) has cleaned and
// checked the client's name. There are no symlinks and no hard links.
package nsfs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/namespace"
)

// modeBits are the bits of a mode a tree keeps: permissions, setuid,
// setgid and sticky (vfs records the client's mode in them, modes.go).
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Blobs is the blob store: what content.File reads and writes, and what
// the collector lists and deletes.
type Blobs interface {
	content.Blobs
	namespace.BlobStore
}

// Store is the file system of one namespace: its trees share it, and its
// collector sees every open file of them. Safe for concurrent use.
type Store struct {
	ns    *namespace.NS
	blobs Blobs
	opts  content.Options

	// publishing is held shared from a content commit (its blobs are
	// published) to the index transaction that references them, and
	// exclusively by Collect, which would otherwise take those blobs for
	// orphans.
	publishing sync.RWMutex

	mu   sync.Mutex
	pins map[*File]uint64 // the epoch each open file read its layout at
	// staged are the blobs of content committed but not yet in the index
	// (File.Sync of a file not yet named), and the blobs open files
	// published ahead of their commit (track): Collect keeps them.
	staged map[blob.ID]struct{}

	// In a cluster (NewShared): shared publishes this process's pin; seen
	// is the newest epoch this process has seen, so every later read is
	// at it or after; holding has the files about to read their layout,
	// each at the seen of when it started. pubMu orders the publishes,
	// published is the last one.
	shared    Pins
	seen      uint64
	holding   map[*File]uint64
	pubMu     sync.Mutex
	published uint64
}

// New returns the file system of ns over blobs; o configures every file's
// content (keyring, AEAD, segment size, padding). It is the only process
// serving ns: its collector needs to know of its own open files only.
func New(ns *namespace.NS, blobs Blobs, o content.Options) *Store {
	return &Store{ns: ns, blobs: blobs, opts: o, pins: map[*File]uint64{}, staged: map[blob.ID]struct{}{}}
}

// Pins shares the epochs open files read at between the processes that
// serve one namespace (the nodes of a cluster on one etcd index,
// docs/CLUSTER.md), so that no process's collector deletes a blob
// another process's open file still reads.
//
// A process publishes one epoch, its pin: no newer than the layout any of
// its open files reads, nor than any layout it will read later (the
// newest epoch it has seen, since a later read sees that one or a newer
// one). A collector deletes only garbage made before the oldest pin of
// every live process, its own included. A process that dies takes its pin
// with it (an etcd lease).
type Pins interface {
	// Publish records this process's pin, replacing the one before.
	Publish(epoch uint64) error
	// Oldest returns the oldest pin any live process has published, this
	// one's included (math.MaxUint64 if there is none).
	Oldest() (uint64, error)
	// Live is how many processes have a pin now, this one's included.
	Live() (int, error)
}

// NewShared is New for a namespace that other processes serve at the same
// time: the collector keeps what their open files read, as pins tells.
// It publishes this process's first pin (the epoch now) before any file
// opens.
func NewShared(ns *namespace.NS, blobs Blobs, o content.Options, pins Pins) (*Store, error) {
	s := New(ns, blobs, o)
	s.shared, s.holding = pins, map[*File]uint64{}
	e, err := s.epoch()
	if err != nil {
		return nil, fmt.Errorf("nsfs: shared pins: %w", err)
	}
	if err := pins.Publish(e); err != nil {
		return nil, fmt.Errorf("nsfs: shared pins: %w", err)
	}
	s.seen, s.published = e, e
	return s, nil
}

// epoch reads the namespace's epoch now.
func (s *Store) epoch() (uint64, error) {
	var e uint64
	err := s.ns.View(func(tx *namespace.Tx) error {
		e = tx.Epoch()
		return nil
	})
	return e, err
}

// hold records, in a cluster, that f is about to read its layout at an
// epoch not yet known, but no older than the newest seen: the pin this
// process publishes meanwhile stays at or below it.
func (s *Store) hold(f *File) {
	if s.shared == nil {
		return
	}
	s.mu.Lock()
	s.holding[f] = s.seen
	s.mu.Unlock()
}

// pin records that f reads the layout of epoch (and no longer holds).
func (s *Store) pin(f *File, epoch uint64) {
	s.mu.Lock()
	s.pins[f] = epoch
	if s.shared != nil {
		delete(s.holding, f)
		s.seen = max(s.seen, epoch)
	}
	s.mu.Unlock()
}

// unhold forgets a hold whose open failed.
func (s *Store) unhold(f *File) {
	if s.shared == nil {
		return
	}
	s.mu.Lock()
	delete(s.holding, f)
	s.mu.Unlock()
}

// Refresh, in a cluster, publishes this process's pin as of now and
// deletes the garbage no process reads any more. An idle process's pin
// otherwise stays where its last open file left it, holding back every
// node's collector: a cluster node calls Refresh every few seconds.
// Without shared pins it only collects garbage.
func (s *Store) Refresh() error {
	if s.shared != nil {
		e, err := s.epoch()
		if err != nil {
			return fmt.Errorf("nsfs: refresh: %w", err)
		}
		s.mu.Lock()
		s.seen = max(s.seen, e)
		s.mu.Unlock()
		// Other nodes' garbage too: one of them may have died with some
		// left, or kept it for an open file of this one.
		s.ns.ExpectGarbage()
	}
	s.collectGarbage()
	return nil
}

// raise publishes, in a cluster, the oldest epoch this process's open
// files read or will read, if it is newer than the one published. A
// failed publish leaves the older pin, which keeps more, never less.
func (s *Store) raise() {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	v := s.seen
	for _, e := range s.pins {
		v = min(v, e)
	}
	for _, e := range s.holding {
		v = min(v, e)
	}
	s.mu.Unlock()
	if v <= s.published {
		return
	}
	if err := s.shared.Publish(v); err == nil {
		s.published = v
	}
}

// SetKeyring replaces the keyring new segments are sealed with and old
// ones opened with (after a key rotation). Files open already keep theirs
// until they are next published.
func (s *Store) SetKeyring(o content.Options) {
	s.mu.Lock()
	s.opts = o
	open := make([]*File, 0, len(s.pins))
	for f := range s.pins {
		open = append(open, f)
	}
	s.mu.Unlock()
	for _, f := range open {
		f.setKeyring(o)
	}
}

func (s *Store) options() content.Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.opts
	o.Inline = inIndex{s.ns}
	o.Track = s.track
	return o
}

// inIndex reads and rewrites the blobs the index keeps (small segments,
// content.Ref.InIndex), each in a transaction of its own.
type inIndex struct{ ns *namespace.NS }

func (i inIndex) ReadInline(id blob.ID) ([]byte, error) {
	var data []byte
	err := i.ns.View(func(tx *namespace.Tx) error {
		var err error
		data, err = tx.InlineBlob(id)
		return err
	})
	return data, err
}

func (i inIndex) RewriteInline(id blob.ID, data []byte) error {
	return i.ns.Update(func(tx *namespace.Tx) error { return tx.RewriteInline(id, data) })
}

// track records (live) or forgets a blob a File publishes ahead of its
// commit (content.Options.Track): from before its upload starts until
// the publish that references it (which stages it again with its layout,
// then forgets it) or its deletion, Collect keeps it.
func (s *Store) track(id blob.ID, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if live {
		s.staged[id] = struct{}{}
	} else {
		delete(s.staged, id)
	}
}

// Collect deletes the blobs nothing needs any more (namespace.NS.Collect):
// garbage no open file can still read, and blobs a crash left
// unreferenced.
//
// In a cluster the blobs no record names are orphans only if no other
// process lives: another one's may be uploaded and not yet referenced by
// the transaction that follows (or staged until its upload ends). With
// other processes alive, Collect deletes garbage only; the orphans wait
// for a Collect that finds this process alone.
func (s *Store) Collect() (namespace.CollectStats, error) {
	if s.shared != nil {
		n, err := s.shared.Live()
		if err != nil {
			return namespace.CollectStats{}, fmt.Errorf("nsfs: collect: %w", err)
		}
		if n > 1 {
			g, err := s.ns.CollectGarbage(s.blobs, s.keep())
			return namespace.CollectStats{Garbage: g}, err
		}
	}
	s.publishing.Lock()
	defer s.publishing.Unlock()
	return s.ns.Collect(s.blobs, s.keep(), s.isStaged)
}

// isStaged reports whether blob id holds content committed by an open
// file but not yet published.
func (s *Store) isStaged(id blob.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.staged[id]
	return ok
}

// stage records (add) or forgets the blobs of a layout and the garbage
// of commits not yet published.
func (s *Store) stage(add bool, l content.Layout, garbage []blob.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range l.Segs {
		if add {
			s.staged[r.Blob] = struct{}{}
		} else {
			delete(s.staged, r.Blob)
		}
	}
	for _, id := range garbage {
		if add {
			s.staged[id] = struct{}{}
		} else {
			delete(s.staged, id)
		}
	}
}

// keep is the oldest epoch an open file read its layout at (MaxUint64
// when none is open): garbage from before it nobody can read.
//
// In a cluster it is also no newer than the oldest pin of every live
// process (Pins), this one's raised first; if that is unknown (etcd
// unreachable), it is 0: nothing is collected.
func (s *Store) keep() uint64 {
	keep := uint64(math.MaxUint64)
	s.mu.Lock()
	for _, e := range s.pins {
		keep = min(keep, e)
	}
	s.mu.Unlock()
	if s.shared == nil {
		return keep
	}
	s.raise()
	oldest, err := s.shared.Oldest()
	if err != nil {
		return 0
	}
	return min(keep, oldest)
}

// collectGarbage deletes, after a change that made garbage (a removal, a
// replacement, a publish) or the close of a file that kept some, the
// blobs no open file can read any more: the space of a removed file comes
// back at once, as on a disk. A failure is left for the next run.
func (s *Store) collectGarbage() {
	s.ns.CollectGarbage(s.blobs, s.keep())
}

// OpenFiles is the number of files open in every tree.
func (s *Store) OpenFiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pins)
}

// Tree is one tree (a home or a shared folder) of a Store.
type Tree struct {
	s    *Store
	name string
}

// Tree returns the tree name, creating it (an empty root) if it does not
// exist.
func (s *Store) Tree(name string) (*Tree, error) {
	err := s.ns.Update(func(tx *namespace.Tx) error {
		_, err := tx.Tree(name, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nsfs: tree %q: %w", name, err)
	}
	return &Tree{s: s, name: name}, nil
}

// HasTree reports whether tree name exists, without creating it.
func (s *Store) HasTree(name string) (bool, error) {
	err := s.ns.View(func(tx *namespace.Tx) error {
		_, err := tx.Tree(name, false)
		return err
	})
	if errors.Is(err, namespace.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// TreeNames lists every tree's name, sorted.
func (s *Store) TreeNames() ([]string, error) {
	var out []string
	err := s.ns.View(func(tx *namespace.Tx) error {
		var err error
		out, err = tx.Trees()
		return err
	})
	return out, err
}

// RemoveTree removes tree name and everything in it, in one transaction
// (its blobs become garbage). A missing tree is no error.
func (s *Store) RemoveTree(name string) error {
	defer s.collectGarbage()
	return s.ns.Update(func(tx *namespace.Tx) error {
		tr, err := tx.Tree(name, false)
		if errors.Is(err, namespace.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := removeBelow(tx, tr.Root); err != nil {
			return err
		}
		return tx.DropTree(name)
	})
}

// Name is the tree's name.
func (t *Tree) Name() string { return t.name }

func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// checkName refuses names that are not clean relative paths.
func checkName(name string) error {
	if !fs.ValidPath(name) {
		return namespace.ErrInvalid
	}
	return nil
}

// split returns the parent and the last element of a clean name other
// than ".".
func split(name string) (dir, base string) {
	dir, base = path.Split(name)
	return strings.TrimSuffix(dir, "/"), base
}

// resolve finds name in tx: its inode id.
func (t *Tree) resolve(tx *namespace.Tx, name string) (namespace.ID, error) {
	tr, err := tx.Tree(t.name, false)
	if err != nil {
		return namespace.ID{}, err
	}
	return tx.Resolve(tr, name)
}

// parent resolves name's parent directory and returns it with the last
// element.
func (t *Tree) parent(tx *namespace.Tx, name string) (namespace.ID, string, error) {
	if name == "." {
		return namespace.ID{}, "", namespace.ErrInvalid
	}
	dir, base := split(name)
	if dir == "" {
		dir = "."
	}
	id, err := t.resolve(tx, dir)
	if err != nil {
		return id, "", err
	}
	in, err := tx.Inode(id)
	if err != nil {
		return id, "", err
	}
	if in.Kind != namespace.Dir {
		return id, "", namespace.ErrNotDir
	}
	return id, base, nil
}

// Lstat returns name's entry. Stat is the same (nothing is a link).
func (t *Tree) Lstat(name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := t.view("lstat", name, func(tx *namespace.Tx) error {
		id, err := t.resolve(tx, name)
		if err != nil {
			return err
		}
		in, err := tx.Inode(id)
		if err != nil {
			return err
		}
		fi = newInfo(path.Base(name), id, in)
		return nil
	})
	return fi, err
}

// Stat is Lstat.
func (t *Tree) Stat(name string) (fs.FileInfo, error) { return t.Lstat(name) }

func (t *Tree) view(op, name string, fn func(tx *namespace.Tx) error) error {
	if err := checkName(name); err != nil {
		return pathErr(op, name, err)
	}
	return pathErr(op, name, t.s.ns.View(fn))
}

func (t *Tree) update(op, name string, fn func(tx *namespace.Tx) error) error {
	if err := checkName(name); err != nil {
		return pathErr(op, name, err)
	}
	return pathErr(op, name, t.s.ns.Update(fn))
}

// ReadDir lists directory name, sorted by name.
func (t *Tree) ReadDir(name string) ([]fs.FileInfo, error) {
	var out []fs.FileInfo
	err := t.view("readdir", name, func(tx *namespace.Tx) error {
		id, err := t.resolve(tx, name)
		if err != nil {
			return err
		}
		in, err := tx.Inode(id)
		if err != nil {
			return err
		}
		if in.Kind != namespace.Dir {
			return namespace.ErrNotDir
		}
		ents, err := tx.ReadDir(id)
		if err != nil {
			return err
		}
		out = make([]fs.FileInfo, 0, len(ents))
		for _, e := range ents {
			child, err := tx.Inode(e.Inode)
			if err != nil {
				return fmt.Errorf("entry %q: %w", e.Name, err)
			}
			out = append(out, newInfo(e.Name, e.Inode, child))
		}
		return nil
	})
	return out, err
}

// ReadDirNames lists the names in directory name, sorted.
func (t *Tree) ReadDirNames(name string) ([]string, error) {
	var out []string
	err := t.view("readdir", name, func(tx *namespace.Tx) error {
		id, err := t.resolve(tx, name)
		if err != nil {
			return err
		}
		ents, err := tx.ReadDir(id)
		for _, e := range ents {
			out = append(out, e.Name)
		}
		return err
	})
	return out, err
}

// Mkdir creates directory name with permission bits perm.
func (t *Tree) Mkdir(name string, perm fs.FileMode) error {
	return t.update("mkdir", name, func(tx *namespace.Tx) error {
		dir, base, err := t.parent(tx, name)
		if err != nil {
			return err
		}
		_, err = tx.Create(dir, base, namespace.Dir, fs.ModeDir|perm&modeBits)
		return err
	})
}

// MkdirAll creates directory name and its missing parents.
func (t *Tree) MkdirAll(name string, perm fs.FileMode) error {
	return t.update("mkdir", name, func(tx *namespace.Tx) error {
		tr, err := tx.Tree(t.name, false)
		if err != nil {
			return err
		}
		id := tr.Root
		if name == "." {
			return nil
		}
		for elem := range strings.SplitSeq(name, "/") {
			in, err := tx.Inode(id)
			if err != nil {
				return err
			}
			if in.Kind != namespace.Dir {
				return namespace.ErrNotDir
			}
			d, err := tx.Lookup(id, elem)
			switch {
			case err == nil:
				id = d.Inode
			case errors.Is(err, namespace.ErrNotFound):
				if id, err = tx.Create(id, elem, namespace.Dir, fs.ModeDir|perm&modeBits); err != nil {
					return err
				}
			default:
				return err
			}
		}
		in, err := tx.Inode(id)
		if err == nil && in.Kind != namespace.Dir {
			return namespace.ErrNotDir
		}
		return err
	})
}

// Remove removes file name or empty directory name. An open file stays
// readable by its handles; what they write is not published.
func (t *Tree) Remove(name string) error {
	err := t.update("remove", name, func(tx *namespace.Tx) error {
		dir, base, err := t.parent(tx, name)
		if err != nil {
			return err
		}
		return tx.Remove(dir, base)
	})
	if err == nil {
		t.s.collectGarbage()
	}
	return err
}

// RemoveAll removes name and everything below it, in one transaction. A
// missing name is no error.
func (t *Tree) RemoveAll(name string) error {
	defer t.s.collectGarbage()
	return t.update("removeall", name, func(tx *namespace.Tx) error {
		dir, base, err := t.parent(tx, name)
		if errors.Is(err, namespace.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		d, err := tx.Lookup(dir, base)
		if errors.Is(err, namespace.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := removeBelow(tx, d.Inode); err != nil {
			return err
		}
		return tx.Remove(dir, base)
	})
}

// removeBelow empties directory id (nothing for a file), deepest first.
func removeBelow(tx *namespace.Tx, id namespace.ID) error {
	in, err := tx.Inode(id)
	if err != nil || in.Kind != namespace.Dir {
		return err
	}
	ents, err := tx.ReadDir(id)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := removeBelow(tx, e.Inode); err != nil {
			return err
		}
		if err := tx.Remove(id, e.Name); err != nil {
			return err
		}
	}
	return nil
}

// Rename moves oldname to newname with rename(2)'s rules: a file replaces
// a file, a directory an empty directory, a directory never goes into
// itself. Open files follow (they hold the inode, not the name).
func (t *Tree) Rename(oldname, newname string) error {
	return t.RenameTo(oldname, t, newname)
}

// RenameTo is Rename into another tree of the same Store (a home and a
// shared folder): the entry and everything below change tree in the same
// transaction, with their usage; no content is touched.
func (t *Tree) RenameTo(oldname string, dst *Tree, newname string) error {
	if err := checkName(newname); err != nil {
		return pathErr("rename", newname, err)
	}
	if dst.s != t.s {
		return pathErr("rename", newname, errors.New("nsfs: rename between stores"))
	}
	defer t.s.collectGarbage() // a file renamed over another
	return t.update("rename", oldname, func(tx *namespace.Tx) error {
		from, ob, err := t.parent(tx, oldname)
		if err != nil {
			return err
		}
		to, nb, err := dst.parent(tx, newname)
		if err != nil {
			return pathErr("rename", newname, err)
		}
		return tx.Rename(from, ob, to, nb)
	})
}

// Chmod sets name's permission bits.
func (t *Tree) Chmod(name string, mode fs.FileMode) error {
	return t.update("chmod", name, func(tx *namespace.Tx) error {
		id, err := t.resolve(tx, name)
		if err != nil {
			return err
		}
		return tx.SetMode(id, mode)
	})
}

// Chtimes sets name's modification time (the index keeps no access time;
// a zero mtime leaves it unchanged).
func (t *Tree) Chtimes(name string, _, mtime time.Time) error {
	return t.update("chtimes", name, func(tx *namespace.Tx) error {
		id, err := t.resolve(tx, name)
		if err != nil {
			return err
		}
		return tx.SetAttr(id, 0, mtime)
	})
}

// Usage is the tree's plaintext bytes and files.
func (t *Tree) Usage() (bytes, files int64, err error) {
	err = t.s.ns.View(func(tx *namespace.Tx) error {
		tr, err := tx.Tree(t.name, false)
		bytes, files = tr.UsedBytes, tr.Files
		return err
	})
	return bytes, files, err
}

// info is the fs.FileInfo of an entry.
type info struct {
	name  string
	id    namespace.ID
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func newInfo(name string, id namespace.ID, in namespace.Inode) *info {
	i := &info{name: name, id: id, mode: in.Mode, mtime: in.Mtime}
	if in.Kind == namespace.Dir {
		i.mode |= fs.ModeDir
	} else {
		i.size = in.Data.Size
	}
	return i
}

func (i *info) Name() string       { return i.name }
func (i *info) Size() int64        { return i.size }
func (i *info) Mode() fs.FileMode  { return i.mode }
func (i *info) ModTime() time.Time { return i.mtime }
func (i *info) IsDir() bool        { return i.mode.IsDir() }

// Sys is the entry's inode id (namespace.ID): one file under one id, as
// (device, inode) on a disk.
func (i *info) Sys() any { return i.id }

// layout reads file name's inode: its id and content layout.
func (t *Tree) layout(name string) (namespace.ID, content.Layout, error) {
	var id namespace.ID
	var l content.Layout
	err := t.view("open", name, func(tx *namespace.Tx) error {
		var err error
		if id, err = t.resolve(tx, name); err != nil {
			return err
		}
		in, err := tx.Inode(id)
		if err != nil {
			return err
		}
		if in.Kind != namespace.File {
			return namespace.ErrIsDir
		}
		l = in.Data
		return nil
	})
	return id, l, err
}

// Rewrap re-wraps the data keys of file name's published segments under
// the store's keyring's active KEK (a key rotation, after SetKeyring),
// and reports how many changed. The collector waits meanwhile, so no
// segment is deleted under it; what an open File writes later is sealed
// under the new keyring once it next publishes.
func (t *Tree) Rewrap(name string) (int, error) {
	t.s.publishing.RLock()
	defer t.s.publishing.RUnlock()
	id, l, err := t.layout(name)
	if err != nil {
		return 0, err
	}
	n, err := content.Rewrap(t.s.blobs, inIndex{t.s.ns}, id, l, t.s.options().Keyring)
	return n, pathErr("rewrap", name, err)
}

// KeyIDs adds to ids the KEK ids file name's published segments use.
func (t *Tree) KeyIDs(name string, ids map[uint32]int) error {
	t.s.publishing.RLock()
	defer t.s.publishing.RUnlock()
	_, l, err := t.layout(name)
	if err != nil {
		return err
	}
	return pathErr("keyids", name, content.KeyIDs(t.s.blobs, inIndex{t.s.ns}, l, ids))
}
