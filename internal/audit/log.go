package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Options configure a Log. The zero value works.
type Options struct {
	// FlushInterval bounds how long an accepted record may wait before it is
	// written and fsynced (the durability window; a clean Close loses
	// nothing). Zero: 1s.
	FlushInterval time.Duration
	// MaxSegmentBytes and MaxSegmentAge start a new segment once the current
	// one is this large or old. Zero: 64 MiB and 24h.
	MaxSegmentBytes int64
	MaxSegmentAge   time.Duration
	// Retention removes whole segments whose every record is older than
	// this. Zero: keep everything.
	Retention time.Duration
	// MaxPending bounds the records waiting for a flush; Record blocks
	// while it is reached (records are never dropped). Zero: 65536.
	MaxPending int
	// Forward, when set, receives each record as one JSON line (newline
	// included) after it was written to the trail: syslog, stdout.
	Forward func(line []byte) error
	// Now is the clock; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil: discard
}

// Events of the operational log about the trail itself.
const (
	EventWriteFailed = "audit.write_failed"
	EventRecovered   = "audit.recovered"
	EventRetention   = "audit.retention"
	EventForward     = "audit.forward_failed"
)

// Log appends records to the trail in dir. Record is safe for concurrent
// use; records are sealed and written by one goroutine in batches.
type Log struct {
	dir  string
	keys *Keys
	o    Options
	log  *slog.Logger

	mu      sync.Mutex
	pending [][]byte // marshalled records, in arrival order
	space   *sync.Cond
	kick    chan struct{}
	syncReq chan chan error
	closed  bool
	err     error // the last write failure, nil once a write succeeds again
	done    chan struct{}

	// owned by the writer goroutine
	f        *os.File
	seg      uint64
	created  time.Time
	idx      int64 // frames written in this segment (header included)
	size     int64
	head     chain
	buf      []byte
	adBuf    []byte
	writeErr error
}

