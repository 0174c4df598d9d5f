// Package blob stores storage version 2's content blobs (docs/STORAGE.md):
// write-once objects named by random 128-bit ids, in a local directory.
// An id says nothing about the file, user or tree a blob belongs to; which
// blob is whose lives only in the encrypted index. The operations (create
// a blob in full, then publish it under its id; open; delete; list) are
// the ones an S3-compatible store offers, so scale-out can put blobs there
// without changing their callers.
//
// The directory is opened with os.Root and every name in it is made here
// from an id, so no caller's input ever becomes a path.
package blob

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// IDSize is the size of a blob id.
const IDSize = 16

// ID names a blob: random, never derived from what the blob holds.
type ID [IDSize]byte

// NewID returns a fresh random id.
func NewID() ID {
	var id ID
	_, _ = rand.Read(id[:])
	return id
}

// String is the id in lowercase hex (its name on disk).
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ErrBadID: a name that is not a blob id.
var ErrBadID = errors.New("blob: not a blob id")

// ParseID parses the lowercase hex form String gives.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize || strings.ToLower(s) != s {
		return id, fmt.Errorf("%q: %w", s, ErrBadID)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%q: %w", s, ErrBadID)
	}
	return id, nil
}

// ErrNotFound: no blob under that id (it wraps fs.ErrNotExist).
var ErrNotFound = fmt.Errorf("blob: no such blob: %w", fs.ErrNotExist)

// ErrUnavailable: a remote blob store (an object store) did not answer;
// retrying later may succeed. Stores that are not local wrap it in their
// own error (s3blob.ErrUnreachable), so callers above them tell a user
// "storage unavailable" without knowing which store it is.
var ErrUnavailable = errors.New("blob: store unavailable")

// ErrExists: Publish found a blob under the id already (ids are random:
// this is a bug or an attack, never overwritten).
var ErrExists = fmt.Errorf("blob: id in use: %w", fs.ErrExist)

const tmpDir = "tmp"

// Dir is a blob store in a local directory: blob ID lives at
// "<first two hex digits>/<hex id>". Safe for concurrent use.
//
// A blob is written where it will stay (a new random id, created with
// O_EXCL so nothing is ever overwritten): publishing it costs its fsync
// and its directory's, and no rename. Until it is published it is left
// out of List (so of the collector and of snapshots); after a crash it is
// an orphan that nothing references, which the collector deletes.
type Dir struct {
	root *os.Root
	// sync makes a file durable; tests replace it to count or fail.
	sync func(*os.File) error

	mu      sync.Mutex
	pending map[ID]struct{} // created, not yet published or aborted
	fanout  [256]bool       // the fan-out directories known to exist
	ahead   []ID            // names made ahead for CreateNew, unused
}

// OpenDir opens (creating, mode 0700) the blob directory at dir and
// removes blobs a crash left unpublished.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	// tmp/ held blobs being written before they were written in place:
	// what a crash left there is nobody's.
	if err := root.RemoveAll(tmpDir); err != nil {
		root.Close()
		return nil, fmt.Errorf("blob: clean %s: %w", tmpDir, err)
	}
	return &Dir{root: root, sync: (*os.File).Sync, pending: map[ID]struct{}{}}, nil
}

// Close removes the names made ahead and not used, and closes the
// directory.
func (d *Dir) Close() error {
	d.mu.Lock()
	ahead := d.ahead
	d.ahead = nil
	d.mu.Unlock()
	for _, id := range ahead {
		d.root.Remove(id.name())
		d.forget(id)
	}
	return d.root.Close()
}

func (id ID) name() string {
	h := id.String()
	return path.Join(h[:2], h)
}

// Pending is a blob being written: a file the caller writes at any offset
// (an envelope.File backing), then publishes or aborts.
type Pending struct {
	*os.File
	d    *Dir
	id   ID
	done bool
	// named: the blob's name was made (and its directory fsynced) ahead,
	// so publishing it fsyncs the file only.
	named bool
}

// namesAhead is how many names CreateNew makes at once, with one
// directory fsync for all of them.
const namesAhead = 32

