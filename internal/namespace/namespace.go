// Package namespace is storage version 2's namespace (docs/STORAGE.md,
// section 4) on the sealed index (internal/index): trees (a home, a shared
// folder), directories, files and their names, as records no one without
// the key can read or move.
//
// Records (index kinds):
//
//	t / keyed hash of the tree's name   → Tree (root inode, quota, usage)
//	i / inode id (16 random bytes)      → Inode (kind, size, mode, times, generation, content layout, metadata)
//	d / parent inode id ‖ name key      → Dirent (the name, the child inode id)
//	g / blob id                         → the epoch at which the blob became garbage
//
// Every operation runs inside the caller's index transaction (Tx), so a
// publish, a rename or a removal changes names, inodes, usage and garbage
// together or not at all.
package namespace

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/index"
)

// Record kinds in the index.
const (
	kindTree    index.Kind = 't'
	kindInode   index.Kind = 'i'
	kindDirent  index.Kind = 'd'
	kindGarbage index.Kind = 'g'
	kindSetting index.Kind = 's'
	kindBlob    index.Kind = 'b'
)

// Errors callers test with errors.Is (they wrap the fs errors clients map).
var (
	ErrNotFound = fmt.Errorf("namespace: %w", fs.ErrNotExist)
	ErrExist    = fmt.Errorf("namespace: %w", fs.ErrExist)
	ErrNotDir   = errors.New("namespace: not a directory")
	ErrIsDir    = errors.New("namespace: is a directory")
	ErrNotEmpty = errors.New("namespace: directory not empty")
	ErrInvalid  = fmt.Errorf("namespace: %w", fs.ErrInvalid)
	ErrQuota    = errors.New("namespace: quota exceeded")
)

// ID is an inode id.
type ID = [content.InodeIDSize]byte

// NewID returns a fresh random inode id.
func NewID() ID {
	var id ID
	_, _ = rand.Read(id[:])
	return id
}

// Kind is what an inode is.
type Kind string

const (
	File Kind = "f"
	Dir  Kind = "d"
)

// Inode is a file's or directory's record.
type Inode struct {
	Kind   Kind              `json:"k"`
	Tree   string            `json:"t"`
	Parent ID                `json:"pa"` // the directory holding it (zero for a tree's root)
	Mode   fs.FileMode       `json:"m"`
	Mtime  time.Time         `json:"mt"`
	Gen    uint64            `json:"g"` // the generation of the content (files)
	Data   content.Layout    `json:"c"`
	Props  map[string]string `json:"p,omitempty"` // WebDAV dead properties
}

// Dirent is one name in a directory.
type Dirent struct {
	Name  string `json:"n"`
	Inode ID     `json:"i"`
}

// Tree is a home or a shared folder: its root directory, quota and usage.
type Tree struct {
	Name       string `json:"n"`
	Root       ID     `json:"r"`
	QuotaBytes int64  `json:"qb,omitempty"`
	QuotaFiles int64  `json:"qf,omitempty"`
	UsedBytes  int64  `json:"ub"`
	Files      int64  `json:"uf"`
}

// NS is a namespace over an open index.
type NS struct {
	x   *index.Index
	now func() time.Time
	// mayHaveGarbage is false only when this process knows the index
	// holds no garbage record (its last collection forgot them all and
	// none was recorded since): CollectGarbage then reads nothing, so a
	// close or an upload that made no garbage costs no extra transaction.
	mayHaveGarbage atomic.Bool

	// forget are garbage records whose blobs are deleted already: the
	// next Update forgets them in its own transaction (at most
	// forgetBatch of them), so a replacement or removal does not cost a
	// commit of its own to clean up. A crash leaves the records, which
	// the next collection deletes (again: a missing blob is no error) and
	// forgets.
	forgetMu sync.Mutex
	forget   map[blob.ID]struct{}
}

