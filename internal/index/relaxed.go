package index

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// relaxedEngine is a bbolt index whose updates are answered before they
// are on disk (Options.Relaxed, `serve --durability relaxed`): an update
// runs against the file's last commit plus an overlay of the updates
// since, its writes are appended to the write-ahead log (written, not
// fsynced) and added to the overlay, and a committer writes the overlay to
// the file in one bbolt transaction at most window later, or sooner when
// it grows past overlayMax records, when updates pause for quiet
// (Options.Quiet), or when Sync asks.
//
// What that gives: a crash of the process loses nothing (the log is in
// the kernel's page cache and Open replays it); a power cut loses at most
// the updates of the last window (the log is cut where the disk has it,
// and every update in it is whole or absent). Readers always see the
// overlay: an update is visible the moment it is answered.
type relaxedEngine struct {
	b      *boltEngine
	x      *Index
	path   string
	window time.Duration

	// mu serializes updates, the log's appends and the overlay's swaps.
	mu sync.Mutex
	ov atomic.Pointer[overlay]
	// captured is the overlay the last commit took (its seq and fileTx):
	// a view can pair an overlay taken before a commit with the file
	// after it only if the overlay holds that whole batch (consistent).
	captured atomic.Pointer[capture]
	wal      *os.File
	walSize  int64  // bytes of whole entries in wal
	seq      uint64 // the log file being appended to

	// testCommitErr, set by tests, fails commits (a full or broken disk).
	testCommitErr error

	commitMu sync.Mutex    // one commit at a time
	kick     chan struct{} // wakes the committer early
	quiet    time.Duration // see Options.Quiet; 0: none
	idle     *time.Timer   // kicks the committer once updates pause for quiet (nil without)
	stop     chan struct{}
	done     chan struct{}
}

// overlay holds, by stored key, each record written since the last
// commit: its sealed value, or nil for a removal. It is never changed
// once published: an update publishes a new one sharing the old one's
// maps (its own writes as a new layer; every maxLayers updates the
// layers are merged), so an update costs its own writes, not the
// overlay's size.
type overlay struct {
	base   map[string]*[]byte
	layers []map[string]*[]byte // newest last
	n      int                  // records in base and layers (a key may count twice)
	// fileTx is the bbolt transaction of the file this overlay lies over
	// (the last commit when it was made); seq counts overlays.
	fileTx int
	seq    uint64
}

// capture marks the overlay a commit took.
type capture struct {
	fileTx int
	seq    uint64
}

// maxLayers bounds the maps a read looks in.
const maxLayers = 16

func (o *overlay) get(k string) (*[]byte, bool) {
	for i := len(o.layers) - 1; i >= 0; i-- {
		if v, ok := o.layers[i][k]; ok {
			return v, true
		}
	}
	v, ok := o.base[k]
	return v, ok
}

// flat returns every key's newest value in one new map.
func (o *overlay) flat() map[string]*[]byte {
	m := make(map[string]*[]byte, o.n)
	for k, v := range o.base {
		m[k] = v
	}
	for _, l := range o.layers {
		for k, v := range l {
			m[k] = v
		}
	}
	return m
}

// with returns o with layer w over it.
func (o *overlay) with(w map[string]*[]byte) *overlay {
	if len(o.layers) >= maxLayers {
		m := o.flat()
		for k, v := range w {
			m[k] = v
		}
		return &overlay{base: m, n: len(m), fileTx: o.fileTx, seq: o.seq + 1}
	}
	layers := append(o.layers[:len(o.layers):len(o.layers)], w)
	return &overlay{base: o.base, layers: layers, n: o.n + len(w), fileTx: o.fileTx, seq: o.seq + 1}
}

// overlayMax is how many records the overlay holds before the committer
// runs without waiting for the window; past overlayLimit (commits keep
// failing) updates are refused rather than held in memory.
const (
	overlayMax   = 4096
	overlayLimit = 1 << 18
)

// ErrBacklog: a relaxed index refuses updates while the ones it answered
// could not be committed (a full disk, an I/O error) and too many wait.
var ErrBacklog = errors.New("index: too many answered updates wait for a commit that fails")

