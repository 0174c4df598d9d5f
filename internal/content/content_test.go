package content

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/envelope"
)

// Small segments (2 chunks, 128 KiB) so that tests cross many boundaries.
const testChunks = 2

type env struct {
	dir   string
	blobs *blob.Dir
	o     Options
}

func newEnv(t *testing.T) *env {
	t.Helper()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "blobs")
	d, err := blob.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &env{dir: dir, blobs: d, o: Options{Keyring: kr, SegmentChunks: testChunks}}
}

func (e *env) open(t *testing.T, inode [InodeIDSize]byte, l Layout, gen uint64) *File {
	t.Helper()
	f, err := Open(DirBlobs{e.blobs}, inode, l, gen, e.o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// commit commits f, deletes its garbage (as the collector would) and
// closes it.
func (e *env) commit(t *testing.T, f *File) Layout {
	t.Helper()
	l, garbage, err := f.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, id := range garbage {
		if err := e.blobs.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (e *env) blobPath(id blob.ID) string {
	return filepath.Join(e.dir, id.String()[:2], id.String())
}

func readAll(t *testing.T, f *File) []byte {
	t.Helper()
	b := make([]byte, f.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v", err)
	}
	return b
}

// TestAgainstModel applies random writes, truncations and reads to a File
// and to a byte slice, committing and reopening at a new generation now
// and then: the content always agrees, and the blob store holds exactly
// the blobs the layout references (no leak, no loss).
// With ahead > 0 full segments a write moved past are published in the
// background (Options.Ahead): writes going back to them, truncations
// dropping them and reads of them meet segments being or already
// published, and no blob published ahead is left once not committed.
func TestAgainstModel(t *testing.T) {
	for _, pad := range []bool{false, true} {
		for _, ahead := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("pad=%v/ahead=%d", pad, ahead), func(t *testing.T) { testAgainstModel(t, pad, ahead) })
		}
	}
}

func testAgainstModel(t *testing.T, pad bool, ahead int) {
	e := newEnv(t)
	e.o.Pad = pad
	e.o.Ahead = ahead
	var mu sync.Mutex
	live := map[blob.ID]bool{}
	committed := map[blob.ID]bool{}
	e.o.Track = func(id blob.ID, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if ok == live[id] {
			t.Errorf("blob %s tracked live=%v twice", id, ok)
		}
		live[id] = ok
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ss := int64(testChunks * envelope.DefaultChunkSize)
	inode := [InodeIDSize]byte{1}
	var model []byte
	var l Layout
	gen := uint64(1)
	f := e.open(t, inode, l, gen)
	next := int64(0)
	for step := range 300 {
		switch op := rng.IntN(12); {
		case op >= 10:
			// Sequential writes from where the last one ended, in
			// pieces, as an upload writes.
			for range 1 + rng.IntN(8) {
				p := make([]byte, 1+rng.IntN(int(ss)/2))
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				off := min(next, int64(len(model)))
				if _, err := f.WriteAt(p, off); err != nil {
					t.Fatalf("step %d: write: %v", step, err)
				}
				if end := off + int64(len(p)); end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[off:], p)
				next = off + int64(len(p))
			}
		case op < 5:
			off := rng.Int64N(5 * ss)
			p := make([]byte, 1+rng.IntN(int(ss)+1000))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			if _, err := f.WriteAt(p, off); err != nil {
				t.Fatalf("step %d: write: %v", step, err)
			}
			if end := off + int64(len(p)); end > int64(len(model)) {
				model = append(model, make([]byte, end-int64(len(model)))...)
			}
			copy(model[off:], p)
		case op < 7:
			n := rng.Int64N(5 * ss)
			if err := f.Truncate(n); err != nil {
				t.Fatalf("step %d: truncate: %v", step, err)
			}
			if n <= int64(len(model)) {
				model = model[:n]
			} else {
				model = append(model, make([]byte, n-int64(len(model)))...)
			}
		case op < 9:
			if len(model) == 0 {
				continue
			}
			off := rng.Int64N(int64(len(model)))
			p := make([]byte, rng.IntN(int(ss)*2))
			n, err := f.ReadAt(p, off)
			want := model[off:min(int64(len(model)), off+int64(len(p)))]
			if !bytes.Equal(p[:n], want) || (n < len(p) && !errors.Is(err, io.EOF)) || (n == len(p) && err != nil) {
				t.Fatalf("step %d: read at %d: %d bytes, %v", step, off, n, err)
			}
		default:
			l = e.commit(t, f)
			for _, r := range l.Segs {
				committed[r.Blob] = true
			}
			gen++
			f = e.open(t, inode, l, gen)
		}
		if f.Size() != int64(len(model)) {
			t.Fatalf("step %d: size %d, model %d", step, f.Size(), len(model))
		}
	}
	l = e.commit(t, f)
	for _, r := range l.Segs {
		committed[r.Blob] = true
	}
	f = e.open(t, inode, l, gen+1)
	defer f.Close()
	if !bytes.Equal(readAll(t, f), model) {
		t.Fatal("content after the last commit differs")
	}
	mu.Lock()
	for id, ok := range live {
		if ok && !committed[id] {
			t.Errorf("blob %s published ahead, never committed, still tracked", id)
		}
	}
	if ahead > 0 && len(live) == 0 {
		t.Error("no segment was published ahead")
	}
	mu.Unlock()
	stored := map[blob.ID]bool{}
	e.blobs.List(func(id blob.ID, _ int64) error { stored[id] = true; return nil })
	if len(stored) != len(l.Segs) {
		t.Errorf("%d blobs stored, layout references %d", len(stored), len(l.Segs))
	}
	for _, r := range l.Segs {
		if !stored[r.Blob] {
			t.Errorf("layout references a missing blob %s", r.Blob)
		}
	}
	if pad && len(l.Segs) > 0 {
		last := l.Segs[len(l.Segs)-1]
		fi, err := os.Stat(e.blobPath(last.Blob))
		if err != nil {
			t.Fatal(err)
		}
		tail := l.Size - int64(len(l.Segs)-1)*ss
		if want := envelope.CiphertextSize(min(Padme(tail), ss)); fi.Size() != want {
			t.Errorf("last segment stored %d bytes, want %d (tail %d padded to %d)", fi.Size(), want, tail, Padme(tail))
		}
	}
}

// TestPadme: known values, never smaller, at most 12% more, powers of
// two kept.
func TestPadme(t *testing.T) {
	for l, want := range map[int64]int64{0: 0, 1: 1, 2: 2, 9: 10, 100: 104, 1000: 1024, 4097: 4352, 1 << 22: 1 << 22, 1<<22 + 1: 1<<22 + 1<<17} {
		if got := Padme(l); got != want {
			t.Errorf("Padme(%d) = %d, want %d", l, got, want)
		}
	}
	for l := int64(1); l < 1<<20; l += 997 {
		p := Padme(l)
		if p < l || float64(p-l) > 0.12*float64(l)+1 {
			t.Fatalf("Padme(%d) = %d", l, p)
		}
	}
}

// threeSegments writes a file of 2.5 segments and commits it.
func threeSegments(t *testing.T, e *env, inode [InodeIDSize]byte) ([]byte, Layout) {
	t.Helper()
	data := make([]byte, 5*testChunks*envelope.DefaultChunkSize/2)
	for i := range data {
		data[i] = byte(i % 251)
	}
	f := e.open(t, inode, Layout{}, 1)
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	return data, e.commit(t, f)
}

// TestCopyOnWrite: a write into one segment replaces that segment's blob
// only; the others keep theirs, and the replaced one is garbage.
func TestCopyOnWrite(t *testing.T) {
	e := newEnv(t)
	inode := [InodeIDSize]byte{2}
	data, l := threeSegments(t, e, inode)
	f := e.open(t, inode, l, 2)
	ss := int64(testChunks * envelope.DefaultChunkSize)
	if _, err := f.WriteAt([]byte("X"), ss+5); err != nil {
		t.Fatal(err)
	}
	nl, garbage, err := f.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if nl.Segs[0].Blob != l.Segs[0].Blob || nl.Segs[2].Blob != l.Segs[2].Blob || nl.Segs[1].Gen != 2 || nl.Segs[1].Blob == l.Segs[1].Blob {
		t.Errorf("layout after a one-byte write: %+v (was %+v)", nl.Segs, l.Segs)
	}
	if len(garbage) != 1 || garbage[0] != l.Segs[1].Blob {
		t.Errorf("garbage %v, want the old segment 1", garbage)
	}
	data[ss+5] = 'X'
	f = e.open(t, inode, nl, 3)
	defer f.Close()
	if !bytes.Equal(readAll(t, f), data) {
		t.Fatal("content after copy-on-write differs")
	}
}

// TestTamper does to segment blobs what someone with the disk can: swap
// two segments of a file, put back an older version of a segment, put a
// segment of another file in place, cut a segment. Every read of the
// damaged segment fails; the others still read.
func TestTamper(t *testing.T) {
	ss := int64(testChunks * envelope.DefaultChunkSize)
	cases := map[string]func(t *testing.T, e *env, l Layout, old []byte, other Layout) error{
		"swapped segments": func(t *testing.T, e *env, l Layout, _ []byte, _ Layout) error {
			a, b := e.blobPath(l.Segs[0].Blob), e.blobPath(l.Segs[1].Blob)
			os.Rename(a, a+".x")
			os.Rename(b, a)
			return os.Rename(a+".x", b)
		},
		"older version put back": func(t *testing.T, e *env, l Layout, old []byte, _ Layout) error {
			return os.WriteFile(e.blobPath(l.Segs[1].Blob), old, 0o600)
		},
		"another file's segment": func(t *testing.T, e *env, l Layout, _ []byte, other Layout) error {
			b, err := os.ReadFile(e.blobPath(other.Segs[1].Blob))
			if err != nil {
				return err
			}
			return os.WriteFile(e.blobPath(l.Segs[1].Blob), b, 0o600)
		},
		"segment cut at a chunk boundary": func(t *testing.T, e *env, l Layout, _ []byte, _ Layout) error {
			return os.Truncate(e.blobPath(l.Segs[1].Blob), envelope.HeaderSize+envelope.DefaultChunkSize+envelope.ChunkOverhead)
		},
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			inode := [InodeIDSize]byte{3}
			_, l := threeSegments(t, e, inode)
			_, other := threeSegments(t, e, [InodeIDSize]byte{4})
			// Generation 2 rewrites segment 1; keep generation 1's blob.
			old, err := os.ReadFile(e.blobPath(l.Segs[1].Blob))
			if err != nil {
				t.Fatal(err)
			}
			f := e.open(t, inode, l, 2)
			f.WriteAt([]byte("v2"), ss)
			l = e.commit(t, f)
			if err := tamper(t, e, l, old, other); err != nil {
				t.Fatal(err)
			}
			f = e.open(t, inode, l, 3)
			defer f.Close()
			p := make([]byte, 10)
			_, err = f.ReadAt(p, ss+100)
			if !errors.Is(err, envelope.ErrAuth) && !errors.Is(err, ErrLayout) && !errors.Is(err, envelope.ErrTruncated) {
				t.Errorf("read of the tampered segment: %v", err)
			}
			if name != "swapped segments" {
				if _, err := f.ReadAt(p, 2*ss+10); err != nil {
					t.Errorf("read of an untouched segment: %v", err)
				}
			}
		})
	}
}

