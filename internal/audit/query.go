package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Filter selects records; zero fields match everything.
type Filter struct {
	User  string
	Path  string   // exactly this path (Path or Path2)
	Under string   // this directory or anything below it (Path or Path2)
	Ops   []string // any of these operations
	Since time.Time
	Until time.Time // exclusive
}

func (f *Filter) match(r *Record) bool {
	if f.User != "" && r.User != f.User {
		return false
	}
	if f.Path != "" && r.Path != f.Path && r.Path2 != f.Path {
		return false
	}
	if f.Under != "" && !under(r.Path, f.Under) && !under(r.Path2, f.Under) {
		return false
	}
	if len(f.Ops) > 0 && !slices.Contains(f.Ops, r.Op) {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	return true
}

func under(p, dir string) bool {
	if p == "" {
		return false
	}
	dir = path.Clean("/" + dir)
	p = path.Clean("/" + p)
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// Query streams the records of the trail in dir that match f to fn, in
// trail order. Every record read is authenticated and checked against the
// chain before it (a failure stops the query with an error naming the
// place); Query does not check the links between segments, the head or the
// anchor: Verify does. An incomplete last frame of the newest segment (being
// written) is not an error. Records are decrypted on all CPUs.
func Query(ctx context.Context, dir string, keys *Keys, f Filter, fn func(Record) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// The user prefilter: a record of user U holds `"user":"U"` exactly as
	// json.Marshal writes it, so records without it are skipped unparsed.
	var userNeedle []byte
	if f.User != "" {
		q, _ := json.Marshal(f.User)
		userNeedle = append([]byte(`"user":`), q...)
	}
	for i, n := range segs {
		if !f.Since.IsZero() && i+1 < len(segs) {
			if h, err := readHeader(keys, dir, segs[i+1]); err == nil && h.Created.Before(f.Since) {
				continue // every record of n is older than Since
			}
		}
		if !f.Until.IsZero() {
			if h, err := readHeader(keys, dir, n); err == nil && !h.Created.Before(f.Until) {
				break
			}
		}
		if err := querySegment(ctx, keys, dir, n, &f, userNeedle, i == len(segs)-1, fn); err != nil {
			return err
		}
	}
	return nil
}

// A batch of frames travels from the reader to a worker and back in order.
type batch struct {
	first  int64   // index of the first frame
	frames []byte  // the frames, back to back
	ends   []int   // end offset of each frame in frames
	prevs  []chain // chain value before each frame
	out    []Record
	err    error
	ready  chan struct{}
}

const batchFrames = 2048

func querySegment(ctx context.Context, keys *Keys, dir string, n uint64, f *Filter, userNeedle []byte, newest bool, fn func(Record) error) error {
	file, err := os.Open(filepath.Join(dir, segName(n)))
	if err != nil {
		return fmt.Errorf("audit: segment %d: %w", n, err)
	}
	defer file.Close()
	fr, err := newFrameReader(file)
	if err != nil {
		if newest && errors.Is(err, errTorn) {
			return nil
		}
		return fmt.Errorf("audit: segment %d: %w", n, err)
	}
	fb, err := fr.next()
	if err != nil {
		if newest && errors.Is(err, errTorn) {
			return nil
		}
		return fmt.Errorf("audit: segment %d header: %w", n, err)
	}
	_, c, err := keys.openHeader(n, fb)
	if err != nil {
		return fmt.Errorf("audit: segment %d %w", n, err)
	}

	workers := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	todo := make(chan *batch, workers)
	order := make(chan *batch, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pt []byte
			for b := range todo {
				start := 0
				for i, end := range b.ends {
					idx := b.first + int64(i)
					var err error
					pt, err = keys.openFrame(pt[:0], n, idx, b.prevs[i], b.frames[start:end], nil)
					start = end
					if err != nil {
						b.err = fmt.Errorf("audit: segment %d record %d: %w (run audit verify)", n, idx, err)
						break
					}
					if userNeedle != nil && !bytes.Contains(pt, userNeedle) {
						continue
					}
					var r Record
					if err := json.Unmarshal(pt, &r); err != nil {
						b.err = fmt.Errorf("audit: segment %d record %d: %w", n, idx, err)
						break
					}
					if f.match(&r) {
						b.out = append(b.out, r)
					}
				}
				close(b.ready)
			}
		}()
	}
	// Reader: split frames, chain them, hand out batches in order.
	var readErr error
	go func() {
		defer close(order)
		defer close(todo)
		idx := int64(1)
		for {
			b := &batch{first: idx, ready: make(chan struct{})}
			for len(b.ends) < batchFrames {
				fb, err := fr.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					if !(newest && errors.Is(err, errTorn)) {
						readErr = fmt.Errorf("audit: segment %d record %d: %w", n, idx, err)
					}
					break
				}
				b.prevs = append(b.prevs, c)
				c = c.next(fb)
				b.frames = append(b.frames, fb...)
				b.ends = append(b.ends, len(b.frames))
				idx++
			}
			if len(b.ends) == 0 {
				return
			}
			select {
			case order <- b:
			case <-ctx.Done():
				return
			}
			select {
			case todo <- b:
			case <-ctx.Done():
				close(b.ready) // the consumer waits for it
				return
			}
			if len(b.ends) < batchFrames {
				return
			}
		}
	}()
	var outErr error
	for b := range order {
		<-b.ready
		if outErr != nil {
			continue
		}
		if b.err != nil {
			outErr = b.err
			cancel()
			continue
		}
		for _, r := range b.out {
			if err := fn(r); err != nil {
				outErr = err
				cancel()
				break
			}
		}
	}
	wg.Wait()
	if outErr != nil {
		return outErr
	}
	return readErr
}
