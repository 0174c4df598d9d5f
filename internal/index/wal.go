package index

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The write-ahead log of a relaxed index (Options.Relaxed, docs/FORMAT.md
// 16, "Write-ahead log"): files PATH.wal-SEQ (SEQ 16 hex digits), each a
// run of entries, one per Update:
//
//	u32be len(body) ‖ body ‖ HMAC-SHA256(K_wal, walMACPrefix ‖ u64be SEQ ‖ body)
//	body = u64be epoch ‖ u32be n ‖ n × (u16be len(SK) ‖ SK ‖ u32be len(V) ‖ V)
//
// V is the record's sealed value as the index file stores it, or absent
// (length walRemoved) for a removal; epoch is the one the Update's state
// record holds. Nothing in it is plaintext: it is the index's own records.
// SEQ, the file's own number, binds each entry to its file: a log may be
// a reused file (relaxedEngine.rotate), and what it held before must not
// read as entries of the new one. Entries written before 2026-12-05 have
// no SEQ in their MAC; a log of such a version is still read.
const (
	labelWAL     = "securefsd v2 wal"
	walMACPrefix = "securefsd v2 wal entry "
	walRemoved   = 0xFFFFFFFF
	// maxWALEntry bounds one entry when reading (an Update's writes are
	// held in memory anyway; this only refuses a damaged length).
	maxWALEntry = 1 << 30
)

// walEntry is one Update's writes: the final value of each stored key it
// wrote (nil: removed).
type walEntry struct {
	epoch  uint64
	writes map[string][]byte
}

// walMAC appends to dst the MAC of the entry body made of parts, in the
// log file seq (nil: an entry of a version before the file number was
// part of the MAC).
func (x *Index) walMAC(dst []byte, seq *uint64, parts ...[]byte) []byte {
	m := x.walHash.new()
	m.Write([]byte(walMACPrefix))
	if seq != nil {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], *seq)
		m.Write(b[:])
	}
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(dst)
}

// walCopyMax is the longest value marshalWAL copies into its frame; a
// longer one (a file's inline content, up to 65 KiB) is written to the log
// from where it is (walWrite), not copied once more on its way.
const walCopyMax = 512

