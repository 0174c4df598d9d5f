package vfs

import (
	"fmt"
	"io"
	"testing"
)

// TestReaddirLarge: a directory of 10000 entries lists completely in
// batches, with no duplicates.
func TestReaddirLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	_, f := newFS(t)
	f.Mkdir("big", 0o755)
	const n = 10000
	for i := range n {
		if err := f.Mkdir(fmt.Sprintf("big/e%05d", i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, batch := range []int{100, 1, 4096, -1} {
		d, err := f.Open("big")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for {
			fis, err := d.Readdir(batch)
			for _, fi := range fis {
				if seen[fi.Name()] {
					t.Fatalf("batch %d: %s twice", batch, fi.Name())
				}
				seen[fi.Name()] = true
			}
			if err == io.EOF || batch <= 0 {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		d.Close()
		if len(seen) != n {
			t.Fatalf("batch %d: listed %d entries, want %d", batch, len(seen), n)
		}
	}
	if list, _ := f.ReadDir("big"); len(list) != n {
		t.Fatalf("ReadDir: %d", len(list))
	}
}
