package index

import (
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/securefsd/securefsd/internal/atomicfile"
)

// stateKey is the stored key of the index's state record (kind 0, no key).
var stateKey = []byte{byte(kindState)}

// anchorKey is the associated data of an anchor file's sealed state: an
// anchor opens only as an anchor, never as a record or state.
var anchorKey = []byte("\x00anchor")

// state is the index's epoch and root hash.
type state struct {
	Epoch uint64
	Sum   [32]byte
}

func (s *state) xorSum(mac [32]byte) {
	for i := range s.Sum {
		s.Sum[i] ^= mac[i]
	}
}

const stateSize = 8 + 32

func (s state) marshal() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, stateSize), s.Epoch)
	return append(b, s.Sum[:]...)
}

func parseState(b []byte) (state, error) {
	if len(b) != stateSize {
		return state{}, fmt.Errorf("index: state of %d bytes: %w", len(b), ErrAuth)
	}
	var s state
	s.Epoch = binary.BigEndian.Uint64(b)
	copy(s.Sum[:], b[8:])
	return s, nil
}

func (x *Index) getState(s store) (state, error) {
	sealed, err := s.get(stateKey)
	if err != nil {
		return state{}, err
	}
	if sealed == nil {
		return state{}, fmt.Errorf("index: no state record: %w", ErrAuth)
	}
	return x.openState(sealed)
}

func (x *Index) openState(sealed []byte) (state, error) {
	v, err := x.open(stateKey, sealed)
	if err != nil {
		return state{}, fmt.Errorf("index: state (another index's key?): %w", err)
	}
	return parseState(v)
}

func (x *Index) putState(s store, st state) error {
	return s.put(stateKey, x.seal(stateKey, st.marshal()))
}

// currentState reads the state record in a transaction of its own.
func (x *Index) currentState() (state, error) {
	var st state
	err := x.eng.view(func(s store) error {
		var err error
		st, err = x.getState(s)
		return err
	})
	return st, err
}

// Epoch returns the index's current epoch (the number of Updates that
// committed).
func (x *Index) Epoch() (uint64, error) {
	var e uint64
	err := x.View(func(tx *Tx) error { e = tx.Epoch(); return nil })
	return e, err
}

// ErrNoAnchor: the anchor file does not exist (a first start, or it was
// removed); the caller decides whether to write one.
var ErrNoAnchor = errors.New("index: no anchor file")

// WriteAnchor stores the index's current epoch and root hash in the
// anchor file at path (sealed with the index's key, mode 0600, written
// to a temporary and renamed, fsynced), which the caller keeps outside
// the data directory (next to the key file).
func (x *Index) WriteAnchor(path string) error {
	var st state
	var err error
	if r, ok := x.eng.(*relaxedEngine); ok {
		// What is on disk, not the overlay: a power cut may take the
		// overlay's last updates, and the file must not then be older
		// than its anchor.
		if err = r.sync(); err == nil {
			err = r.b.view(func(s store) error {
				st, err = x.getState(s)
				return err
			})
		}
	} else {
		st, err = x.currentState()
	}
	if err != nil {
		return err
	}
	data := x.seal(anchorKey, st.marshal())
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("index: anchor: %w", err)
	}
	return nil
}

// CheckAnchor compares the index with the anchor file at path: an index
// whose epoch is below the anchor's, or equal with another root hash, is
// older than the anchor (a data directory put back from a copy):
// ErrRolledBack. An index ahead of its anchor is fine (the anchor is
// written on a schedule). A missing file is ErrNoAnchor; one that does
// not open with this index's key, ErrAuth.
func (x *Index) CheckAnchor(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoAnchor
	}
	if err != nil {
		return fmt.Errorf("index: anchor: %w", err)
	}
	v, err := x.open(anchorKey, data)
	if err != nil {
		return fmt.Errorf("index: anchor %s: %w", path, err)
	}
	anchor, err := parseState(v)
	if err != nil {
		return err
	}
	st, err := x.currentState()
	if err != nil {
		return err
	}
	switch {
	case st.Epoch < anchor.Epoch:
		return fmt.Errorf("index: epoch %d is older than its anchor's %d (the data directory was put back from a copy?): %w", st.Epoch, anchor.Epoch, ErrRolledBack)
	case st.Epoch == anchor.Epoch && !hmac.Equal(st.Sum[:], anchor.Sum[:]):
		return fmt.Errorf("index: epoch %d has another root hash than its anchor's: %w", st.Epoch, ErrRolledBack)
	}
	return nil
}
