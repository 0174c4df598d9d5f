package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

// clock is an injectable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testKeys(t testing.TB, dir string) (*Keys, *envelope.Keyring) {
	t.Helper()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeys(dir, kr, true)
	if err != nil {
		t.Fatal(err)
	}
	return k, kr
}

// trail writes n records (user u<i%3>, path /d/f<i>) over several segments
// and returns the directory and keys.
func trail(t testing.TB, n int, o Options) (string, *Keys, *clock) {
	t.Helper()
	dir := t.TempDir()
	k, _ := testKeys(t, dir)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = c.now
	if o.MaxSegmentBytes == 0 {
		o.MaxSegmentBytes = 2000
	}
	l, err := Open(dir, k, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l.Record(Record{User: fmt.Sprintf("u%d", i%3), Protocol: "sftp", Op: OpWrite, Path: fmt.Sprintf("/d/f%d", i), Result: ResultOK, Bytes: int64(i)})
		c.add(time.Second)
		if i%5 == 4 {
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, k, c
}

func mustVerify(t *testing.T, dir string, k *Keys) Report {
	t.Helper()
	rep, err := Verify(dir, k, VerifyOptions{})
	if err != nil {
		t.Fatalf("clean trail fails: %v", err)
	}
	return rep
}

// frames returns the byte ranges [start, end) of the frames of segment n.
func frames(t *testing.T, dir string, n uint64) (data []byte, spans [][2]int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, segName(n)))
	if err != nil {
		t.Fatal(err)
	}
	off := len(magic)
	for off+4 <= len(data) {
		l := int(binary.BigEndian.Uint32(data[off:]))
		spans = append(spans, [2]int{off, off + 4 + l})
		off += 4 + l
	}
	return data, spans
}

func write(t *testing.T, dir string, n uint64, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, segName(n)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func problems(t *testing.T, dir string, k *Keys) []Problem {
	t.Helper()
	_, err := Verify(dir, k, VerifyOptions{})
	var te *TamperError
	if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
		t.Fatalf("tampered trail: Verify = %v, want a TamperError", err)
	}
	return te.Problems
}

// expect checks that the first problem names segment seg, record rec, and
// that its reason contains word.
func expect(t *testing.T, ps []Problem, seg uint64, rec int64, word string) {
	t.Helper()
	for _, p := range ps {
		if p.Segment == seg && (p.Record == rec || rec == anyRec) && strings.Contains(p.Reason, word) {
			return
		}
	}
	t.Fatalf("want a problem at segment %d record %d (%q), got %v", seg, rec, word, ps)
}

func TestCleanTrailVerifies(t *testing.T) {
	dir, k, _ := trail(t, 60, Options{})
	rep := mustVerify(t, dir, k)
	// 60 records plus one audit.start? No: only what was recorded.
	if rep.Records != 60 || rep.Segments < 3 {
		t.Fatalf("report %+v: want 60 records over several segments", rep)
	}
}

func TestTamper(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		seg    uint64
		rec    int64
		word   string
	}{
		{"delete record", func(t *testing.T, dir string) {
			d, s := frames(t, dir, 2)
			write(t, dir, 2, append(d[:s[2][0]:s[2][0]], d[s[2][1]:]...))
		}, 2, 2, "authentication failed"},
		{"edit record", func(t *testing.T, dir string) {
			d, s := frames(t, dir, 2)
			d[s[3][1]-20] ^= 1
			write(t, dir, 2, d)
		}, 2, 3, "authentication failed"},
		{"reorder records", func(t *testing.T, dir string) {
			d, s := frames(t, dir, 2)
			a, b := d[s[1][0]:s[1][1]], d[s[2][0]:s[2][1]]
			out := append([]byte{}, d[:s[1][0]]...)
			out = append(out, b...)
			out = append(out, a...)
			out = append(out, d[s[2][1]:]...)
			write(t, dir, 2, out)
		}, 2, 1, "authentication failed"},
		{"truncate segment at a record boundary", func(t *testing.T, dir string) {
			d, s := frames(t, dir, 2)
			write(t, dir, 2, d[:s[len(s)-2][0]])
		}, 2, anyRec, "truncated"},
		{"truncate the newest segment", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			n := segs[len(segs)-1]
			d, s := frames(t, dir, n)
			write(t, dir, n, d[:s[len(s)-1][0]])
		}, newest, anyRec, "truncated"},
		{"drop a middle segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, segName(3)))
		}, 3, -1, "missing"},
		{"drop the first segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, segName(1)))
		}, 1, -1, "missing"},
		{"drop the newest segment", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			os.Remove(filepath.Join(dir, segName(segs[len(segs)-1])))
		}, newest + 1, -1, "missing"},
		{"edit a segment header", func(t *testing.T, dir string) {
			d, s := frames(t, dir, 3)
			d[s[0][1]-1] ^= 0x80
			write(t, dir, 3, d)
		}, 3, 0, "authentication failed"},
		{"swap two segments' names", func(t *testing.T, dir string) {
			a, _ := os.ReadFile(filepath.Join(dir, segName(2)))
			b, _ := os.ReadFile(filepath.Join(dir, segName(3)))
			write(t, dir, 2, b)
			write(t, dir, 3, a)
		}, 2, 0, "authentication failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, k, _ := trail(t, 60, Options{})
			tc.damage(t, dir)
			ps := problems(t, dir, k)
			seg := tc.seg
			if seg >= newest {
				segs, _ := listSegments(dir)
				if tc.name == "drop the newest segment" {
					seg = segs[len(segs)-1] + 1
				} else {
					seg = segs[len(segs)-1]
				}
			}
			expect(t, ps, seg, tc.rec, tc.word)
		})
	}
}

// Markers for TestTamper: the newest segment, and any record of it.
const (
	newest = 1 << 40
	anyRec = -2
)
