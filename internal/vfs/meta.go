package vfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"
)

// Meta is per-entry metadata, encrypted at rest in a sidecar file of the
// entry's directory, kept with the entry across Rename and deleted with it.
type Meta struct {
	// Props are WebDAV dead properties: key "{namespace}local", value the
	// raw inner XML.
	Props map[string]string `json:"props,omitempty"`
	// Hashes caches content digests; nil if unknown.
	Hashes *Hashes `json:"hashes,omitempty"`
}

// Hashes are hex digests of a file's content, valid while the file's size
// and modification time equal Size and ModTime.
type Hashes struct {
	MD5     string    `json:"md5"`
	SHA1    string    `json:"sha1"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

func (m *Meta) empty() bool { return len(m.Props) == 0 && m.Hashes == nil }

// The sidecar of directory D is D/.securefsd-meta: an envelope file holding
// JSON {"v":1,"entries":{name: Meta}}. The directory's own metadata is the
// entry "." of its own sidecar, so it moves with the directory for free.
type sidecar struct {
	V       int             `json:"v"`
	Entries map[string]Meta `json:"entries"`
}

const maxSidecar = 64 << 20

// Caps on metadata a client sets (WebDAV dead properties). Property bytes
// also count against the home's byte quota (a sidecar's plaintext size is
// part of the usage), and the cache of loaded sidecars is bounded by
// metaCacheBytes: without these a user could store any amount through
// PROPPATCH and make the server load it into memory.
const (
	MaxPropValue  = 64 << 10 // one property's value
	MaxEntryProps = 1 << 20  // all properties of one file or directory
	MaxDirProps   = 16 << 20 // all properties of the entries of one directory
)

// sidecarVersion is the "v" of the sidecars this version writes and reads
// (docs/FORMAT.md, "Metadata sidecar").
const sidecarVersion = 1

// metaLoc returns the directory whose sidecar holds rel's metadata and the
// entry key in it.
func (h *home) metaLoc(rel string) (dir, key string) {
	if rel == "." {
		return ".", "."
	}
	if fi, err := h.d.Lstat(rel); err == nil && fi.IsDir() {
		return rel, "."
	}
	return parentOf(rel), path.Base(rel)
}

// readSidecar loads the sidecar of dir (empty if none).
func (h *home) readSidecar(dir string) (map[string]Meta, error) {
	data, err := h.d.readSmall(h, path.Join(dir, metaFileName), maxSidecar)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Meta{}, nil
	}
	if err != nil {
		return nil, err
	}
	var sc sidecar
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSidecar, err)
	}
	if sc.V != sidecarVersion {
		return nil, fmt.Errorf("%w: version %d (this version reads %d)", ErrSidecar, sc.V, sidecarVersion)
	}
	if sc.Entries == nil {
		sc.Entries = map[string]Meta{}
	}
	return sc.Entries, nil
}

// writeSidecar replaces the sidecar of dir atomically (encrypted temporary
// file, fsync, rename); an empty map removes it.
func (h *home) writeSidecar(dir string, m map[string]Meta) error {
	name := path.Join(dir, metaFileName)
	if len(m) == 0 {
		err := h.d.Remove(name)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err == nil {
			h.setDirProps(dir, 0)
		}
		return err
	}
	data, err := json.Marshal(sidecar{V: sidecarVersion, Entries: m})
	if err != nil {
		return err
	}
	if err := h.d.replaceSmall(h, tmpName(), name, data); err != nil {
		return err
	}
	var props int64
	for _, e := range m {
		props += propBytes(e)
	}
	h.setDirProps(dir, props)
	return nil
}

// The metadata of recently used directories is cached in memory
// (h.metaDirs, guarded by h.metaMu). Changes that touch WebDAV properties
// are written through at once; changes to cached hashes only (every upload
// records its hashes, every rclone rename moves them) in a directory of
// many files are written behind, within metaFlushDelay, so that its
// sidecar is not rewritten per file. Losing a written-behind change in a crash only loses
// a cache entry (hashes are recomputed on demand); entries of names that
// no longer exist are pruned when a sidecar is loaded. Dropping a valid
// cached hash (content changed) is always written through.
type dirMeta struct {
	entries map[string]Meta
	dirty   bool
	props   int64 // propBytes of all entries: what the cache holds and MaxDirProps caps
}

// propBytes is what m's properties take: keys and values.
func propBytes(m Meta) int64 {
	var n int64
	for k, v := range m.Props {
		n += int64(len(k) + len(v))
	}
	return n
}

const (
	metaFlushDelay = time.Second
	metaCacheDirs  = 256
	// metaCacheBytes bounds the property bytes one home's cache holds;
	// beyond it (or metaCacheDirs) clean directories are dropped.
	metaCacheBytes = 32 << 20
	// metaBehindEntries: sidecars with at most this many entries (some
	// 64 KiB) are cheap to rewrite on storage v1 and always written
	// through, so the disk is quiet once an operation returns; larger
	// ones are written behind.
	metaBehindEntries = 256
)

// loadDir returns the cached metadata of dir. Caller holds h.ns and
// h.metaMu.
func (h *home) loadDir(dir string) (*dirMeta, error) {
	if dm := h.metaDirs[dir]; dm != nil {
		return dm, nil
	}
	m, err := h.readSidecar(dir)
	if err != nil {
		return nil, err
	}
	pruned := false
	names := h.dirNames(dir, len(m))
	for k := range m {
		if k == "." {
			continue
		}
		rel := path.Join(dir, k)
		var gone bool
		if names != nil {
			gone = !names[k]
		} else {
			_, err := h.d.Lstat(rel)
			gone = errors.Is(err, fs.ErrNotExist)
		}
		if gone && h.lookup(rel) == nil {
			delete(m, k)
			pruned = true
		}
	}
	dm := &dirMeta{entries: m}
	for _, e := range m {
		dm.props += propBytes(e)
	}
	if len(h.metaDirs) >= metaCacheDirs || h.metaBytes+dm.props > metaCacheBytes {
		for d, old := range h.metaDirs {
			if !old.dirty {
				h.dropCachedDir(d, old)
			}
		}
	}
	h.metaDirs[dir] = dm
	h.metaBytes += dm.props
	if pruned {
		if err := h.commit(dir, dm, false); err != nil {
			h.logger().Warn("vfs: cannot write metadata", "home", h.name, "path", "/"+dir, "err", err)
		}
		if h.metaDirs[dir] == nil {
			h.metaDirs[dir] = dm // keep serving the pruned view
		}
	}
	return dm, nil
}

// dirNames returns the set of names in dir, read in one pass, when the
// sidecar being loaded has enough entries (n) that one directory read is
// cheaper than an lstat per entry (each a path walk under os.Root); nil
// means "lstat each".
func (h *home) dirNames(dir string, n int) map[string]bool {
	if n <= 16 {
		return nil
	}
	d, err := h.d.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	list, err := d.Readdirnames(-1)
	if err != nil {
		return nil
	}
	names := make(map[string]bool, len(list))
	for _, k := range list {
		names[k] = true
	}
	return names
}

// commit stores dm: at once if sync, else within metaFlushDelay. Caller
// holds h.ns and h.metaMu.
func (h *home) commit(dir string, dm *dirMeta, sync bool) error {
	// On storage v2 a sidecar rewrite is an index commit and a blob with
	// its fsyncs, never cheap: what need not be durable now (cached
	// hashes, and their moves) is written behind, as for large sidecars.
	if !sync && (len(dm.entries) > metaBehindEntries || h.root == nil) {
		h.markDirty(dm)
		return nil
	}
	if err := h.writeSidecar(dir, dm.entries); err != nil {
		h.dropCachedDir(dir, dm) // reload from disk next time
		return err
	}
	dm.dirty = false
	return nil
}

func (h *home) markDirty(dm *dirMeta) {
	dm.dirty = true
	if h.metaTimer == nil {
		h.metaTimer = time.AfterFunc(metaFlushDelay, h.flushMetaLater)
	}
}

// flushMetaLater runs from the timer.
func (h *home) flushMetaLater() {
	h.ns.RLock()
	defer h.ns.RUnlock()
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	h.metaTimer = nil
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if !closed {
		h.flushMetaLocked()
	}
}

// flushMetaLocked writes every dirty cached sidecar. Caller holds h.ns and
// h.metaMu.
func (h *home) flushMetaLocked() {
	for dir, dm := range h.metaDirs {
		if !dm.dirty {
			continue
		}
		if err := h.writeSidecar(dir, dm.entries); err != nil {
			h.logger().Warn("vfs: cannot write metadata", "home", h.name, "path", "/"+dir, "err", err)
			h.dropCachedDir(dir, dm)
			continue
		}
		dm.dirty = false
	}
}

// forgetMeta flushes (or, if discard, drops) the cached metadata of dir
// and the directories below it, before they move or disappear. Caller
// holds h.ns exclusively.
func (h *home) forgetMeta(dir string, discard bool) {
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	h.mu.Lock()
	h.dirPropsStale = true // sidecars below dir move or go: count again when needed
	h.mu.Unlock()
	for d, dm := range h.metaDirs {
		if !under(d, dir) {
			continue
		}
		if dm.dirty && !discard {
			if err := h.writeSidecar(d, dm.entries); err != nil {
				h.logger().Warn("vfs: cannot write metadata", "home", h.name, "path", "/"+d, "err", err)
			}
		}
		h.dropCachedDir(d, dm)
	}
}

// readMeta returns rel's metadata. Caller holds h.ns (shared is enough).
func (h *home) readMeta(rel string) (Meta, error) {
	dir, key := h.metaLoc(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	dm, err := h.loadDir(dir)
	if err != nil {
		return Meta{}, err
	}
	return cloneMeta(dm.entries[key]), nil
}

func cloneMeta(m Meta) Meta {
	out := Meta{}
	if m.Props != nil {
		out.Props = make(map[string]string, len(m.Props))
		for k, v := range m.Props {
			out.Props[k] = v
		}
	}
	if m.Hashes != nil {
		hs := *m.Hashes
		out.Hashes = &hs
	}
	return out
}

// updateMeta applies fn to rel's metadata and writes it through. Caller
// holds h.ns.
func (h *home) updateMeta(rel string, fn func(*Meta) error) error {
	dir, key := h.metaLoc(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	dm, err := h.loadDir(dir)
	if err != nil {
		return err
	}
	prev := dm.entries[key]
	cur := cloneMeta(prev)
	if err := fn(&cur); err != nil {
		return err
	}
	before, after := propBytes(prev), propBytes(cur)
	if err := h.checkProps(dm, cur, before, after); err != nil {
		return err
	}
	if cur.empty() {
		if _, had := dm.entries[key]; !had {
			return nil
		}
		delete(dm.entries, key)
	} else {
		dm.entries[key] = cur
	}
	dm.props += after - before
	h.metaBytes += after - before
	return h.commit(dir, dm, true)
}

// checkProps refuses a metadata change that breaks a cap or, when it adds
// property bytes, the byte quota. Caller holds h.metaMu.
func (h *home) checkProps(dm *dirMeta, m Meta, before, after int64) error {
	if after <= before {
		return nil // shrinking is always allowed
	}
	for k, v := range m.Props {
		if len(v) > MaxPropValue {
			return fmt.Errorf("%w: property %s has %d bytes (at most %d)", ErrPropsTooLarge, k, len(v), MaxPropValue)
		}
	}
	if after > MaxEntryProps {
		return fmt.Errorf("%w: %d bytes of properties on one resource (at most %d)", ErrPropsTooLarge, after, MaxEntryProps)
	}
	if total := dm.props - before + after; total > MaxDirProps {
		return fmt.Errorf("%w: %d bytes of properties in one directory (at most %d)", ErrPropsTooLarge, total, MaxDirProps)
	}
	if h.propsStale() {
		h.countProps()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.quota.Bytes > 0 && h.used+h.props+after-before > h.quota.Bytes {
		return ErrQuota
	}
	return nil
}

// setDirProps records that dir's sidecar on disk now holds props bytes of
// properties, and moves the home's total by the difference.
func (h *home) setDirProps(dir string, props int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.props += props - h.dirProps[dir]
	if props == 0 {
		delete(h.dirProps, dir)
	} else {
		h.dirProps[dir] = props
	}
}

func (h *home) propsStale() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dirPropsStale
}

// countProps sums the properties of every sidecar of the home: at home
// open, and after directories moved or disappeared (their sidecars' paths
// changed, see forgetMeta). A sidecar that cannot be read counts nothing
// (the error is logged; reading the entry reports it to the client).
// Caller holds h.ns (exclusively, or with h.metaMu: no sidecar changes).
func (h *home) countProps() {
	dirProps := map[string]int64{}
	var total int64
	err := h.walk(".", true, func(rel string, fi fs.FileInfo) error {
		if path.Base(rel) != metaFileName || !fi.Mode().IsRegular() {
			return nil
		}
		dir := parentOf(rel)
		m, err := h.readSidecar(dir)
		if err != nil {
			h.logger().Warn("vfs: cannot read metadata to count properties", "home", h.name, "path", "/"+dir, "err", err)
			return nil
		}
		var n int64
		for _, e := range m {
			n += propBytes(e)
		}
		if n > 0 {
			dirProps[dir] = n
			total += n
		}
		return nil
	})
	if err != nil {
		h.logger().Warn("vfs: cannot count properties", "home", h.name, "err", err)
	}
	h.mu.Lock()
	h.dirProps, h.props, h.dirPropsStale = dirProps, total, err != nil
	h.mu.Unlock()
}

// dropCachedDir forgets dir's cached metadata. Caller holds h.metaMu.
func (h *home) dropCachedDir(dir string, dm *dirMeta) {
	if h.metaDirs[dir] == dm {
		delete(h.metaDirs, dir)
		h.metaBytes -= dm.props
	}
}

// setHashes stores (or with nil drops) the cached hashes of file rel,
// logging failures: the cache is an optimisation. Caller holds h.ns.
func (h *home) setHashes(rel string, hs *Hashes) {
	if hs != nil {
		c := *hs // the cache keeps its own copy
		hs = &c
	}
	dir, key := parentOf(rel), path.Base(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	dm, err := h.loadDir(dir)
	if err == nil {
		cur, had := dm.entries[key]
		if hs == nil && (!had || cur.Hashes == nil) {
			return
		}
		drop := hs == nil
		cur.Hashes = hs
		if cur.empty() {
			delete(dm.entries, key)
		} else {
			dm.entries[key] = cur
		}
		err = h.commit(dir, dm, drop)
	}
	if err != nil {
		h.logger().Warn("vfs: cannot update cached hashes", "home", h.name, "path", "/"+rel, "err", err)
	}
}

// metaMove is a file's metadata move, prepared before the entry moves on
// disk (see prepareMove).
type metaMove struct {
	od, ok, nd, nk string
	om, nm         *dirMeta
}

// prepareMove loads the metadata of the directories of file oldRel and of
// newRel while both names are still what they were: a sidecar loaded
// after the disk rename would prune the moved entry as stale (the first
// rename in a directory after a restart would lose its properties and
// hashes). Caller holds h.ns exclusively until moveMeta.
func (h *home) prepareMove(oldRel, newRel string) (*metaMove, error) {
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	mv := &metaMove{od: parentOf(oldRel), ok: path.Base(oldRel), nd: parentOf(newRel), nk: path.Base(newRel)}
	var err error
	if mv.om, err = h.loadDir(mv.od); err != nil {
		return nil, err
	}
	if mv.nm, err = h.loadDir(mv.nd); err != nil {
		return nil, err
	}
	if mv.od == mv.nd {
		mv.nm = mv.om
	}
	return mv, nil
}

// moveMeta moves the metadata entry of the file prepared by prepareMove
// to its new name (replacing the target's). Directories carry theirs
// inside. Caller holds h.ns exclusively since prepareMove.
func (h *home) moveMeta(mv *metaMove) error {
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	om, nm := mv.om, mv.nm
	// Loading the second directory may have evicted the first from the
	// cache: keep the prepared (unpruned) view as the cached one.
	h.metaDirs[mv.od] = om
	h.metaDirs[mv.nd] = nm
	e, had := om.entries[mv.ok]
	old, hadNew := nm.entries[mv.nk]
	if !had && !hadNew {
		return nil
	}
	sync := len(e.Props) > 0 || len(old.Props) > 0
	delete(om.entries, mv.ok)
	delete(nm.entries, mv.nk)
	if had {
		nm.entries[mv.nk] = e
	}
	if err := h.commit(mv.nd, nm, sync); err != nil {
		return err
	}
	if mv.od != mv.nd {
		return h.commit(mv.od, om, sync)
	}
	return nil
}

// dropMeta deletes the metadata entry of file rel. Caller holds h.ns.
func (h *home) dropMeta(rel string) error {
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	d, k := parentOf(rel), path.Base(rel)
	dm, err := h.loadDir(d)
	if err != nil {
		return err
	}
	e, had := dm.entries[k]
	if !had {
		return nil
	}
	delete(dm.entries, k)
	return h.commit(d, dm, len(e.Props) > 0)
}

// Meta returns the metadata of name (zero Meta if none).
func (f *FS) Meta(name string) (Meta, error) {
	if f.view != nil {
		return f.view.meta(name)
	}
	const op = "meta"
	e, err := f.enter(op, name, pre{lock: lockShared}) // metadata needs no right, as Stat
	if err != nil {
		return Meta{}, err
	}
	defer e.unlock()
	h, rel := f.h, e.rel
	if err := h.exists(rel); err != nil {
		return Meta{}, h.pathErr(op, name, err)
	}
	m, err := h.readMeta(rel)
	if err != nil {
		return Meta{}, h.pathErr(op, name, err)
	}
	return m, nil
}

// UpdateMeta calls fn with name's metadata and stores the result; an
// error from fn aborts without change. Needs PermUpload or PermOverwrite.
func (f *FS) UpdateMeta(name string, fn func(*Meta) error) error {
	if f.view != nil {
		return f.view.on("updatemeta", name, func(t *FS, inner string) error { return t.UpdateMeta(inner, fn) })
	}
	const op = "updatemeta"
	e, err := f.enter(op, name, pre{anyOf: PermUpload | PermOverwrite, lock: lockExclusive})
	if err != nil {
		return err
	}
	defer e.unlock()
	h, rel := f.h, e.rel
	if err := h.exists(rel); err != nil {
		return h.pathErr(op, name, err)
	}
	var fnErr error
	err = h.updateMeta(rel, func(m *Meta) error {
		fnErr = fn(m)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return h.pathErr(op, name, err)
	}
	return nil
}

// exists checks that rel names an entry (on disk or being created).
func (h *home) exists(rel string) error {
	if h.lookup(rel) != nil {
		return nil
	}
	_, err := h.d.Lstat(rel)
	return err
}