// New returns the namespace of x. now is the clock of modification times
// (nil: time.Now).
func New(x *index.Index, now func() time.Time) *NS {
	if now == nil {
		now = time.Now
	}
	n := &NS{x: x, now: now, forget: map[blob.ID]struct{}{}}
	n.mayHaveGarbage.Store(true) // what another run left
	return n
}

// Update and View run fn in one index transaction.
func (n *NS) Update(fn func(*Tx) error) error { return n.update(fn, forgetAlong) }

func (n *NS) update(fn func(*Tx) error, forgetMax int) error {
	forget := n.toForget(forgetMax)
	err := n.x.Update(func(t *index.Tx) error {
		tx := &Tx{t: t, ns: n}
		if err := fn(tx); err != nil {
			return err
		}
		for _, id := range forget {
			if err := tx.Forget(id); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && len(forget) > 0 {
		n.forgetMu.Lock()
		for _, id := range forget {
			delete(n.forget, id)
		}
		n.forgetMu.Unlock()
	}
	return err
}

// ExpectGarbage tells the next CollectGarbage to read the index even if
// this process recorded no garbage since it last found none: another
// process serving the same index (a cluster node) may have.
func (n *NS) ExpectGarbage() { n.mayHaveGarbage.Store(true) }

// toForget returns up to max garbage records waiting to be forgotten.
func (n *NS) toForget(max int) []blob.ID {
	n.forgetMu.Lock()
	defer n.forgetMu.Unlock()
	if len(n.forget) == 0 {
		return nil
	}
	ids := make([]blob.ID, 0, min(max, len(n.forget)))
	for id := range n.forget {
		if len(ids) == max {
			break
		}
		ids = append(ids, id)
	}
	return ids
}

// forgetting reports whether garbage record id waits to be forgotten.
func (n *NS) forgetting(id blob.ID) bool {
	n.forgetMu.Lock()
	defer n.forgetMu.Unlock()
	_, ok := n.forget[id]
	return ok
}

func (n *NS) View(fn func(*Tx) error) error {
	return n.x.View(func(t *index.Tx) error { return fn(&Tx{t: t, ns: n}) })
}

// Tx is one transaction of Update or View.
type Tx struct {
	t  *index.Tx
	ns *NS
}

// Epoch is the index's epoch as the transaction started: a View at epoch E
// sees every Update that started before E. Open files pin the epoch they
// read their layout at, so the collector keeps what they may still read.
func (tx *Tx) Epoch() uint64 { return tx.t.Epoch() }

func (tx *Tx) get(kind index.Kind, key []byte, v any) error {
	b, err := tx.t.Get(kind, key)
	if errors.Is(err, index.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("namespace: record %c: %w", kind, err)
	}
	return nil
}

func (tx *Tx) put(kind index.Kind, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if d, ok := decodedCopy(v); ok {
		return tx.t.PutDecoded(kind, key, b, d)
	}
	return tx.t.Put(kind, key, b)
}

// decodedCopy returns v as getDecoded would decode it from its JSON, and
// sharing nothing v holds, for the index to keep with the record
// (index.Tx.PutDecoded): an upload reads the directory inode and the
// tree record the previous upload wrote, and decoding them again was
// about a tenth of a small file's publish (docs/PERFORMANCE.md).
// TestDecodedCopy checks it against encoding/json. ok is false for what
// it does not know to copy exactly (the record is then decoded when read).
func decodedCopy(v any) (d any, ok bool) {
	switch v := v.(type) {
	case Dirent, Tree:
		return v, true
	case Inode:
		// Times are stored in UTC (RFC 3339, no monotonic reading); one
		// in another zone would come back in a zone of its own.
		if v.Mtime.Location() != time.UTC {
			return nil, false
		}
		v.Mtime = v.Mtime.UTC()
		v.Data.Segs = slices.Clone(v.Data.Segs)
		for i := range v.Data.Segs {
			v.Data.Segs[i].Data = nil // not in the JSON
		}
		if len(v.Props) == 0 {
			v.Props = nil // omitempty
		} else {
			v.Props = maps.Clone(v.Props)
		}
		return v, true
	}
	return nil, false
}

func (tx *Tx) treeKey(name string) []byte {
	k := tx.ns.x.NameKey(nil, "tree "+name)
	return k[:]
}

func (tx *Tx) direntKey(parent ID, name string) []byte {
	k := tx.ns.x.NameKey(parent[:], name)
	return append(parent[:len(parent):len(parent)], k[:]...)
}

// Tree returns the tree name, creating it (an empty root directory) with
// create.
func (tx *Tx) Tree(name string, create bool) (Tree, error) {
	var t Tree
	err := tx.getDecoded(kindTree, tx.treeKey(name), &t)
	if !errors.Is(err, ErrNotFound) || !create {
		return t, err
	}
	t = Tree{Name: name, Root: NewID()}
	root := Inode{Kind: Dir, Tree: name, Mode: fs.ModeDir | 0o700, Mtime: tx.ns.now().UTC()}
	if err := tx.put(kindInode, t.Root[:], root); err != nil {
		return t, err
	}
	return t, tx.put(kindTree, tx.treeKey(name), t)
}

// Setting returns the store-wide setting name ("" if it was never set):
// choices made when the store was created that every later open must
// keep (whether segments are padded).
func (tx *Tx) Setting(name string) (string, error) {
	var v string
	err := tx.get(kindSetting, []byte(name), &v)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return v, err
}

// SetSetting records the store-wide setting name.
func (tx *Tx) SetSetting(name, value string) error {
	return tx.put(kindSetting, []byte(name), value)
}

// Trees lists the names of every tree, sorted.
func (tx *Tx) Trees() ([]string, error) {
	var out []string
	err := tx.t.Scan(kindTree, nil, func(key, v []byte) error {
		var t Tree
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if !slices.Equal(key, tx.treeKey(t.Name)) {
			return fmt.Errorf("namespace: tree %q under another name's key: %w", t.Name, index.ErrAuth)
		}
		out = append(out, t.Name)
		return nil
	})
	slices.Sort(out)
	return out, err
}

// DropTree removes tree name, whose root directory must be empty
// (ErrNotEmpty).
func (tx *Tx) DropTree(name string) error {
	t, err := tx.Tree(name, false)
	if err != nil {
		return err
	}
	if err := tx.dropInode(t.Root); err != nil {
		return err
	}
	return tx.t.Delete(kindTree, tx.treeKey(name))
}

// SetQuota sets a tree's quota (0: none).
func (tx *Tx) SetQuota(name string, bytes, files int64) error {
	t, err := tx.Tree(name, false)
	if err != nil {
		return err
	}
	t.QuotaBytes, t.QuotaFiles = bytes, files
	return tx.put(kindTree, tx.treeKey(name), t)
}

// addUsage moves a tree's usage; growth over the quota is ErrQuota (and
// changes nothing).
func (tx *Tx) addUsage(name string, bytes, files int64) error {
	t, err := tx.Tree(name, false)
	if err != nil {
		return err
	}
	if bytes > 0 && t.QuotaBytes > 0 && t.UsedBytes+bytes > t.QuotaBytes ||
		files > 0 && t.QuotaFiles > 0 && t.Files+files > t.QuotaFiles {
		return ErrQuota
	}
	t.UsedBytes += bytes
	t.Files += files
	return tx.put(kindTree, tx.treeKey(name), t)
}

// Inode returns inode id.
func (tx *Tx) Inode(id ID) (Inode, error) {
	var in Inode
	err := tx.getDecoded(kindInode, id[:], &in)
	// The cache shares what it decoded: the caller gets its own slices
	// and map to change.
	in.Data.Segs = slices.Clone(in.Data.Segs)
	in.Props = maps.Clone(in.Props)
	return in, err
}

// getDecoded is get through the index's cache of decoded records (every
// path operation reads the same directories and inodes again): v is a
// pointer to a Tree, Dirent or Inode, set to a shallow copy of the cached
// value.
func (tx *Tx) getDecoded(kind index.Kind, key []byte, v any) error {
	got, err := tx.t.GetDecoded(kind, key, func(b []byte) (any, error) {
		switch v.(type) {
		case *Inode:
			var in Inode
			return in, json.Unmarshal(b, &in)
		case *Dirent:
			var d Dirent
			return d, json.Unmarshal(b, &d)
		case *Tree:
			var t Tree
			return t, json.Unmarshal(b, &t)
		}
		return nil, fmt.Errorf("namespace: no decoded record of type %T", v)
	})
	if errors.Is(err, index.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("namespace: record %c: %w", kind, err)
	}
	switch v := v.(type) {
	case *Inode:
		*v = got.(Inode)
	case *Dirent:
		*v = got.(Dirent)
	case *Tree:
		*v = got.(Tree)
	}
	return nil
}

// Lookup returns the entry name of directory dir.
func (tx *Tx) Lookup(dir ID, name string) (Dirent, error) {
	var d Dirent
	if err := tx.getDecoded(kindDirent, tx.direntKey(dir, name), &d); err != nil {
		return d, err
	}
	if d.Name != name {
		// A sealed record opened under this key names another entry: a
		// name-key collision cannot happen, so this is damage.
		return d, fmt.Errorf("namespace: dirent names %q under the key of %q: %w", d.Name, name, index.ErrAuth)
	}
	return d, nil
}

// Resolve walks the clean slash-separated path p ("" or "." for the root)
// from tree's root and returns the inode id at its end.
func (tx *Tx) Resolve(tree Tree, p string) (ID, error) {
	id := tree.Root
	if p == "" || p == "." {
		return id, nil
	}
	for elem := range strings.SplitSeq(p, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return ID{}, ErrInvalid
		}
		in, err := tx.Inode(id)
		if err != nil {
			return ID{}, err
		}
		if in.Kind != Dir {
			return ID{}, ErrNotDir
		}
		d, err := tx.Lookup(id, elem)
		if err != nil {
			return ID{}, err
		}
		id = d.Inode
	}
	return id, nil
}

// ReadDir lists directory dir, sorted by name.
func (tx *Tx) ReadDir(dir ID) ([]Dirent, error) {
	var out []Dirent
	err := tx.t.Scan(kindDirent, dir[:], func(key, v []byte) error {
		var d Dirent
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		if !slices.Equal(key, tx.direntKey(dir, d.Name)) {
			return fmt.Errorf("namespace: dirent %q under another name's key: %w", d.Name, index.ErrAuth)
		}
		out = append(out, d)
		return nil
	})
	slices.SortFunc(out, func(a, b Dirent) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// Create makes name in directory dir: a directory, or an empty file. It
// counts against the tree's file quota (files only).
func (tx *Tx) Create(dir ID, name string, kind Kind, mode fs.FileMode) (ID, error) {
	id := NewID()
	return id, tx.CreateID(dir, name, kind, mode, id)
}

// CreateID is Create with the new inode's id given (fresh, from NewID):
// for a file whose content was written before its name existed.
func (tx *Tx) CreateID(dir ID, name string, kind Kind, mode fs.FileMode, id ID) error {
	if _, err := tx.Inode(id); err == nil {
		return ErrExist
	}
	if !validName(name) {
		return ErrInvalid
	}
	parent, err := tx.Inode(dir)
	if err != nil {
		return err
	}
	if parent.Kind != Dir {
		return ErrNotDir
	}
	if _, err := tx.Lookup(dir, name); err == nil {
		return ErrExist
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if kind == File {
		if err := tx.addUsage(parent.Tree, 0, 1); err != nil {
			return err
		}
	}
	now := tx.ns.now().UTC()
	if err := tx.put(kindInode, id[:], Inode{Kind: kind, Tree: parent.Tree, Parent: dir, Mode: mode, Mtime: now}); err != nil {
		return err
	}
	if err := tx.put(kindDirent, tx.direntKey(dir, name), Dirent{Name: name, Inode: id}); err != nil {
		return err
	}
	return tx.touch(dir, parent, now)
}

func (tx *Tx) touch(id ID, in Inode, t time.Time) error {
	in.Mtime = t
	return tx.put(kindInode, id[:], in)
}

// Publish makes layout (written at generation gen, content.Commit) file
// id's content, moves the tree's byte usage by the difference (ErrQuota
// over the quota, nothing changed), and records garbage, in this
// transaction.
func (tx *Tx) Publish(id ID, gen uint64, layout content.Layout, garbage []blob.ID) error {
	in, err := tx.Inode(id)
	if err != nil {
		return err
	}
	if in.Kind != File {
		return ErrIsDir
	}
	if gen <= in.Gen {
		return fmt.Errorf("namespace: publish of generation %d over %d: %w", gen, in.Gen, ErrInvalid)
	}
	if err := tx.addUsage(in.Tree, layout.Size-in.Data.Size, 0); err != nil {
		return err
	}
	in.Gen, in.Data, in.Mtime = gen, layout, tx.ns.now().UTC()
	if err := tx.put(kindInode, id[:], in); err != nil {
		return err
	}
	for _, r := range layout.Segs {
		if r.InIndex && r.Data != nil {
			if err := tx.t.Put(kindBlob, r.Blob[:], r.Data); err != nil {
				return err
			}
		}
	}
	return tx.garbage(garbage)
}

// ErrNoBlob: a layout names a blob kept in the index (content.Ref.InIndex)
// that the index does not hold.
var ErrNoBlob = fmt.Errorf("namespace: blob missing from the index: %w", index.ErrAuth)

// InlineBlob returns the bytes of blob id kept in the index. A missing
// one is damage: the layout naming it was published with it.
func (tx *Tx) InlineBlob(id blob.ID) ([]byte, error) {
	v, err := tx.t.Get(kindBlob, id[:])
	if errors.Is(err, index.ErrNotFound) {
		return nil, fmt.Errorf("blob %s: %w", id, ErrNoBlob)
	}
	return v, err
}

// RewriteInline replaces the bytes of blob id kept in the index (a key
// rotation's new key slot); a blob no longer there (collected since) is
// left alone.
func (tx *Tx) RewriteInline(id blob.ID, data []byte) error {
	_, err := tx.t.Get(kindBlob, id[:])
	if errors.Is(err, index.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.t.Put(kindBlob, id[:], data)
}

func (tx *Tx) garbage(ids []blob.ID) error {
	if len(ids) > 0 {
		tx.ns.mayHaveGarbage.Store(true)
	}
	for _, g := range ids {
		if err := tx.put(kindGarbage, g[:], tx.t.Epoch()); err != nil {
			return err
		}
	}
	return nil
}

// Remove removes name from directory dir: a file (its blobs become
// garbage, its bytes and count leave the tree's usage) or an empty
// directory.
func (tx *Tx) Remove(dir ID, name string) error {
	d, err := tx.Lookup(dir, name)
	if err != nil {
		return err
	}
	if err := tx.dropInode(d.Inode); err != nil {
		return err
	}
	if err := tx.t.Delete(kindDirent, tx.direntKey(dir, name)); err != nil {
		return err
	}
	parent, err := tx.Inode(dir)
	if err != nil {
		return err
	}
	return tx.touch(dir, parent, tx.ns.now().UTC())
}

func (tx *Tx) dropInode(id ID) error {
	in, err := tx.Inode(id)
	if err != nil {
		return err
	}
	if in.Kind == Dir {
		ents, err := tx.ReadDir(id)
		if err != nil {
			return err
		}
		if len(ents) > 0 {
			return ErrNotEmpty
		}
	} else {
		if err := tx.addUsage(in.Tree, -in.Data.Size, -1); err != nil {
			return err
		}
		var g []blob.ID
		for _, r := range in.Data.Segs {
			g = append(g, r.Blob)
		}
		if err := tx.garbage(g); err != nil {
			return err
		}
	}
	return tx.t.Delete(kindInode, id[:])
}

// Rename moves name of directory from to newName of directory to (the
// rename(2) rules: a file replaces a file, a directory an empty directory,
// never a directory into itself). Between trees (a home and a shared
// folder) the entry and everything below it change tree, and their bytes
// and files move from one tree's usage to the other's (ErrQuota if the
// target's quota cannot take them); the content blobs stay as they are,
// since their binding names the inode, not the tree.
func (tx *Tx) Rename(from ID, name string, to ID, newName string) error {
	if !validName(newName) {
		return ErrInvalid
	}
	d, err := tx.Lookup(from, name)
	if err != nil {
		return err
	}
	src, err := tx.Inode(d.Inode)
	if err != nil {
		return err
	}
	dst, err := tx.Inode(to)
	if err != nil {
		return err
	}
	if dst.Kind != Dir {
		return ErrNotDir
	}
	if dst.Tree != src.Tree {
		if err := tx.moveTree(d.Inode, src, dst.Tree); err != nil {
			return err
		}
		if src, err = tx.Inode(d.Inode); err != nil {
			return err
		}
	}
	if src.Kind == Dir {
		// Not into itself: walk up from the target directory.
		for x := to; x != (ID{}); {
			if x == d.Inode {
				return ErrInvalid
			}
			in, err := tx.Inode(x)
			if err != nil {
				return err
			}
			x = in.Parent
		}
	}
	if t, err := tx.Lookup(to, newName); err == nil {
		if t.Inode == d.Inode {
			return nil
		}
		ti, err := tx.Inode(t.Inode)
		if err != nil {
			return err
		}
		switch {
		case src.Kind == Dir && ti.Kind != Dir:
			return ErrNotDir
		case src.Kind != Dir && ti.Kind == Dir:
			return ErrIsDir
		}
		if err := tx.dropInode(t.Inode); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := tx.t.Delete(kindDirent, tx.direntKey(from, name)); err != nil {
		return err
	}
	if err := tx.put(kindDirent, tx.direntKey(to, newName), Dirent{Name: newName, Inode: d.Inode}); err != nil {
		return err
	}
	if src.Parent != to {
		src.Parent = to
		if err := tx.put(kindInode, d.Inode[:], src); err != nil {
			return err
		}
	}
	now := tx.ns.now().UTC()
	if err := tx.touch(to, dst, now); err != nil {
		return err
	}
	if from != to {
		fi, err := tx.Inode(from)
		if err != nil {
			return err
		}
		return tx.touch(from, fi, now)
	}
	return nil
}

// moveTree makes the subtree at id (inode in) part of tree to, moving its
// usage.
func (tx *Tx) moveTree(id ID, in Inode, to string) error {
	var bytes, files int64
	var ids []ID
	var walk func(id ID, in Inode) error
	walk = func(id ID, in Inode) error {
		ids = append(ids, id)
		if in.Kind == File {
			bytes += in.Data.Size
			files++
			return nil
		}
		ents, err := tx.ReadDir(id)
		if err != nil {
			return err
		}
		for _, e := range ents {
			child, err := tx.Inode(e.Inode)
			if err != nil {
				return err
			}
			if err := walk(e.Inode, child); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(id, in); err != nil {
		return err
	}
	from := in.Tree
	if err := tx.addUsage(to, bytes, files); err != nil {
		return err
	}
	if err := tx.addUsage(from, -bytes, -files); err != nil {
		return err
	}
	for _, x := range ids {
		child, err := tx.Inode(x)
		if err != nil {
			return err
		}
		child.Tree = to
		if err := tx.put(kindInode, x[:], child); err != nil {
			return err
		}
	}
	return nil
}

// SetAttr sets an inode's mode and modification time (zero: unchanged).
func (tx *Tx) SetAttr(id ID, mode fs.FileMode, mtime time.Time) error {
	in, err := tx.Inode(id)
	if err != nil {
		return err
	}
	if mode != 0 {
		in.Mode = in.Mode&^modeBits | mode&modeBits
	}
	if !mtime.IsZero() {
		in.Mtime = mtime.UTC()
	}
	return tx.put(kindInode, id[:], in)
}

// modeBits are the bits of a mode SetMode and SetAttr set: permissions,
// setuid, setgid and sticky (the rest is the inode's kind).
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// SetMode sets an inode's mode bits (modeBits) to mode's, zero included.
func (tx *Tx) SetMode(id ID, mode fs.FileMode) error {
	in, err := tx.Inode(id)
	if err != nil {
		return err
	}
	in.Mode = in.Mode&^modeBits | mode&modeBits
	return tx.put(kindInode, id[:], in)
}

// Garbage lists the blobs no inode references any more, with the epoch at
// which each became garbage (the collector deletes those no open file can
// still read, then Forget).
func (tx *Tx) Garbage() (map[blob.ID]uint64, error) {
	out := map[blob.ID]uint64{}
	err := tx.t.Scan(kindGarbage, nil, func(key, v []byte) error {
		var id blob.ID
		if len(key) != len(id) {
			return fmt.Errorf("namespace: garbage key of %d bytes: %w", len(key), index.ErrAuth)
		}
		copy(id[:], key)
		var e uint64
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		out[id] = e
		return nil
	})
	return out, err
}

// Forget drops blob id from the garbage list (after it is deleted), and
// the blob itself if the index kept it.
func (tx *Tx) Forget(id blob.ID) error {
	if err := tx.t.Delete(kindBlob, id[:]); err != nil {
		return err
	}
	return tx.t.Delete(kindGarbage, id[:])
}

// Sync puts every change answered so far on disk (index.Index.Sync: a
// relaxed index commits now).
func (n *NS) Sync() error { return n.x.Sync() }

// CollectGarbage is the cheap part of Collect, for after every change
// that made garbage: it reads the garbage list only, deletes the blobs
// that became garbage before epoch keep, then forgets them, and returns
// how many it deleted.
func (n *NS) CollectGarbage(blobs BlobStore, keep uint64) (int, error) {
	if !n.mayHaveGarbage.Swap(false) {
		return 0, nil
	}
	var due []blob.ID
	err := n.View(func(tx *Tx) error {
		g, err := tx.Garbage()
		kept := false
		for id, epoch := range g {
			switch {
			case n.forgetting(id): // deleted already
			case epoch < keep:
				due = append(due, id)
			default:
				kept = true
			}
		}
		if err != nil || kept {
			n.mayHaveGarbage.Store(true) // kept for an open file, or not read
		}
		return err
	})
	if err != nil || len(due) == 0 {
		return 0, err
	}
	// A relaxed index (index.Options.Relaxed) may not have on disk yet
	// the update that made these garbage: a power cut would bring back
	// the layout naming them. Their deletion waits for it.
	if err := n.x.Sync(); err != nil {
		n.mayHaveGarbage.Store(true)
		return 0, err
	}
	for _, id := range due {
		if err := blobs.Delete(id); err != nil {
			n.mayHaveGarbage.Store(true)
			return 0, err
		}
	}
	// Forgotten along with the next transactions (NS.Update); past what
	// one of them takes along, this run forgets them itself, in batches
	// (an etcd transaction holds a bounded number of operations).
	n.forgetMu.Lock()
	for _, id := range due {
		n.forget[id] = struct{}{}
	}
	waiting := len(n.forget)
	n.forgetMu.Unlock()
	for ; waiting > forgetAlong; waiting -= forgetBatch {
		if err := n.update(func(*Tx) error { return nil }, forgetBatch); err != nil {
			n.mayHaveGarbage.Store(true) // left for the next run
			return len(due), err
		}
	}
	return len(due), nil
}

// forgetBatch is how many garbage records one transaction forgets: under
// the operations an etcd transaction may hold (docs/CLUSTER.md).
const forgetBatch = 500

// forgetAlong is how many garbage records an Update forgets along with
// its own changes.
const forgetAlong = 64

// BlobStore is what the collector needs of the blob store.
type BlobStore interface {
	Delete(id blob.ID) error
	List(fn func(id blob.ID, size int64) error) error
}

// CollectStats says what Collect deleted.
type CollectStats struct {
	Garbage, Orphans int
}

// Referenced returns, sorted, every blob an inode references, and every
// garbage blob that became garbage at epoch from or later: with a pin at
// from held (no collector deletes those), the blobs any state of the
// index from epoch from on references, all in the store (a cluster
// backup's manifest). Blobs the index keeps itself (content.Ref.InIndex)
// are not among them: a copy of the index holds them.
func (n *NS) Referenced(from uint64) ([]blob.ID, error) {
	set := map[blob.ID]bool{}
	err := n.View(func(tx *Tx) error {
		g, err := tx.Garbage()
		if err != nil {
			return err
		}
		for id, e := range g {
			if e < from {
				continue
			}
			switch _, err := tx.t.Get(kindBlob, id[:]); {
			case errors.Is(err, index.ErrNotFound):
				set[id] = true
			case err != nil:
				return err
			}
		}
		return tx.t.Scan(kindInode, nil, func(_, v []byte) error {
			var in Inode
			if err := json.Unmarshal(v, &in); err != nil {
				return err
			}
			for _, r := range in.Data.Segs {
				if !r.InIndex {
					set[r.Blob] = true
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]blob.ID, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
	return out, nil
}

// Collect deletes content blobs no inode needs (docs/STORAGE.md, section
// 6, step 4):
//
//   - every garbage blob that became garbage before epoch keep (the oldest
//     epoch an open file still reads from; ^uint64(0) when none is open),
//     then its garbage record;
//   - every published blob that neither an inode nor the garbage list
//     references (a crash between a blob's publication and the index
//     transaction that would have used it), unless inFlight says a writer
//     of this process has published it and not committed yet.
//
// Deleting a blob before forgetting it means a crash in between leaves a
// garbage record of a missing blob, which the next run forgets.
func (n *NS) Collect(blobs BlobStore, keep uint64, inFlight func(blob.ID) bool) (CollectStats, error) {
	var st CollectStats
	var err error
	if st.Garbage, err = n.CollectGarbage(blobs, keep); err != nil {
		return st, err
	}
	referenced := map[blob.ID]bool{}
	err = n.View(func(tx *Tx) error {
		g, err := tx.Garbage()
		if err != nil {
			return err
		}
		for id := range g {
			referenced[id] = true
		}
		return tx.t.Scan(kindInode, nil, func(_, v []byte) error {
			var in Inode
			if err := json.Unmarshal(v, &in); err != nil {
				return err
			}
			for _, r := range in.Data.Segs {
				referenced[r.Blob] = true
			}
			return nil
		})
	})
	if err != nil {
		return st, err
	}
	var orphans []blob.ID
	err = blobs.List(func(id blob.ID, _ int64) error {
		if !referenced[id] && (inFlight == nil || !inFlight(id)) {
			orphans = append(orphans, id)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, id := range orphans {
		if err := blobs.Delete(id); err != nil {
			return st, err
		}
		st.Orphans++
	}
	return st, nil
}