// marshalWAL encodes an entry, keys in order, as the pieces of one write:
// the entry is their concatenation. Each piece is a part of one frame
// buffer (lengths, keys, short values, the MAC) or a long value itself.
func (x *Index) marshalWAL(seq uint64, e walEntry) [][]byte {
	keys := make([]string, 0, len(e.writes))
	size, frameSize, long := 8+4, 4+8+4+sha256.Size, 0
	for k, v := range e.writes {
		keys = append(keys, k)
		size += 2 + len(k) + 4 + len(v)
		frameSize += 2 + len(k) + 4
		if len(v) > walCopyMax {
			long++
		} else {
			frameSize += len(v)
		}
	}
	slices.Sort(keys)
	// Sized so that appending never moves it: pieces point into it.
	b := make([]byte, 4, frameSize)
	binary.BigEndian.PutUint32(b, uint32(size))
	b = binary.BigEndian.AppendUint64(b, e.epoch)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	pieces, start := make([][]byte, 0, 2*long+1), 0
	for _, k := range keys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
		v := e.writes[k]
		switch {
		case v == nil:
			b = binary.BigEndian.AppendUint32(b, walRemoved)
		case len(v) > walCopyMax:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			pieces = append(pieces, b[start:], v)
			start = len(b)
		default:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	all := append(pieces, b[start:])
	// The MAC covers the body: every piece, less the length in front.
	b = x.walMAC(b, &seq, append([][]byte{all[0][4:]}, all[1:]...)...)
	return append(pieces, b[start:])
}

// errWALEnd ends the reading of a log: a torn or damaged entry, or the
// end. What follows it is not applied.
var errWALEnd = errors.New("index: end of the write-ahead log")

// readWAL reads the next entry of r, the log file seq.
func (x *Index) readWAL(r *bufio.Reader, seq uint64) (walEntry, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return walEntry{}, errWALEnd
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 12 || n > maxWALEntry {
		return walEntry{}, errWALEnd
	}
	// Read as it comes, not into a buffer of the length read: past the
	// last entry of a reused log (relaxedEngine.rotate) lies what the file
	// held before, and a length read there can be anything up to the
	// limit.
	body, err := io.ReadAll(io.LimitReader(r, int64(n)+sha256.Size))
	if err != nil || len(body) != int(n)+sha256.Size {
		return walEntry{}, errWALEnd
	}
	body, mac := body[:n], body[n:]
	if !hmac.Equal(mac, x.walMAC(nil, &seq, body)) && !hmac.Equal(mac, x.walMAC(nil, nil, body)) {
		return walEntry{}, errWALEnd
	}
	e := walEntry{epoch: binary.BigEndian.Uint64(body), writes: map[string][]byte{}}
	count := binary.BigEndian.Uint32(body[8:])
	b := body[12:]
	for range count {
		if len(b) < 2 {
			return walEntry{}, errWALEnd
		}
		kl := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+kl+4 {
			return walEntry{}, errWALEnd
		}
		k := string(b[2 : 2+kl])
		vl := binary.BigEndian.Uint32(b[2+kl:])
		b = b[2+kl+4:]
		if vl == walRemoved {
			e.writes[k] = nil
			continue
		}
		if uint64(len(b)) < uint64(vl) {
			return walEntry{}, errWALEnd
		}
		e.writes[k] = bytes.Clone(b[:vl])
		b = b[vl:]
	}
	if len(b) != 0 {
		return walEntry{}, errWALEnd
	}
	return e, nil
}

// walFiles returns the log files of the index at path, oldest first.
func walFiles(path string) ([]walFile, error) {
	names, err := filepath.Glob(path + ".wal-*")
	if err != nil {
		return nil, err
	}
	var out []walFile
	for _, n := range names {
		seq, err := strconv.ParseUint(strings.TrimPrefix(n, path+".wal-"), 16, 64)
		if err != nil {
			continue // not ours
		}
		out = append(out, walFile{seq: seq, name: n})
	}
	slices.SortFunc(out, func(a, b walFile) int { return cmp.Compare(a.seq, b.seq) })
	return out, nil
}

type walFile struct {
	seq  uint64
	name string
}

func walName(path string, seq uint64) string { return fmt.Sprintf("%s.wal-%016x", path, seq) }

// replayWAL applies the logs beside the index file at path that are ahead
// of it (a process that stopped without committing them), in one
// transaction, then removes the logs. It stops at the first entry that is
// torn, damaged or not the next epoch (a power cut cut the log short):
// what follows it is lost, as the relaxed mode's window allows. It returns
// the number of entries applied and the last log's sequence number.
func (x *Index) replayWAL(e *boltEngine, path string) (applied int, lastSeq uint64, err error) {
	files, err := walFiles(path)
	if err != nil || len(files) == 0 {
		return 0, 0, err
	}
	lastSeq = files[len(files)-1].seq
	st, err := x.currentState()
	if err != nil {
		return 0, 0, err
	}
	next := st.Epoch + 1
	writes := map[string][]byte{}
read:
	for _, f := range files {
		fh, err := os.Open(f.name)
		if err != nil {
			return 0, 0, fmt.Errorf("index: write-ahead log: %w", err)
		}
		r := bufio.NewReaderSize(fh, 1<<20)
		for {
			ent, err := x.readWAL(r, f.seq)
			if err != nil {
				fh.Close()
				if f.seq != lastSeq {
					// A file ends where the next begins; a short one
					// before the last is a cut the epochs will show.
					break
				}
				break read
			}
			switch {
			case ent.epoch < next:
				continue // committed before the process stopped
			case ent.epoch > next:
				fh.Close()
				break read
			}
			maps.Copy(writes, ent.writes)
			next++
			applied++
		}
	}
	if applied > 0 {
		err = e.update(func(s store) error {
			for k, v := range writes {
				if err := putOrDelete(s, k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("index: apply the write-ahead log: %w", err)
		}
	}
	for _, f := range files {
		if err := os.Remove(f.name); err != nil {
			return applied, lastSeq, fmt.Errorf("index: write-ahead log: %w", err)
		}
	}
	return applied, lastSeq, nil
}

// putOrDelete stores sealed record v under stored key k, or deletes k when
// v is nil (how the overlay and the log record a removal).
func putOrDelete(s store, k string, v []byte) error {
	if v == nil {
		return s.delete([]byte(k))
	}
	return s.put([]byte(k), v)
}