func openRelaxed(b *boltEngine, x *Index, path string, window, quiet time.Duration, lastSeq uint64) (*relaxedEngine, error) {
	e := &relaxedEngine{
		b: b, x: x, path: path, window: window, quiet: quiet,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	var fileTx int
	if err := b.db.View(func(tx *bolt.Tx) error { fileTx = tx.ID(); return nil }); err != nil {
		return nil, err
	}
	e.ov.Store(&overlay{fileTx: fileTx})
	if err := e.rotate(lastSeq + 1); err != nil {
		return nil, err
	}
	if quiet > 0 {
		e.idle = time.AfterFunc(quiet, e.kickCommitter)
		e.idle.Stop() // started by the first update
	}
	go e.committer()
	return e, nil
}

// kickCommitter wakes the committer unless it has been woken already.
func (e *relaxedEngine) kickCommitter() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// rotate starts the log file seq. Caller holds mu (or is openRelaxed).
//
// It reuses the spare, a log that a commit covered, when there is one,
// writing over it from the start: its pages are in the page cache, so the
// log takes no fresh memory, where a new file took as much as it wrote
// and the removal of the old one gave as much back (on this project's VMs
// the host backs a freshly used page at some cost, docs/PERFORMANCE.md,
// "A reused write-ahead log"). Past the new entries lie the old ones and
// pieces of them. Reading stops at the first piece whose length or MAC
// does not hold, and skips an old entry that does: its epoch is below
// the file's, since a log becomes the spare only after the commit that
// covers it is fsynced.
func (e *relaxedEngine) rotate(seq uint64) error {
	name := walName(e.path, seq)
	var f *os.File
	err := os.Rename(spareName(e.path), name)
	if err == nil {
		f, err = os.OpenFile(name, os.O_WRONLY, 0)
	} else {
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return fmt.Errorf("index: write-ahead log: %w", err)
	}
	if e.wal != nil {
		e.wal.Close()
	}
	e.wal, e.seq, e.walSize = f, seq, 0
	return nil
}

// spareName is the log that rotate reuses. walFiles does not list it (its
// suffix is no sequence number), so a replay never reads it.
func spareName(path string) string { return path + ".wal-spare" }

func (e *relaxedEngine) update(fn func(store) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ov := e.ov.Load()
	if ov.n >= overlayLimit {
		return fmt.Errorf("%w (%d records)", ErrBacklog, ov.n)
	}
	s := &overlayStore{ov: ov, writes: map[string][]byte{}}
	err := e.b.db.View(func(tx *bolt.Tx) error {
		s.base = newBoltStore(tx)
		return fn(s)
	})
	if err != nil {
		return err
	}
	st, err := e.x.openState(s.writes[string(stateKey)])
	if err != nil {
		return fmt.Errorf("index: relaxed update without a state: %w", err)
	}
	entry := e.x.marshalWAL(e.seq, walEntry{epoch: st.Epoch, writes: s.writes})
	n, err := walWrite(e.wal, entry)
	if err != nil {
		// Refused, and cut from the log: an entry after a torn one
		// would never be read back.
		if terr := e.wal.Truncate(e.walSize); terr != nil {
			return fmt.Errorf("index: write-ahead log: %w (and cutting it back: %v)", err, terr)
		}
		if _, serr := e.wal.Seek(e.walSize, io.SeekStart); serr != nil {
			return fmt.Errorf("index: write-ahead log: %w (and seeking back: %v)", err, serr)
		}
		return fmt.Errorf("index: write-ahead log: %w", err)
	}
	e.walSize += n
	w := make(map[string]*[]byte, len(s.writes))
	for k, v := range s.writes {
		w[k] = &v
	}
	next := ov.with(w)
	e.ov.Store(next)
	if next.n >= overlayMax {
		e.kickCommitter()
	} else if e.idle != nil {
		e.idle.Reset(e.quiet) // a timer's reset, not a goroutine's wake-up, per update
	}
	return nil
}

// view reads the overlay and the file's last commit as of one moment:
// an overlay and a file transaction that do not make one (consistent) are
// taken again, which happens only across a commit. Nothing here waits for
// a commit (a commit of a second's uploads took 110-170 ms, and every
// listing and open waited that long). An update needs no such care: it
// takes the overlay under mu, which a commit holds to capture its batch
// and again to drop it from the overlay once the file has it, so the
// update's overlay holds the whole batch whichever file it then reads.
func (e *relaxedEngine) view(fn func(store) error) error {
	for try := 0; ; try++ {
		ov := e.ov.Load()
		tx, err := e.b.db.Begin(false)
		if err != nil {
			return err
		}
		fileTx := tx.ID()
		if e.consistent(ov, fileTx) {
			defer tx.Rollback()
			return fn(&overlayStore{base: newBoltStore(tx), ov: ov})
		}
		tx.Rollback()
		if try == 100 {
			// Cannot happen (see consistent); fail rather than spin.
			return fmt.Errorf("index: no consistent view of the overlay (transaction %d over %d)", fileTx, ov.fileTx)
		}
	}
}

// consistent reports whether overlay ov over the file as of bbolt
// transaction fileTx shows the index as of one moment. Each commit (one
// at a time) takes the overlay (captured), writes it as transaction
// ov.fileTx+1, and then, under mu, replaces the overlay with what came
// since, over that transaction. So the file is at most one commit ahead
// of an overlay, and the pair is whole if the file is the overlay's, or
// the next one with the overlay made at or after that commit's capture
// (it holds the whole batch). An overlay taken just before a capture,
// with the file after that commit, would miss the updates in between:
// taken again, the overlay is at or after the capture.
func (e *relaxedEngine) consistent(ov *overlay, fileTx int) bool {
	if fileTx == ov.fileTx {
		return true
	}
	c := e.captured.Load()
	return fileTx == ov.fileTx+1 && c != nil && c.fileTx == ov.fileTx && ov.seq >= c.seq
}

// committer commits the overlay every window, when kicked (an overlay
// past overlayMax, updates pausing for quiet), and at stop.
func (e *relaxedEngine) committer() {
	defer close(e.done)
	t := time.NewTicker(e.window)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		case <-e.kick:
		}
		e.commit()
	}
}

