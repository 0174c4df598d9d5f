package vfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
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

// metaLoc returns the directory whose sidecar holds rel's metadata and the
// entry key in it.
func (h *home) metaLoc(rel string) (dir, key string) {
	if rel == "." {
		return ".", "."
	}
	if fi, err := h.root.Lstat(rel); err == nil && fi.IsDir() {
		return rel, "."
	}
	return parentOf(rel), path.Base(rel)
}

// readSidecar loads the sidecar of dir (empty if none).
func (h *home) readSidecar(dir string) (map[string]Meta, error) {
	name := path.Join(dir, metaFileName)
	f, err := h.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Meta{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r, err := envelope.NewReader(f, st.Size(), h.kr())
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSidecar))
	if err != nil {
		return nil, err
	}
	var sc sidecar
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", envelope.ErrFormat, err)
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
		err := h.root.Remove(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	data, err := json.Marshal(sidecar{V: 1, Entries: m})
	if err != nil {
		return err
	}
	tmp := tmpName()
	f, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			h.root.Remove(tmp)
		}
	}()
	w, err := envelope.NewWriter(f, h.kr())
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := h.root.Rename(tmp, name); err != nil {
		return err
	}
	ok = true
	return nil
}

// readMeta returns rel's metadata. Caller holds h.ns (shared is enough).
func (h *home) readMeta(rel string) (Meta, error) {
	dir, key := h.metaLoc(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	m, err := h.readSidecar(dir)
	if err != nil {
		return Meta{}, err
	}
	return m[key], nil
}

// updateMeta applies fn to rel's metadata and stores it. Caller holds h.ns.
func (h *home) updateMeta(rel string, fn func(*Meta) error) error {
	dir, key := h.metaLoc(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	m, err := h.readSidecar(dir)
	if err != nil {
		return err
	}
	cur := m[key]
	if err := fn(&cur); err != nil {
		return err
	}
	if cur.empty() {
		if _, had := m[key]; !had {
			return nil
		}
		delete(m, key)
	} else {
		m[key] = cur
	}
	return h.writeSidecar(dir, m)
}

// setHashes stores (or with nil drops) the cached hashes of file rel,
// logging failures: the cache is an optimisation. Caller holds h.ns.
func (h *home) setHashes(rel string, hs *Hashes) {
	dir, key := parentOf(rel), path.Base(rel)
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	m, err := h.readSidecar(dir)
	if err == nil {
		cur, had := m[key]
		if !had && hs == nil || had && cur.Hashes == nil && hs == nil {
			return
		}
		cur.Hashes = hs
		if cur.empty() {
			delete(m, key)
		} else {
			m[key] = cur
		}
		err = h.writeSidecar(dir, m)
	}
	if err != nil {
		h.logger().Warn("vfs: cannot update cached hashes", "home", h.name, "path", "/"+rel, "err", err)
	}
}

// moveMeta moves the metadata entry of file oldRel to newRel (replacing
// newRel's) and dropEntry removes one. Directories carry theirs inside.
// Caller holds h.ns exclusively.
func (h *home) moveMeta(oldRel, newRel string) error {
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	od, ok := parentOf(oldRel), path.Base(oldRel)
	nd, nk := parentOf(newRel), path.Base(newRel)
	om, err := h.readSidecar(od)
	if err != nil {
		return err
	}
	e, had := om[ok]
	if od == nd {
		_, hadNew := om[nk]
		if !had && !hadNew {
			return nil
		}
		delete(om, ok)
		delete(om, nk)
		if had {
			om[nk] = e
		}
		return h.writeSidecar(od, om)
	}
	nm, err := h.readSidecar(nd)
	if err != nil {
		return err
	}
	_, hadNew := nm[nk]
	if had || hadNew {
		delete(nm, nk)
		if had {
			nm[nk] = e
		}
		if err := h.writeSidecar(nd, nm); err != nil {
			return err
		}
	}
	if had {
		delete(om, ok)
		return h.writeSidecar(od, om)
	}
	return nil
}

func (h *home) dropMeta(rel string) error {
	h.metaMu.Lock()
	defer h.metaMu.Unlock()
	d, k := parentOf(rel), path.Base(rel)
	m, err := h.readSidecar(d)
	if err != nil {
		return err
	}
	if _, had := m[k]; !had {
		return nil
	}
	delete(m, k)
	return h.writeSidecar(d, m)
}

// Meta returns the metadata of name (zero Meta if none).
func (f *FS) Meta(name string) (Meta, error) {
	const op = "meta"
	rel, err := cleanName(op, name)
	if err != nil {
		return Meta{}, err
	}
	h := f.h
	h.ns.RLock()
	defer h.ns.RUnlock()
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
	const op = "updatemeta"
	rel, err := cleanName(op, name)
	if err != nil {
		return err
	}
	if !f.can(PermUpload) && !f.can(PermOverwrite) {
		return f.denied(op, name)
	}
	h := f.h
	h.ns.Lock()
	defer h.ns.Unlock()
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
	_, err := h.root.Lstat(rel)
	return err
}
