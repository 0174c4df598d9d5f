package vfs

import (
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

// TestUsageConcurrentReplace: in-place truncation, replacement uploads
// (published or aborted), reads and checksums of one file race; usage
// must match a fresh count afterwards.
func TestUsageConcurrentReplace(t *testing.T) {
	seeds := 20
	if testing.Short() && testStorage == StorageV2 {
		seeds = 5 // every upload is index commits with their fsyncs: the v2 pass stays quick
	}
	for seed := range seeds {
		_, f := newFS(t)
		writeFile(t, f, "a", make([]byte, 1000))
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(seed), uint64(g)))
				buf := make([]byte, 50000)
				for range 60 {
					switch rng.IntN(4) {
					case 0:
						f.Checksums(t.Context(), "a")
					case 1:
						if h, err := f.OpenFile("a", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err == nil {
							h.WriteAt(buf[:rng.IntN(len(buf))], 0)
							if rng.IntN(3) == 0 {
								h.Abort()
							} else {
								h.Close()
							}
						}
					case 2:
						if h, err := f.Open("a"); err == nil {
							h.ReadAt(buf, 0)
							h.Close()
						}
					case 3:
						f.Truncate("a", int64(rng.IntN(50000)))
					}
				}
			}()
		}
		wg.Wait()
		u, _ := f.Usage()
		f.h.ns.Lock()
		f.h.recount()
		f.h.ns.Unlock()
		u2, _ := f.Usage()
		if u.UsedBytes != u2.UsedBytes || u.Files != u2.Files {
			t.Fatalf("seed %d: drift %+v vs %+v", seed, u, u2)
		}
	}
}