// TestAbort: a File closed without Commit leaves no blob behind and the
// old layout whole.
func TestAbort(t *testing.T) {
	e := newEnv(t)
	inode := [InodeIDSize]byte{5}
	data, l := threeSegments(t, e, inode)
	f := e.open(t, inode, l, 2)
	f.WriteAt(make([]byte, 1<<20), 0)
	f.Truncate(10)
	f.Close()
	n := 0
	e.blobs.List(func(blob.ID, int64) error { n++; return nil })
	if n != len(l.Segs) {
		t.Errorf("%d blobs after an aborted write, want %d", n, len(l.Segs))
	}
	f = e.open(t, inode, l, 3)
	defer f.Close()
	if !bytes.Equal(readAll(t, f), data) {
		t.Fatal("old content changed by an aborted write")
	}
}

func TestOpenRefusals(t *testing.T) {
	e := newEnv(t)
	if _, err := Open(DirBlobs{e.blobs}, [InodeIDSize]byte{}, Layout{Size: 10}, 2, e.o); !errors.Is(err, ErrLayout) {
		t.Errorf("layout without segments: %v", err)
	}
	if _, err := Open(DirBlobs{e.blobs}, [InodeIDSize]byte{}, Layout{Size: 10, Segs: []Ref{{Gen: 2}}}, 2, e.o); err == nil {
		t.Error("opened to write a generation the layout already has")
	}
}

