package vfs

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// TestUsageRandomOps: after random sequential operations, whenever no
// handle is open, usage equals a fresh count.
func TestUsageRandomOps(t *testing.T) {
	for seed := range 60 {
		_, f := newFS(t)
		rng := rand.New(rand.NewPCG(uint64(seed), 9))
		names := []string{"a", "b", "d/a", "d"}
		var open []*File
		var log []string
		buf := make([]byte, 70000)
		for step := range 60 {
			name := names[rng.IntN(len(names))]
			op := rng.IntN(9)
			log = append(log, fmt.Sprintf("%d op%d %s", step, op, name))
			switch op {
			case 0, 1:
				flag := []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_CREATE | os.O_TRUNC, os.O_RDWR}[rng.IntN(4)]
				log[len(log)-1] += fmt.Sprintf(" open %#o", flag)
				if h, err := f.OpenFile(name, flag, 0o644); err == nil {
					open = append(open, h)
				}
			case 2:
				if len(open) > 0 {
					h := open[rng.IntN(len(open))]
					log[len(log)-1] += " write " + h.name
					h.WriteAt(buf[:rng.IntN(len(buf))], int64(rng.IntN(100000)))
				}
			case 3:
				if len(open) > 0 {
					i := rng.IntN(len(open))
					log[len(log)-1] += " close " + open[i].name
					if rng.IntN(3) == 0 {
						open[i].Abort()
					} else {
						open[i].Close()
					}
					open = append(open[:i], open[i+1:]...)
				}
			case 4:
				to := names[rng.IntN(len(names))]
				log[len(log)-1] += " rename to " + to
				f.Rename(name, to, rng.IntN(2) == 0)
			case 5:
				f.RemoveAll(name)
			case 6:
				f.Mkdir(name, 0o755)
			case 7:
				f.Truncate(name, int64(rng.IntN(100000)))
			case 8:
				f.Remove(name)
			}
			if len(open) == 0 {
				u, _ := f.Usage()
				f.h.ns.Lock()
				f.h.recount()
				f.h.ns.Unlock()
				u2, _ := f.Usage()
				if u.UsedBytes != u2.UsedBytes || u.Files != u2.Files {
					t.Fatalf("seed %d: drift %+v vs %+v\n%v", seed, u, u2, log)
				}
			}
		}
		for _, h := range open {
			h.Close()
		}
	}
}
