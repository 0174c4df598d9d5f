package vfs

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
)

// TestReaddirStreamLarge lists a large directory in batches (as sftpd
// does, 100 entries per READDIR) while other handles write files into it
// (sidecar rewrites, replacements renamed into place): every entry that
// exists throughout is returned exactly once, and no batch is empty
// before the end.
func TestReaddirStreamLarge(t *testing.T) {
	n := 3000
	if testing.Short() && testStorage == StorageV2 {
		n = 1000 // each mkdir is an index commit with its fsyncs: the v2 pass stays quick
	}
	tests := []struct {
		name  string
		batch int
		busy  bool
	}{
		{name: "idle", batch: 100},
		{name: "busy directory", batch: 100, busy: true},
		{name: "batches of one", batch: 1, busy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, f := newFS(t)
			f.Mkdir("big", 0o755)
			for i := range n {
				if err := f.Mkdir(fmt.Sprintf("big/e%05d", i), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			d, err := f.Open("big")
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if tt.busy {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						name := fmt.Sprintf("big/w%d", i%20)
						w, err := f.Create(name)
						if err != nil {
							t.Error(err)
							return
						}
						w.Write([]byte(name))
						if err := w.Close(); err != nil {
							t.Error(err)
							return
						}
						f.UpdateMeta(name, func(m *Meta) error {
							m.Props = map[string]string{"{urn:test}p": "x"}
							return nil
						})
						if i%3 == 0 {
							f.Remove(name)
						}
					}
				}()
			}
			seen := map[string]int{}
			for {
				fis, err := d.Readdir(tt.batch)
				for _, fi := range fis {
					seen[fi.Name()]++
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(fis) == 0 {
					t.Fatal("empty batch without io.EOF")
				}
			}
			close(stop)
			wg.Wait()
			for i := range n {
				if name := fmt.Sprintf("e%05d", i); seen[name] != 1 {
					t.Errorf("%s listed %d times", name, seen[name])
				}
			}
			for name, c := range seen {
				if c != 1 || isReserved(name) {
					t.Errorf("%s listed %d times", name, c)
				}
			}
		})
	}
}
