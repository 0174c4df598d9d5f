package audit

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Segment layout (docs/AUDIT.md, "Format"):
//
//	magic "securefsd-audit1\n" (17 bytes)
//	frames: length uint32 big-endian (of what follows), nonce [24], sealed JSON
//
// Frame 0 is the segmentHeader, frames 1.. are Records. Associated data of
// frame i of segment s: adPrefix || s (uint64) || i (uint64) || chain before
// the frame. chain after = SHA-256(chain before || length || nonce || sealed).
const (
	magic        = "securefsd-audit1\n"
	adPrefix     = "securefsd audit v1"
	nonceSize    = 24
	tagSize      = 16
	maxFrame     = 1 << 20 // a record is small; caps what a damaged length makes a reader allocate
	segSuffix    = ".seg"
	headFileName = "head"
	anchorName   = "anchor"
	chainSize    = sha256.Size
)

type chain [chainSize]byte

func (c chain) String() string { return fmt.Sprintf("%x", c[:]) }

func (c chain) next(frame []byte) chain {
	h := sha256.New()
	h.Write(c[:])
	h.Write(frame)
	var n chain
	h.Sum(n[:0])
	return n
}

func (c chain) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%x", c[:]), nil }
func (c *chain) UnmarshalText(b []byte) error {
	if len(b) != 2*chainSize {
		return errors.New("bad chain value")
	}
	_, err := hex.Decode(c[:], b)
	return err
}

// segmentHeader is frame 0 of every segment.
type segmentHeader struct {
	V       int       `json:"v"`
	Segment uint64    `json:"segment"`
	Created time.Time `json:"created"`
	// The previous segment: its final chain value, its number of records
	// and the size of its complete frames (a torn tail after a crash lies
	// beyond PrevBytes). All zero for the first segment of a trail.
	Prev        chain `json:"prev"`
	PrevRecords int64 `json:"prev_records"`
	PrevBytes   int64 `json:"prev_bytes"`
}

// position is a point in the chain: after Records records of Segment, the
// file being Bytes long, the chain value is Chain. The head and anchor
// files hold one, sealed.
type position struct {
	Segment uint64    `json:"segment"`
	Records int64     `json:"records"`
	Bytes   int64     `json:"bytes"`
	Chain   chain     `json:"chain"`
	Time    time.Time `json:"time"`
	// Removed (anchor only): segments up to this number were removed by
	// retention.
	Removed uint64 `json:"removed,omitempty"`
}

func segName(n uint64) string { return fmt.Sprintf("%020d%s", n, segSuffix) }

// listSegments returns the segment numbers present in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil || n == 0 {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

func ad(dst []byte, seg uint64, idx int64, prev chain) []byte {
	dst = append(dst, adPrefix...)
	dst = binary.BigEndian.AppendUint64(dst, seg)
	dst = binary.BigEndian.AppendUint64(dst, uint64(idx))
	return append(dst, prev[:]...)
}

// sealFrame appends the frame of plaintext (frame idx of segment seg, chain
// value prev before it) to dst.
func (k *Keys) sealFrame(dst []byte, seg uint64, idx int64, prev chain, plaintext []byte, adBuf []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(nonceSize+len(plaintext)+tagSize))
	var nonce [nonceSize]byte
	_, _ = rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	dst = k.aead.Seal(dst, nonce[:], plaintext, ad(adBuf[:0], seg, idx, prev))
	_ = start
	return dst
}

// openFrame authenticates and decrypts frame (length, nonce, sealed),
// appending the plaintext to dst.
func (k *Keys) openFrame(dst []byte, seg uint64, idx int64, prev chain, frame []byte, adBuf []byte) ([]byte, error) {
	body := frame[4:]
	if len(body) < nonceSize+tagSize {
		return nil, errAuth
	}
	out, err := k.aead.Open(dst, body[:nonceSize], body[nonceSize:], ad(adBuf[:0], seg, idx, prev))
	if err != nil {
		return nil, errAuth
	}
	return out, nil
}

var (
	errAuth  = errors.New("authentication failed")
	errTorn  = errors.New("incomplete frame at the end")
	errMagic = errors.New("not an audit segment (bad magic)")
)

// frameReader reads the frames of one segment file in order.
type frameReader struct {
	r   *bufio.Reader
	off int64 // bytes consumed (magic included)
	buf []byte
}

func newFrameReader(f io.Reader) (*frameReader, error) {
	fr := &frameReader{r: bufio.NewReaderSize(f, 1<<20)}
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(fr.r, m); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, errTorn
		}
		return nil, err
	}
	if string(m) != magic {
		return nil, errMagic
	}
	fr.off = int64(len(magic))
	return fr, nil
}

// next returns the next whole frame (length prefix included), valid until
// the following call; io.EOF at a clean end, errTorn for a partial frame.
func (fr *frameReader) next() ([]byte, error) {
	var l [4]byte
	n, err := io.ReadFull(fr.r, l[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		if n > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(l[:])
	if size < nonceSize+tagSize || size > maxFrame {
		return nil, fmt.Errorf("bad frame length %d", size)
	}
	need := 4 + int(size)
	if cap(fr.buf) < need {
		fr.buf = make([]byte, need, max(need, 4096))
	}
	fr.buf = fr.buf[:need]
	copy(fr.buf, l[:])
	if _, err := io.ReadFull(fr.r, fr.buf[4:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return nil, errTorn
		}
		return nil, err
	}
	fr.off += int64(need)
	return fr.buf, nil
}

// readSealed reads a small sealed file (head, anchor): one frame with
// segment number 0, index 0 and a chain value derived from the name.
func (k *Keys) readSealed(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if len(b) < 4+nonceSize+tagSize || int(binary.BigEndian.Uint32(b))+4 != len(b) {
		return fmt.Errorf("%s: %w", name, errAuth)
	}
	pt, err := k.openFrame(nil, 0, 0, sha256.Sum256([]byte(name)), b, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return json.Unmarshal(pt, v)
}

// writeSealed replaces a small sealed file atomically and durably.
func (k *Keys) writeSealed(dir, name string, v any) error {
	pt, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b := k.sealFrame(nil, 0, 0, sha256.Sum256([]byte(name)), pt, nil)
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// openHeader authenticates frame 0 of segment n and returns the header and
// the chain value after it.
func (k *Keys) openHeader(n uint64, frame []byte) (segmentHeader, chain, error) {
	var hdr segmentHeader
	// Frame 0's AD has a zero chain value: the Prev it continues from is
	// in its sealed text (authenticated alike), and the chain after it is
	// SHA-256(Prev || frame), so it is bound all the same.
	pt, err := k.openFrame(nil, n, 0, chain{}, frame, nil)
	if err != nil {
		return hdr, chain{}, fmt.Errorf("header: %w", err)
	}
	if err := json.Unmarshal(pt, &hdr); err != nil {
		return hdr, chain{}, fmt.Errorf("header: %w", err)
	}
	if hdr.V != 1 {
		return hdr, chain{}, fmt.Errorf("header: version %d", hdr.V)
	}
	if hdr.Segment != n {
		return hdr, chain{}, fmt.Errorf("header names segment %d", hdr.Segment)
	}
	return hdr, hdr.Prev.next(frame), nil
}