// CreateNew starts a new blob under an id the Dir picks: one of a batch
// of empty files made ahead in one fan-out directory (the batch's ids
// share their first byte), whose names one directory fsync made durable.
// Publishing it then costs the file's fsync alone, where Create's blob
// also needs its directory's. Names made and not used are empty orphans
// after a crash, which the collector deletes; Close removes them.
func (d *Dir) CreateNew() (*Pending, error) {
	d.mu.Lock()
	if len(d.ahead) == 0 {
		d.mu.Unlock()
		if err := d.makeNames(); err != nil {
			return nil, err
		}
		d.mu.Lock()
	}
	if len(d.ahead) == 0 { // taken meanwhile by other callers
		d.mu.Unlock()
		return d.CreateNew()
	}
	id := d.ahead[len(d.ahead)-1]
	d.ahead = d.ahead[:len(d.ahead)-1]
	d.mu.Unlock()
	f, err := d.root.OpenFile(id.name(), os.O_RDWR, 0)
	if err != nil {
		d.root.Remove(id.name())
		d.forget(id)
		return nil, fmt.Errorf("blob: create %s: %w", id, err)
	}
	return &Pending{File: f, d: d, id: id, named: true}, nil
}

// makeNames makes a batch of empty blob files in one fan-out directory
// and fsyncs it; they are pending (not listed, not opened) until used.
func (d *Dir) makeNames() error {
	first := NewID()[0]
	made := make([]ID, 0, namesAhead)
	var err error
	for range namesAhead {
		id := NewID()
		id[0] = first
		if err = d.fanoutDir(id); err != nil {
			break
		}
		d.mu.Lock()
		d.pending[id] = struct{}{}
		d.mu.Unlock()
		var f *os.File
		if f, err = d.root.OpenFile(id.name(), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			d.forget(id)
			break
		}
		f.Close()
		made = append(made, id)
	}
	if err == nil {
		err = d.syncDir(path.Dir(made[0].name()))
	}
	if err != nil {
		for _, id := range made {
			d.root.Remove(id.name())
			d.forget(id)
		}
		return fmt.Errorf("blob: make names: %w", err)
	}
	d.mu.Lock()
	d.ahead = append(d.ahead, made...)
	d.mu.Unlock()
	return nil
}

// Create starts blob id. Nothing is listed under id until Publish, and a
// blob under id already is never replaced (ErrExists).
func (d *Dir) Create(id ID) (*Pending, error) {
	name := id.name()
	if err := d.fanoutDir(id); err != nil {
		return nil, fmt.Errorf("blob: create %s: %w", id, err)
	}
	d.mu.Lock()
	d.pending[id] = struct{}{}
	d.mu.Unlock()
	f, err := d.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		d.forget(id)
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("blob %s: %w", id, ErrExists)
		}
		return nil, fmt.Errorf("blob: create %s: %w", id, err)
	}
	return &Pending{File: f, d: d, id: id}, nil
}

// fanoutDir makes sure id's fan-out directory exists; once seen, it is
// not asked again.
func (d *Dir) fanoutDir(id ID) error {
	d.mu.Lock()
	known := d.fanout[id[0]]
	d.mu.Unlock()
	if known {
		return nil
	}
	if err := d.root.Mkdir(path.Dir(id.name()), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	d.mu.Lock()
	d.fanout[id[0]] = true
	d.mu.Unlock()
	return nil
}

func (d *Dir) forget(id ID) {
	d.mu.Lock()
	delete(d.pending, id)
	d.mu.Unlock()
}

func (d *Dir) isPending(id ID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.pending[id]
	return ok
}

// ID is the id the blob will have.
func (p *Pending) ID() ID { return p.id }

// Publish makes the blob durable (fsync of the file, then of its
// directory, which holds its new name).
func (p *Pending) Publish() error {
	if p.done {
		return fmt.Errorf("blob %s: %w", p.id, fs.ErrClosed)
	}
	p.done = true
	name := p.id.name()
	// The directory's fsync runs beside the file's: neither needs the
	// other first (nothing references the blob until both are done), and
	// the file system commits both in one journal commit where it can.
	dirErr := make(chan error, 1)
	if p.named {
		dirErr <- nil
	} else {
		go func() { dirErr <- p.d.syncDir(path.Dir(name)) }()
	}
	err := p.d.sync(p.File)
	if cerr := p.File.Close(); err == nil {
		err = cerr
	}
	if derr := <-dirErr; err == nil {
		err = derr
	}
	if err != nil {
		p.d.root.Remove(name)
		p.d.forget(p.id)
		return fmt.Errorf("blob: publish %s: %w", p.id, err)
	}
	p.d.forget(p.id)
	return nil
}

// Abort drops the blob; after Publish it does nothing.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	p.File.Close()
	p.d.root.Remove(p.id.name())
	p.d.forget(p.id)
}