// commit writes the overlay to the file in one transaction (fsynced),
// then drops from the overlay what it wrote and removes the logs it
// covered. After a failure the overlay and the logs stay, and the next
// commit tries again (with what came since).
func (e *relaxedEngine) commit() error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	e.mu.Lock()
	taken := e.ov.Load()
	ov := taken.flat()
	if len(ov) == 0 {
		e.mu.Unlock()
		return nil
	}
	covered := e.seq
	if err := e.rotate(e.seq + 1); err != nil {
		e.mu.Unlock()
		return err
	}
	e.captured.Store(&capture{fileTx: taken.fileTx, seq: taken.seq})
	e.mu.Unlock()

	var committedTx int
	err := e.b.update(func(s store) error {
		if e.testCommitErr != nil {
			return e.testCommitErr
		}
		committedTx = s.(boltStore).small.Tx().ID() // what views will see
		keys := make([]string, 0, len(ov))
		for k := range ov {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if err := putOrDelete(s, k, *ov[k]); err != nil {
				return err
			}
		}
		return nil
	})

	if err != nil {
		return fmt.Errorf("index: commit: %w", err)
	}
	// Dropped under mu, so that no update stores an overlay over the
	// file before this commit after it (views never wait for mu).
	e.mu.Lock()
	cur := e.ov.Load()
	next := map[string]*[]byte{}
	for k, v := range cur.flat() {
		if ov[k] != v { // written again since: not committed yet
			next[k] = v
		}
	}
	e.ov.Store(&overlay{base: next, n: len(next), fileTx: committedTx, seq: cur.seq + 1})
	e.mu.Unlock()
	files, _ := walFiles(e.path)
	for _, f := range files {
		if f.seq > covered {
			continue
		}
		// The newest log the commit covered becomes the spare (its pages
		// are the ones most likely still cached), unless there is one.
		if f.seq == covered {
			if _, err := os.Lstat(spareName(e.path)); errors.Is(err, fs.ErrNotExist) && os.Rename(f.name, spareName(e.path)) == nil {
				continue
			}
		}
		os.Remove(f.name)
	}
	return nil
}

// sync commits what the overlay holds now.
func (e *relaxedEngine) sync() error { return e.commit() }

func (e *relaxedEngine) close() error {
	if e.idle != nil {
		e.idle.Stop()
	}
	close(e.stop)
	<-e.done
	err := e.commit()
	e.mu.Lock()
	if e.wal != nil {
		e.wal.Close()
		if err == nil {
			os.Remove(e.wal.Name())
			os.Remove(spareName(e.path))
		}
	}
	e.mu.Unlock()
	if cerr := e.b.close(); err == nil {
		err = cerr
	}
	return err
}

// overlayStore is a transaction of a relaxed index: the file's last
// commit, the overlay over it, and (in an update) this update's writes
// over both.
type overlayStore struct {
	base   boltStore
	ov     *overlay
	writes map[string][]byte // nil in a view
}

func (s *overlayStore) get(sk []byte) ([]byte, error) {
	if v, ok := s.writes[string(sk)]; ok {
		return v, nil
	}
	if v, ok := s.ov.get(string(sk)); ok {
		return *v, nil
	}
	return s.base.get(sk)
}

func (s *overlayStore) put(sk, sealed []byte) error {
	if s.writes == nil {
		return errors.New("index: put in a view")
	}
	s.writes[string(sk)] = sealed // kept, as store.put allows: no copy of each inline blob
	return nil
}

func (s *overlayStore) delete(sk []byte) error {
	if s.writes == nil {
		return errors.New("index: delete in a view")
	}
	s.writes[string(sk)] = nil
	return nil
}

// scan merges the file's records with the overlay's and the update's,
// in key order, leaving out what they removed.
func (s *overlayStore) scan(prefix []byte, fn func(sk, sealed []byte) error) error {
	mine := map[string][]byte{}
	add := func(m map[string]*[]byte) {
		for k, v := range m {
			if strings.HasPrefix(k, string(prefix)) {
				mine[k] = *v
			}
		}
	}
	add(s.ov.base)
	for _, l := range s.ov.layers {
		add(l)
	}
	for k, v := range s.writes {
		if strings.HasPrefix(k, string(prefix)) {
			mine[k] = v
		}
	}
	return mergeScan(mine, func(f func(k, v []byte) error) error { return s.base.scan(prefix, f) },
		func(k string, v []byte) error { return fn([]byte(k), v) }, fn)
}