// Open starts a Log on dir (created 0700 if missing). It always starts a
// new segment, chained to the last complete frame of the newest one (a torn
// tail left by a crash stays where it is, named in the new header), so it
// never rewrites a byte already written.
func Open(dir string, keys *Keys, o Options) (*Log, error) {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxSegmentBytes <= 0 {
		o.MaxSegmentBytes = 64 << 20
	}
	if o.MaxSegmentAge <= 0 {
		o.MaxSegmentAge = 24 * time.Hour
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 65536
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Log{dir: dir, keys: keys, o: o, log: o.Logger,
		kick: make(chan struct{}, 1), syncReq: make(chan chan error), done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.space = sync.NewCond(&l.mu)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var hdr segmentHeader
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		pos, err := lastPosition(keys, dir, last)
		if err != nil {
			return nil, fmt.Errorf("audit: segment %d: %w", last, err)
		}
		hdr = segmentHeader{Segment: last + 1, Prev: pos.Chain, PrevRecords: pos.Records, PrevBytes: pos.Bytes}
	} else {
		hdr.Segment = 1
		var a position
		if err := keys.readSealed(dir, anchorName, &a); err == nil {
			// Everything was removed by retention: continue from the anchor.
			hdr = segmentHeader{Segment: a.Segment, Prev: a.Chain, PrevRecords: a.Records, PrevBytes: a.Bytes}
		}
	}
	if err := l.startSegment(hdr); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := l.retain(); err != nil {
		l.log.Error("audit: retention failed", "event", EventRetention, "err", err)
	}
	go l.run()
	return l, nil
}

// lastPosition returns where segment n's complete frames end: its header
// is authenticated (the chain starts at its Prev), the records are only
// hashed (Verify authenticates them).
func lastPosition(keys *Keys, dir string, n uint64) (position, error) {
	f, err := os.Open(filepath.Join(dir, segName(n)))
	if err != nil {
		return position{}, err
	}
	defer f.Close()
	fr, err := newFrameReader(f)
	if err != nil {
		return position{}, err
	}
	fb, err := fr.next()
	if err != nil {
		return position{}, fmt.Errorf("header: %w", err)
	}
	hdr, c, err := keys.openHeader(n, fb)
	if err != nil {
		return position{}, err
	}
	pos := position{Segment: n, Bytes: fr.off, Chain: c}
	_ = hdr
	for {
		fb, err := fr.next()
		if err == io.EOF || errors.Is(err, errTorn) {
			return pos, nil
		}
		if err != nil {
			return pos, err
		}
		pos.Chain = pos.Chain.next(fb)
		pos.Records++
		pos.Bytes = fr.off
	}
}

// startSegment creates segment hdr.Segment and writes its header, durably.
func (l *Log) startSegment(hdr segmentHeader) error {
	now := l.o.Now().UTC()
	hdr.V = 1
	hdr.Created = now
	path := filepath.Join(l.dir, segName(hdr.Segment))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	pt, err := json.Marshal(hdr)
	if err != nil {
		f.Close()
		return err
	}
	b := append([]byte(magic), l.keys.sealFrame(nil, hdr.Segment, 0, chain{}, pt, nil)...)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return err
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.seg, l.created, l.idx, l.size = f, hdr.Segment, now, 1, int64(len(b))
	l.head = hdr.Prev.next(b[len(magic):])
	return l.writeHead()
}

func (l *Log) writeHead() error {
	return l.keys.writeSealed(l.dir, headFileName, position{
		Segment: l.seg, Records: l.idx - 1, Bytes: l.size, Chain: l.head, Time: l.o.Now().UTC()})
}

// Record adds r to the trail: it fills V and, if zero, Time, and returns
// once the record is queued (blocking only while MaxPending records wait).
// Write failures are reported by the operational log and Err, not here:
// an operation that already happened is never undone for its record.
func (l *Log) Record(r Record) {
	r.V = SchemaVersion
	if r.Time.IsZero() {
		r.Time = l.o.Now()
	}
	r.Time = r.Time.UTC()
	b, err := json.Marshal(r)
	if err != nil { // a Record always marshals; keep the invariant loud
		panic("audit: marshal record: " + err.Error())
	}
	l.mu.Lock()
	for len(l.pending) >= l.o.MaxPending && !l.closed {
		l.space.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		l.log.Error("audit: record after close dropped", "event", EventWriteFailed, "op", r.Op)
		return
	}
	l.pending = append(l.pending, b)
	if len(l.pending) >= l.o.MaxPending/2 {
		// Under mu: Close closes kick only after setting closed under mu.
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
}

func (l *Log) pendingLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// Err returns the last write failure, or nil if the last write succeeded.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Query writes what has been recorded so far and then streams the
// records matching f, as the package's Query does on the log's directory:
// a running server's view of its own trail, up to this moment.
func (l *Log) Query(ctx context.Context, f Filter, fn func(Record) error) error {
	if err := l.Sync(); err != nil {
		return err
	}
	return Query(ctx, l.dir, l.keys, f, fn)
}

// Sync writes and fsyncs every record accepted so far.
func (l *Log) Sync() error {
	ch := make(chan error, 1)
	select {
	case l.syncReq <- ch:
		return <-ch
	case <-l.done:
		return errors.New("audit: log closed")
	}
}

// Close writes every pending record, durably, and stops the writer.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.space.Broadcast()
	l.mu.Unlock()
	close(l.kick)
	<-l.done
	err := l.Err()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) run() {
	defer close(l.done)
	t := time.NewTicker(l.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.flush()
		case _, ok := <-l.kick:
			if !ok {
				// Closing: write everything, including what retention
				// queued while writing, unless writing fails.
				for l.pendingLen() > 0 && l.flush() == nil {
				}
				return
			}
			l.flush()
		case ch := <-l.syncReq:
			ch <- l.flush()
		}
	}
}

// flush writes the pending records in one write and one fsync. On failure
// the records stay pending (in order) and are tried again at the next tick:
// the failure is logged at error level each time and reported by Err.
func (l *Log) flush() error {
	l.mu.Lock()
	batch := l.pending
	l.mu.Unlock()
	if len(batch) == 0 {
		return l.Err()
	}
	written, err := l.write(batch)
	l.mu.Lock()
	if written {
		l.pending = l.pending[len(batch):]
		if len(l.pending) == 0 {
			l.pending = nil // let the batch's array go
		}
		l.space.Broadcast()
	}
	if l.err != nil && err == nil {
		l.log.Warn("audit: writing works again", "event", EventRecovered)
	}
	l.err = err
	l.mu.Unlock()
	if err != nil {
		if written {
			l.log.Error("audit: records written, but the head file could not be updated: until it is, cutting the newest records would go unnoticed",
				"event", EventWriteFailed, "err", err)
		} else {
			l.log.Error("audit: cannot write the audit trail; records are kept in memory and retried",
				"event", EventWriteFailed, "pending", len(batch), "err", err)
		}
	}
	if !written {
		return err
	}
	if l.o.Forward != nil {
		for _, b := range batch {
			if ferr := l.o.Forward(append(b, '\n')); ferr != nil {
				l.log.Error("audit: forwarding failed", "event", EventForward, "err", ferr)
				break
			}
		}
	}
	return err
}

