package vfs

import (
	"context"
	"errors"
	"io/fs"
)

// KeyIDsInUse reads the header of every file in the store (metadata
// sidecars and temporaries included) and reports how many files reference
// each KEK id. A file whose header cannot be read right now (being created,
// damaged) is counted under id 0, so a caller retiring KEKs can tell that
// the answer is incomplete. It decrypts nothing.
func (s *Store) KeyIDsInUse(ctx context.Context) (map[uint32]int, error) {
	if s.v2 != nil {
		return s.keyIDsV2(ctx)
	}
	files, skipped, err := s.sweep(ctx, "")
	if err != nil {
		return nil, err
	}
	inUse := map[uint32]int{}
	// What the sweep could not read may use any key: count it as unknown
	// (id 0), so no caller takes the store for clean.
	inUse[0] += len(skipped)
	if inUse[0] == 0 {
		delete(inUse, 0)
	}
	for _, sf := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sf.h.ns.RLock()
		ids, err := readKeyIDs(sf.h.root, sf.rel)
		sf.h.ns.RUnlock()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Removed or renamed since the sweep: a rename keeps its
			// header, which the next call sees under the new name.
			continue
		case err != nil:
			sf.h.logger().Warn("vfs: cannot read key ids", "home", sf.h.name, "path", "/"+sf.rel, "err", err)
			inUse[0]++
			continue
		}
		for _, id := range ids {
			inUse[id]++
		}
	}
	return inUse, nil
}