// BenchmarkWrite writes 64 MiB sequentially and commits (default 4 MiB
// segments), and rewrites random 4 KiB blocks of it in one generation
// (each first touch of a segment copies it: the copy-on-write's cost).
func BenchmarkWrite(b *testing.B) {
	kr, _ := envelope.NewKeyring()
	d, err := blob.OpenDir(filepath.Join(b.TempDir(), "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	o := Options{Keyring: kr}
	const size = 64 << 20
	buf := make([]byte, 1<<20)
	write := func(gen uint64) Layout {
		f, err := Open(DirBlobs{d}, [InodeIDSize]byte{9}, Layout{}, gen, o)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		l, _, err := f.Commit()
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		return l
	}
	b.Run("sequential-64MiB", func(b *testing.B) {
		b.SetBytes(size)
		for i := range b.N {
			write(uint64(i + 1))
		}
	})
	b.Run("random-4KiB-x1000", func(b *testing.B) {
		l := write(1)
		rng := rand.New(rand.NewPCG(3, 4))
		p := make([]byte, 4096)
		b.ResetTimer()
		for i := range b.N {
			f, err := Open(DirBlobs{d}, [InodeIDSize]byte{9}, l, uint64(i+2), o)
			if err != nil {
				b.Fatal(err)
			}
			for range 1000 {
				if _, err := f.WriteAt(p, rng.Int64N(size-4096)); err != nil {
					b.Fatal(err)
				}
			}
			if l, _, err = f.Commit(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// TestAbortAhead: an upload whose segments were published while it was
// written, then closed without a commit, leaves only the old blobs, and
// every blob it published ahead was deleted.
func TestAbortAhead(t *testing.T) {
	e := newEnv(t)
	inode := [InodeIDSize]byte{6}
	data, l := threeSegments(t, e, inode)
	e.o.Ahead = 2
	var mu sync.Mutex
	live := map[blob.ID]bool{}
	e.o.Track = func(id blob.ID, ok bool) { mu.Lock(); live[id] = ok; mu.Unlock() }
	f := e.open(t, inode, l, 2)
	ss := testChunks * envelope.DefaultChunkSize
	for off := 0; off < 6*ss; off += 40 << 10 {
		if _, err := f.WriteAt(make([]byte, 40<<10), int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	mu.Lock()
	if len(live) < 4 {
		t.Errorf("%d segments published ahead of 6 written, want at least 4", len(live))
	}
	for id, ok := range live {
		if ok {
			t.Errorf("blob %s published ahead still live after the abort", id)
		}
	}
	mu.Unlock()
	n := 0
	e.blobs.List(func(blob.ID, int64) error { n++; return nil })
	if n != len(l.Segs) {
		t.Errorf("%d blobs after an aborted write, want %d", n, len(l.Segs))
	}
	f = e.open(t, inode, l, 3)
	defer f.Close()
	if !bytes.Equal(readAll(t, f), data) {
		t.Fatal("old content changed by an aborted write")
	}
}

// indexBlobs keeps InIndex blobs as the index does: the bytes of a
// committed layout's InIndex refs, read back by id.
type indexBlobs map[blob.ID][]byte

func (m indexBlobs) ReadInline(id blob.ID) ([]byte, error) {
	b, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", id, os.ErrNotExist)
	}
	return b, nil
}

func (m indexBlobs) RewriteInline(id blob.ID, data []byte) error {
	if _, ok := m[id]; ok {
		m[id] = data
	}
	return nil
}

// publish moves l's InIndex bytes into m and returns l as the index
// gives it back (no bytes in the refs).
func (m indexBlobs) publish(l Layout) Layout {
	out := Layout{Size: l.Size}
	for _, r := range l.Segs {
		if r.InIndex {
			m[r.Blob] = r.Data
		}
		r.Data = nil
		out.Segs = append(out.Segs, r)
	}
	return out
}

func countBlobs(t *testing.T, d *blob.Dir) int {
	t.Helper()
	n := 0
	if err := d.List(func(blob.ID, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInline: a segment up to InlineMax is kept in memory and committed
// as an InIndex ref with its bytes (no blob written); read back through
// Inline it is the same file, bound like any segment; grown past
// InlineMax it moves to the blob store; a key rotation re-wraps it.
func TestInline(t *testing.T) {
	e := newEnv(t)
	idx := indexBlobs{}
	e.o.InlineMax = 20_000
	e.o.Inline = idx
	inode := [InodeIDSize]byte{1}
	small := bytes.Repeat([]byte("inline!"), 700) // 4,900 bytes

	f := e.open(t, inode, Layout{}, 1)
	f.WriteAt(small, 0)
	l, _, err := f.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(l.Segs) != 1 || !l.Segs[0].InIndex || int64(len(l.Segs[0].Data)) != envelope.CiphertextSize(int64(len(small))) {
		t.Fatalf("layout of a small file: %+v", l.Segs)
	}
	if n := countBlobs(t, e.blobs); n != 0 {
		t.Fatalf("%d blobs written for a small file", n)
	}
	l = idx.publish(l)
	if got := readAll(t, e.open(t, inode, l, 2)); !bytes.Equal(got, small) {
		t.Fatal("small file reads back different")
	}

	// Another file's inline blob under this layout fails: the binding
	// names the inode.
	other := e.open(t, [InodeIDSize]byte{2}, Layout{}, 1)
	other.WriteAt(small, 0)
	ol, _, _ := other.Commit()
	other.Close()
	saved := idx[l.Segs[0].Blob]
	idx[l.Segs[0].Blob] = ol.Segs[0].Data
	if _, err := e.open(t, inode, l, 2).ReadAt(make([]byte, 10), 0); !errors.Is(err, envelope.ErrAuth) {
		t.Fatalf("read of another file's inline blob: %v", err)
	}
	idx[l.Segs[0].Blob] = saved

	// A key rotation re-wraps it where it is.
	kr := e.o.Keyring.Clone()
	kid, err := kr.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Rewrap(DirBlobs{e.blobs}, idx, inode, l, kr); err != nil || n != 1 {
		t.Fatalf("rewrap: %d, %v", n, err)
	}
	ids := map[uint32]int{}
	if err := KeyIDs(DirBlobs{e.blobs}, idx, l, ids); err != nil || ids[kid] != 1 {
		t.Fatalf("key ids after rewrap: %v, %v", ids, err)
	}
	e.o.Keyring = kr

	// Grown past InlineMax: a blob of the store, the inline one garbage.
	f = e.open(t, inode, l, 2)
	big := bytes.Repeat([]byte("spilled"), 5000) // 35,000 bytes
	f.WriteAt(big, int64(len(small)))
	l2, garbage, err := f.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if l2.Segs[0].InIndex || len(garbage) != 1 || garbage[0] != l.Segs[0].Blob {
		t.Fatalf("layout after growing: %+v, garbage %v", l2.Segs, garbage)
	}
	if n := countBlobs(t, e.blobs); n != 1 {
		t.Fatalf("%d blobs after the file grew past InlineMax, want 1", n)
	}
	if got := readAll(t, e.open(t, inode, idx.publish(l2), 3)); !bytes.Equal(got, append(slices.Clone(small), big...)) {
		t.Fatal("grown file reads back different")
	}

	// Without the index the layout cannot be read: an error, not zeros.
	e.o.Inline = nil
	if _, err := e.open(t, inode, l, 3).ReadAt(make([]byte, 10), 0); err == nil {
		t.Fatal("an InIndex segment read without an index")
	}
}