func (d *Dir) syncDir(dir string) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return d.sync(f)
}

// Blob is a published blob open for reading.
type Blob interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

type fileBlob struct {
	*os.File
	size int64
}

func (b fileBlob) Size() int64 { return b.size }

// Open opens blob id for reading (ErrNotFound if there is none).
func (d *Dir) Open(id ID) (Blob, error) {
	if d.isPending(id) {
		return nil, fmt.Errorf("blob %s: not yet published: %w", id, ErrNotFound)
	}
	f, err := d.root.Open(id.name())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", id, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob: open %s: %w", id, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("blob %s: not a regular file: %w", id, ErrNotFound)
	}
	return fileBlob{f, st.Size()}, nil
}

// Delete removes blob id; a missing blob is no error (deletes are
// retried by the collector).
func (d *Dir) Delete(id ID) error {
	if err := d.root.Remove(id.name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %s: %w", id, err)
	}
	return nil
}

// List calls fn for every published blob with its stored size, in no
// particular order. Names that are not blobs (planted, or left by another
// program) are skipped; the first error of fn stops the listing.
func (d *Dir) List(fn func(id ID, size int64) error) error {
	fanout, err := fs.ReadDir(d.root.FS(), ".")
	if err != nil {
		return fmt.Errorf("blob: list: %w", err)
	}
	for _, sub := range fanout {
		if !sub.IsDir() || len(sub.Name()) != 2 || sub.Name() == tmpDir {
			continue
		}
		ents, err := fs.ReadDir(d.root.FS(), sub.Name())
		if err != nil {
			return fmt.Errorf("blob: list %s: %w", sub.Name(), err)
		}
		for _, e := range ents {
			id, err := ParseID(e.Name())
			if err != nil || id.String()[:2] != sub.Name() || !e.Type().IsRegular() || d.isPending(id) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed since the listing
			}
			if err := fn(id, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// OpenRewrite opens published blob id for writing in place. Blobs are
// write-once in their content; the one exception is a key rotation, which
// rewrites the key slot of a blob's envelope header (the data key
// re-wrapped under a new KEK, the content untouched, docs/FORMAT.md 8.3).
func (d *Dir) OpenRewrite(id ID) (*os.File, error) {
	if err := d.ownLink(id); err != nil {
		return nil, err
	}
	f, err := d.root.OpenFile(id.name(), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", id, err)
	}
	return f, nil
}

// ownLink makes blob id's file a link of its own before it is rewritten:
// a snapshot (a backup) may hold another link to the same inode, whose
// bytes must stay those of its moment. The copy is written beside it,
// fsynced and renamed over the name.
func (d *Dir) ownLink(id ID) error {
	fi, err := d.root.Lstat(id.name())
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("blob: %s: %w", id, err)
	}
	if nlink(fi) < 2 {
		return nil
	}
	src, err := d.root.Open(id.name())
	if err != nil {
		return fmt.Errorf("blob: %s: %w", id, err)
	}
	defer src.Close()
	tmp := id.name() + ".rewrite"
	dst, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("blob: %s: %w", id, err)
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.root.Rename(tmp, id.name())
	}
	if err != nil {
		d.root.Remove(tmp)
		return fmt.Errorf("blob: own link of %s: %w", id, err)
	}
	return d.syncDir(path.Dir(id.name()))
}

// LinkTo hard-links every published blob into dir (a new directory on the
// same file system) under the same names, and returns how many and their
// bytes: a snapshot of the blobs, which are never written in place
// (OpenRewrite breaks such a link first).
func (d *Dir) LinkTo(dir string) (n int, bytes int64, err error) {
	base := d.root.Name()
	err = d.List(func(id ID, size int64) error {
		dst := filepath.Join(dir, id.name())
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := os.Link(filepath.Join(base, id.name()), dst); err != nil {
			return err
		}
		n++
		bytes += size
		return nil
	})
	if err != nil {
		err = fmt.Errorf("blob: link to %s: %w", dir, err)
	}
	return n, bytes, err
}
