package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
)

// TestCrashOrder replays every prefix of the writes a File makes (and every
// write torn in half) on top of the old stored bytes, as a crash would leave
// them, and checks the promise of docs/FORMAT.md, "Write order": each state
// either reads back with every chunk equal to its old or its new content,
// or fails with a detected error. Never other bytes.
func TestCrashOrder(t *testing.T) {
	kr := testKeyring(t)
	cs := int64(chunkSize)
	for _, sc := range []struct {
		name string
		old  int
		act  func(t *testing.T, f *File)
		// an error some intermediate state must show (the documented
		// window), or nil
		window error
	}{
		{"grow across chunks", int(cs + 7), func(t *testing.T, f *File) {
			_, err := f.WriteAt([]byte("end"), 3*cs)
			must(t, err)
			_, err = f.WriteAt([]byte("start"), 10)
			must(t, err)
		}, nil},
		{"grow from full final chunk", int(2 * cs), func(t *testing.T, f *File) {
			_, err := f.WriteAt([]byte("end"), 3*cs)
			must(t, err)
		}, ErrStaleFinal},
		{"long write with evictions", int(cs + 3), func(t *testing.T, f *File) {
			_, err := f.WriteAt(pattern((maxCached+4)*chunkSize+9, 9), 0)
			must(t, err)
		}, ErrTruncated},
		{"upload in whole chunks", int(cs + 3), func(t *testing.T, f *File) {
			// Past minStreamChunks: sealed straight from the caller's
			// buffer and kept pending (appendChunk).
			for i := range int64(minStreamChunks + pendBatch + 3) {
				_, err := f.WriteAt(pattern(chunkSize, uint64(i)), i*cs)
				must(t, err)
			}
		}, ErrTruncated},
		{"upload in whole chunks, flushed, appended", 0, func(t *testing.T, f *File) {
			for i := range int64(minStreamChunks + 2) {
				_, err := f.WriteAt(pattern(chunkSize, uint64(i)), i*cs)
				must(t, err)
			}
			must(t, f.Flush())
			for i := range int64(2) {
				_, err := f.WriteAt(pattern(chunkSize, uint64(i)+40), (minStreamChunks+2+i)*cs)
				must(t, err)
			}
		}, ErrTruncated},
		{"grow within last chunk", 100, func(t *testing.T, f *File) {
			_, err := f.WriteAt(pattern(200, 9), 50)
			must(t, err)
		}, nil},
		{"grow empty file", 0, func(t *testing.T, f *File) {
			_, err := f.WriteAt(pattern(int(2*cs+1), 9), 0)
			must(t, err)
		}, nil},
		{"shrink inside chunk", int(3*cs + 5), func(t *testing.T, f *File) {
			_, err := f.WriteAt([]byte("x"), 5)
			must(t, err)
			must(t, f.Truncate(cs+3))
		}, ErrAuth},
		{"shrink to boundary", int(3*cs + 5), func(t *testing.T, f *File) {
			must(t, f.Truncate(2*cs))
		}, ErrStaleFinal},
		{"shrink to zero", int(2*cs + 5), func(t *testing.T, f *File) {
			must(t, f.Truncate(0))
		}, nil},
		{"rewrite in place", int(3*cs + 5), func(t *testing.T, f *File) {
			for _, off := range []int64{1, 2*cs + 7, 3 * cs} {
				_, err := f.WriteAt([]byte("new!"), off)
				must(t, err)
			}
		}, nil},
	} {
		for _, par := range []parallelism{parallelNone, parallelAll} {
			t.Run(fmt.Sprintf("%s/parallel=%d", sc.name, par), func(t *testing.T) {
				oldPlain := pattern(sc.old, 11)
				before := writeFile(t, kr, oldPlain)
				m := newMem(before)
				m.record = true
				f, err := Open(m, int64(len(before)), kr, Options{})
				must(t, err)
				f.setParallelism(par)
				sc.act(t, f)
				must(t, f.Close())
				newPlain, err := readAll(t, m.Bytes(), kr)
				must(t, err)

				seen := map[string]int{}
				check := func(state []byte, what string) {
					t.Helper()
					got, err := readAll(t, state, kr)
					if err != nil {
						for _, ok := range []error{ErrAuth, ErrTruncated, ErrStaleFinal, ErrFormat} {
							if errors.Is(err, ok) {
								seen[ok.Error()]++
								return
							}
						}
						t.Fatalf("%s: undetected kind of failure: %v", what, err)
					}
					seen["ok"]++
					for i := range numChunks(int64(len(got))) {
						c := chunkOf(got, i)
						if !bytes.Equal(c, chunkOf(oldPlain, i)) && !bytes.Equal(c, chunkOf(newPlain, i)) {
							t.Fatalf("%s: chunk %d is neither old nor new content", what, i)
						}
					}
				}
				state := bytes.Clone(before)
				check(state, "before")
				for k, op := range m.ops {
					if !op.truncate && len(op.data) > 1 {
						torn := applyWrite(bytes.Clone(state), op.data[:len(op.data)/2], op.off)
						check(torn, fmt.Sprintf("write %d torn", k))
					}
					if op.truncate {
						state = applyTruncate(state, op.off)
					} else {
						state = applyWrite(state, op.data, op.off)
					}
					check(state, fmt.Sprintf("after write %d", k))
				}
				if !bytes.Equal(state, m.Bytes()) {
					t.Fatal("replay differs from the final state")
				}
				// A shrink's truncate may reach the disk before the re-seal of
				// the new final chunk.
				if n := len(m.ops); n >= 2 && m.ops[n-1].truncate && !m.ops[n-2].truncate {
					s := bytes.Clone(before)
					for _, op := range m.ops[:n-2] {
						if op.truncate {
							s = applyTruncate(s, op.off)
						} else {
							s = applyWrite(s, op.data, op.off)
						}
					}
					check(applyTruncate(s, m.ops[n-1].off), "truncate before re-seal")
				}
				// Storage may persist writes in any order (no fsync between
				// them): any subset of the chunk writes must be safe too.
				if n := len(m.ops); n <= 8 && !slices.ContainsFunc(m.ops, func(o memOp) bool { return o.truncate }) {
					for mask := range 1 << n {
						s := bytes.Clone(before)
						for k, op := range m.ops {
							if mask&(1<<k) != 0 {
								s = applyWrite(s, op.data, op.off)
							}
						}
						check(s, fmt.Sprintf("subset %b", mask))
					}
				}
				keys := make([]string, 0, len(seen))
				for k := range seen {
					keys = append(keys, fmt.Sprintf("%s: %d", k, seen[k]))
				}
				sort.Strings(keys)
				t.Logf("%d writes; states: %v", len(m.ops), keys)
				if sc.window != nil && seen[sc.window.Error()] == 0 {
					t.Errorf("no intermediate state showed %v", sc.window)
				}
			})
		}
	}
}

func chunkOf(plain []byte, i int64) []byte {
	start := min(i*chunkSize, int64(len(plain)))
	return plain[start:min(start+chunkSize, int64(len(plain)))]
}