// write appends batch to the trail; written reports whether the records
// are durably in a segment (a failure to update the head file after that
// is still an error, but the records must not be written twice).
func (l *Log) write(batch [][]byte) (written bool, err error) {
	if l.writeErr != nil {
		// The segment may hold a partial write: never append after it.
		// Start a new segment chained to what is known to be complete.
		hdr := segmentHeader{Segment: l.seg + 1, Prev: l.head, PrevRecords: l.idx - 1, PrevBytes: l.size}
		if err := l.startSegment(hdr); err != nil {
			return false, err
		}
		l.writeErr = nil
	}
	now := l.o.Now()
	if l.size >= l.o.MaxSegmentBytes || now.Sub(l.created) >= l.o.MaxSegmentAge {
		hdr := segmentHeader{Segment: l.seg + 1, Prev: l.head, PrevRecords: l.idx - 1, PrevBytes: l.size}
		if err := l.startSegment(hdr); err != nil {
			return false, fmt.Errorf("new segment: %w", err)
		}
		if err := l.retain(); err != nil {
			l.log.Error("audit: retention failed", "event", EventRetention, "err", err)
		}
	}
	buf := l.buf[:0]
	c, idx := l.head, l.idx
	for _, b := range batch {
		start := len(buf)
		buf = l.keys.sealFrame(buf, l.seg, idx, c, b, l.adBuf[:0])
		c = c.next(buf[start:])
		idx++
	}
	l.buf = buf
	if _, err := l.f.Write(buf); err != nil {
		l.writeErr = err
		return false, err
	}
	if err := l.f.Sync(); err != nil {
		l.writeErr = err
		return false, err
	}
	l.head, l.idx, l.size = c, idx, l.size+int64(len(buf))
	if cap(l.buf) > 4<<20 {
		l.buf = nil
	}
	if err := l.writeHead(); err != nil {
		return true, fmt.Errorf("head: %w", err)
	}
	return true, nil
}

// retain removes segments all of whose records are older than Retention:
// segment k goes when segment k+1 was created before the cut-off. It first
// writes the anchor (where the kept chain starts), then a record saying
// what it removes, then removes them, oldest first.
func (l *Log) retain() error {
	if l.o.Retention <= 0 {
		return nil
	}
	cut := l.o.Now().Add(-l.o.Retention)
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	var drop []uint64
	var keepFirst segmentHeader
	for i := 0; i+1 < len(segs); i++ {
		hdr, err := readHeader(l.keys, l.dir, segs[i+1])
		if err != nil {
			return fmt.Errorf("segment %d: %w", segs[i+1], err)
		}
		if !hdr.Created.Before(cut) {
			break
		}
		drop = append(drop, segs[i])
		keepFirst = hdr
	}
	if len(drop) == 0 {
		return nil
	}
	a := position{Segment: keepFirst.Segment, Records: keepFirst.PrevRecords, Bytes: keepFirst.PrevBytes,
		Chain: keepFirst.Prev, Time: l.o.Now().UTC(), Removed: drop[len(drop)-1]}
	if err := l.keys.writeSealed(l.dir, anchorName, a); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	for _, n := range drop {
		if err := os.Remove(filepath.Join(l.dir, segName(n))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	detail := fmt.Sprintf("removed segments %d-%d, kept from %d (chain %s)", drop[0], drop[len(drop)-1], keepFirst.Segment, keepFirst.Prev)
	l.log.Info("audit: retention", "event", EventRetention, "detail", detail)
	// Queued, not written here: retain runs on the writer goroutine.
	l.mu.Lock()
	b, _ := json.Marshal(Record{V: SchemaVersion, Time: l.o.Now().UTC(), Protocol: "audit", Op: OpAuditRetain, Result: ResultOK, Detail: detail})
	l.pending = append(l.pending, b)
	l.mu.Unlock()
	return syncDir(l.dir)
}

func readHeader(keys *Keys, dir string, n uint64) (segmentHeader, error) {
	f, err := os.Open(filepath.Join(dir, segName(n)))
	if err != nil {
		return segmentHeader{}, err
	}
	defer f.Close()
	fr, err := newFrameReader(f)
	if err != nil {
		return segmentHeader{}, err
	}
	fb, err := fr.next()
	if err != nil {
		return segmentHeader{}, fmt.Errorf("header: %w", err)
	}
	hdr, _, err := keys.openHeader(n, fb)
	return hdr, err
}
