package users

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/securefsd/securefsd/internal/atomicfile"
)

// The rollback anchor (serve --rollback-anchor, docs/STORAGE.md section
// 4): a small file kept outside the data directory, next to the key file,
// holding the database's revision sealed with its key. A users.db put back
// from an older copy (a revoked user, key or grant brought back) has a
// lower revision than its anchor, and the server refuses to start on it.

// ErrRolledBack: the database is older than its anchor.
var ErrRolledBack = errors.New("users: the database is older than its rollback anchor (put back from a copy or a backup?)")

// ErrNoAnchor: the anchor file does not exist yet.
var ErrNoAnchor = errors.New("users: no rollback anchor")

var anchorAAD = []byte("\x00anchor")

// WriteAnchor writes the database's current revision to the anchor file
// at path (sealed, mode 0600, written to a temporary, fsynced, renamed).
// It needs a sealed database (Options.Key).
func (db *DB) WriteAnchor(path string) error {
	if db.seal == nil {
		return fmt.Errorf("users: anchor: %w", ErrKeyRequired)
	}
	rev := binary.BigEndian.AppendUint64(nil, db.storedRevision())
	data := db.seal.seal(bucketSealCheck, anchorAAD, []byte("anchor"), rev)
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("users: anchor: %w", err)
	}
	return nil
}

// CheckAnchor compares the database with the anchor file at path:
// ErrRolledBack if the database's revision is below the anchor's (the
// anchor is written on a schedule, so a database ahead of it is fine),
// ErrNoAnchor if there is no file, ErrSealed if it was not sealed with
// this database's key.
func (db *DB) CheckAnchor(path string) error {
	if db.seal == nil {
		return fmt.Errorf("users: anchor: %w", ErrKeyRequired)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoAnchor
	}
	if err != nil {
		return fmt.Errorf("users: anchor: %w", err)
	}
	name, v, err := db.seal.open(bucketSealCheck, anchorAAD, data)
	if err != nil || string(name) != "anchor" || len(v) != 8 {
		return fmt.Errorf("users: anchor %s does not open with this database's key: %w", path, ErrSealed)
	}
	if anchored, rev := binary.BigEndian.Uint64(v), db.storedRevision(); rev < anchored {
		return fmt.Errorf("%w: revision %d, anchor %d (if the restore was intended: securefsd anchor reset)", ErrRolledBack, rev, anchored)
	}
	return nil
}
