package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Problem is one place where the trail is not what was written. Record is
// the frame index within the segment (0 is the segment header, 1 the first
// record), or -1 when the whole segment is at fault.
type Problem struct {
	Segment uint64
	Record  int64
	Reason  string
}

func (p Problem) String() string {
	if p.Record < 0 {
		return fmt.Sprintf("segment %d: %s", p.Segment, p.Reason)
	}
	if p.Record == 0 {
		return fmt.Sprintf("segment %d header: %s", p.Segment, p.Reason)
	}
	return fmt.Sprintf("segment %d record %d: %s", p.Segment, p.Record, p.Reason)
}

// ErrTampered is matched (errors.Is) by the error Verify returns when the
// trail was changed; errors.As to *TamperError for the places.
var ErrTampered = errors.New("audit: the trail was tampered with")

// TamperError lists the problems Verify found, in trail order.
type TamperError struct{ Problems []Problem }

func (e *TamperError) Error() string {
	var b strings.Builder
	b.WriteString(ErrTampered.Error())
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// Report is what a Verify found besides tampering.
type Report struct {
	Segments      int
	Records       int64 // authenticated records
	Hashed        int64 // records before Since, chained but not decrypted
	First, Last   time.Time
	Notes         []string // torn tails after a crash, a tail being written
	AnchoredAfter uint64   // segments up to this one were removed by retention
}

// VerifyOptions: Since skips decrypting segments that end before it (their
// frames are still hashed into the chain, and the next header is checked).
type VerifyOptions struct {
	Since time.Time
}

// Verify checks the whole trail in dir: every header and, from Since on,
// every record is authenticated; the chain runs unbroken from the genesis
// or the retention anchor to the head. It returns a *TamperError (matching
// ErrTampered) naming every place found, or another error if the trail
// cannot be read at all.
func Verify(dir string, keys *Keys, o VerifyOptions) (Report, error) {
	var rep Report
	var probs []Problem
	add := func(seg uint64, rec int64, format string, args ...any) {
		probs = append(probs, Problem{seg, rec, fmt.Sprintf(format, args...)})
	}
	segs, err := listSegments(dir)
	if err != nil {
		return rep, fmt.Errorf("audit: %w", err)
	}
	var head, anchor position
	haveHead, haveAnchor := false, false
	if err := keys.readSealed(dir, headFileName, &head); err == nil {
		haveHead = true
	} else if !errors.Is(err, os.ErrNotExist) {
		add(0, -1, "head file: %v", err)
	} else if len(segs) > 0 {
		add(segs[len(segs)-1], -1, "head file missing")
	}
	if err := keys.readSealed(dir, anchorName, &anchor); err == nil {
		haveAnchor = true
		rep.AnchoredAfter = anchor.Removed
	} else if !errors.Is(err, os.ErrNotExist) {
		add(0, -1, "anchor file: %v", err)
	}
	if len(segs) == 0 {
		if haveHead {
			add(head.Segment, -1, "missing: no segment left, the head names segment %d", head.Segment)
		}
		return rep, tamper(probs)
	}
	// Where the kept chain starts.
	want := segmentHeader{Segment: 1}
	if haveAnchor {
		want = segmentHeader{Segment: anchor.Segment, Prev: anchor.Chain, PrevRecords: anchor.Records, PrevBytes: anchor.Bytes}
		for len(segs) > 0 && segs[0] < anchor.Segment {
			rep.Notes = append(rep.Notes, fmt.Sprintf("segment %d: before the retention anchor (removal interrupted), not checked", segs[0]))
			segs = segs[1:]
		}
		if len(segs) == 0 {
			add(anchor.Segment, -1, "missing: the retention anchor starts the chain here")
			return rep, tamper(probs)
		}
	}
	var prev *segState // the previous segment present
	for i, n := range segs {
		if n != want.Segment {
			if n < want.Segment { // cannot happen: segs is sorted and unique
				continue
			}
			for m := want.Segment; m < n; m++ {
				add(m, -1, "missing (dropped)")
			}
		}
		decrypt := true
		if !o.Since.IsZero() && i+1 < len(segs) {
			if h, err := readHeader(keys, dir, segs[i+1]); err == nil && h.Created.Before(o.Since) {
				decrypt = false
			}
		}
		st := checkSegment(keys, dir, n, decrypt, &rep, add)
		rep.Segments++
		if st.hdrOK {
			h := st.hdr
			switch {
			case n != want.Segment:
				// already reported as missing segments in between
			case h.PrevRecords != want.PrevRecords || h.PrevBytes != want.PrevBytes || h.Prev != want.Prev:
				if prev != nil && prev.n == n-1 {
					describeLink(prev, h, add)
				} else {
					add(n, 0, "does not continue the retention anchor (chain %s, anchor %s)", h.Prev, want.Prev)
				}
			}
			if prev != nil && prev.n == n-1 && h.Prev == want.Prev && prev.size > h.PrevBytes {
				if prev.torn {
					rep.Notes = append(rep.Notes, fmt.Sprintf("segment %d: torn tail of %d bytes after a crash", prev.n, prev.size-h.PrevBytes))
				}
			}
		}
		if prev != nil && prev.torn && (!st.hdrOK || st.hdr.PrevBytes != prev.complete) {
			add(prev.n, prev.records+1, "incomplete frame at the end not accounted for by segment %d", n)
		}
		want = segmentHeader{Segment: n + 1, Prev: st.final, PrevRecords: st.records, PrevBytes: st.complete}
		if haveHead && n == head.Segment {
			switch {
			case st.records < head.Records:
				add(n, st.records+1, "truncated or rolled back: has %d records, the head file names %d", st.records, head.Records)
			case st.chainAt(head.Records) != head.Chain:
				add(n, head.Records, "rolled back or replaced: chain differs from the head file")
			}
		}
		prev = st
	}
	last := segs[len(segs)-1]
	if haveHead && head.Segment > last {
		for m := last + 1; m <= head.Segment; m++ {
			add(m, -1, "missing (dropped at the end; the head file names segment %d)", head.Segment)
		}
	}
	if prev != nil && prev.torn {
		rep.Notes = append(rep.Notes, fmt.Sprintf("segment %d: incomplete last frame (being written, or a crash)", prev.n))
	}
	return rep, tamper(probs)
}

func tamper(p []Problem) error {
	if len(p) == 0 {
		return nil
	}
	return &TamperError{Problems: p}
}

// describeLink explains why header h does not continue segment prev.
func describeLink(prev *segState, h segmentHeader, add func(uint64, int64, string, ...any)) {
	switch {
	case prev.records < h.PrevRecords:
		add(prev.n, prev.records+1, "truncated or rolled back: has %d records, segment %d says %d", prev.records, h.Segment, h.PrevRecords)
	case prev.records > h.PrevRecords:
		add(prev.n, h.PrevRecords+1, "records appended after the segment was closed (segment %d says %d records)", h.Segment, h.PrevRecords)
	default:
		add(prev.n, -1, "changed or replaced: its chain does not match what segment %d continues from", h.Segment)
	}
}

// segState is what checking one segment found.
type segState struct {
	n        uint64
	hdr      segmentHeader
	hdrOK    bool
	records  int64
	complete int64 // bytes of complete frames
	size     int64
	torn     bool
	final    chain
	chains   []chain // chain after each record (index 0: after the header)
}

func (s *segState) chainAt(records int64) chain {
	if records < 0 || records >= int64(len(s.chains)) {
		return chain{}
	}
	return s.chains[records]
}

func checkSegment(keys *Keys, dir string, n uint64, decrypt bool, rep *Report, add func(uint64, int64, string, ...any)) *segState {
	st := &segState{n: n}
	f, err := os.Open(filepath.Join(dir, segName(n)))
	if err != nil {
		add(n, -1, "cannot open: %v", err)
		return st
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		st.size = fi.Size()
	}
	fr, err := newFrameReader(f)
	if err != nil {
		add(n, 0, "%v", err)
		return st
	}
	fb, err := fr.next()
	if err != nil {
		add(n, 0, "%v", err)
		return st
	}
	st.hdr, st.final, err = keys.openHeader(n, fb)
	if err != nil {
		add(n, 0, "%v", err)
		return st
	}
	st.hdrOK = true
	st.complete = fr.off
	st.chains = append(st.chains, st.final)
	var pt []byte
	failed := int64(0)
	var rec struct {
		Time time.Time `json:"time"`
	}
	for idx := int64(1); ; idx++ {
		fb, err := fr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) {
			st.torn = true
			break
		}
		if err != nil {
			add(n, idx, "%v", err)
			break
		}
		if decrypt && failed == 0 {
			pt, err = keys.openFrame(pt[:0], n, idx, st.final, fb, nil)
			if err != nil {
				add(n, idx, "authentication failed (record edited, deleted, inserted or moved)")
				failed = idx
			} else {
				rep.Records++
				rec.Time = time.Time{}
				if jerr := json.Unmarshal(pt, &rec); jerr == nil {
					if rep.First.IsZero() {
						rep.First = rec.Time
					}
					rep.Last = rec.Time
				}
			}
		} else if !decrypt {
			rep.Hashed++
		}
		st.final = st.final.next(fb)
		st.chains = append(st.chains, st.final)
		st.records = idx
		st.complete = fr.off
	}
	if failed > 0 && st.records > failed {
		add(n, -1, "records %d to %d not checked after the first failure", failed+1, st.records)
	}
	return st
}
