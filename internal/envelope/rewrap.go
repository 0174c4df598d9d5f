package envelope

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// KeyIDs reports the KEK ids the header's key slots reference, highest
// generation first. It needs no key and authenticates nothing: use it to
// find the files a rotation still has to re-wrap.
func KeyIDs(r io.ReaderAt) ([]uint32, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, fmt.Errorf("envelope: key ids: %w", err)
	}
	return h.keyIDs(), nil
}

// SyncBacking is what Rewrap re-wraps a header in: it reads and writes at
// offset 0 only, and Sync must make the first header write durable before
// the second one clears the old slot (docs/FORMAT.md, section 8.3, step 4,
// a REQUIRED fsync). *os.File implements it.
type SyncBacking interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// errNoBacking: Rewrap was given no backing to re-wrap.
var errNoBacking = errors.New("no backing (nil)")

// Rewrap re-wraps the file's DEK under kr's active KEK without touching the
// content. It writes the new wrap into the free key slot with generation+1,
// syncs b, then clears the old slot. A crash at any point leaves a header
// that opens with a keyring holding either KEK; running Rewrap again
// completes the job. It reports whether the header changed (false: already
// on the active KEK alone).
//
// The file must have been created with o.Binding: the old slot must open
// with it (else ErrAuth, and nothing is written) and the new slot is bound
// to it too. A re-wrap cannot change a file's binding.
//
// Rewrap writes only the header, which a File never writes after Create, so
// it may run while the file is open for reading and writing (but not
// concurrently with another Rewrap of the same file: serialize those).
func Rewrap(b SyncBacking, ciphertextSize int64, kr *Keyring, o Options) (changed bool, err error) {
	changed, err = rewrap(b, ciphertextSize, kr, o)
	if err != nil {
		return changed, fmt.Errorf("envelope: rewrap: %w", err)
	}
	return changed, nil
}

func rewrap(b SyncBacking, ciphertextSize int64, kr *Keyring, o Options) (bool, error) {
	if b == nil {
		return false, errNoBacking
	}
	// Only the header is used: a concurrent writer may be between two
	// chunk writes, so the length need not be a valid encoding right now.
	if ciphertextSize < HeaderSize+ChunkOverhead {
		return false, fmt.Errorf("ciphertext size %d: %w", ciphertextSize, ErrFormat)
	}
	h, dek, best, err := unwrapHeader(b, kr, o)
	if err != nil {
		return false, err
	}
	defer clear(dek)
	cur, other := &h.slots[best], &h.slots[1-best]
	if cur.kekID == kr.Active() {
		if other.empty() {
			return false, nil
		}
		// An earlier Rewrap stopped after its first write: finish it.
		*other = slot{}
		return true, writeHeader(b, h)
	}
	if cur.gen == math.MaxUint32 {
		return false, fmt.Errorf("key slot generation exhausted: %w", ErrFormat)
	}
	if err := h.wrapInto(1-best, cur.gen+1, dek, kr); err != nil {
		return false, err
	}
	if err := writeHeader(b, h); err != nil {
		return false, err
	}
	if err := b.Sync(); err != nil {
		return true, fmt.Errorf("sync: %w", err)
	}
	h.slots[best] = slot{}
	return true, writeHeader(b, h)
}

// writeHeader writes the whole header in one write at offset 0 (it fits in
// one 512-byte sector, which storage writes atomically in practice).
func writeHeader(b io.WriterAt, h *header) error {
	if _, err := b.WriteAt(h.marshal(), 0); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	return nil
}

// HeaderBacking is what Rebind rewrites a header in: it reads and writes
// at offset 0 only. *os.File implements it.
type HeaderBacking interface {
	io.ReaderAt
	io.WriterAt
}

// Rebind moves the file from binding context from to binding context to
// (docs/FORMAT.md, section 8.4) without touching the content: the DEK is
// unwrapped through the slot bound to from and wrapped, under kr's active
// KEK with generation+1, into the other slot bound to to; the old slot is
// cleared in the same header write. It reports whether the header
// changed: false when the file already opens with to (a rebind that ran
// before), so running it again after a crash is safe.
//
// The header is rewritten in one write of HeaderSize bytes at offset 0 and
// is not synced: the caller makes it durable (fsync or syncfs). A torn
// write leaves a header that opens with neither binding; the caller keeps
// the old header until the new one is durable (securefsd's move journal)
// to recover from that.
func Rebind(b HeaderBacking, kr *Keyring, from, to []byte) (changed bool, err error) {
	changed, err = rebind(b, kr, from, to)
	if err != nil {
		return changed, fmt.Errorf("envelope: rebind: %w", err)
	}
	return changed, nil
}

func rebind(b HeaderBacking, kr *Keyring, from, to []byte) (bool, error) {
	if b == nil {
		return false, errNoBacking
	}
	h, dek, best, err := unwrapHeader(b, kr, Options{Binding: from})
	if errors.Is(err, ErrAuth) {
		if _, dek2, _, err2 := unwrapHeader(b, kr, Options{Binding: to}); err2 == nil {
			clear(dek2)
			return false, nil
		}
	}
	if err != nil {
		return false, err
	}
	defer clear(dek)
	gen := h.slots[best].gen
	if h.slots[1-best].gen > gen {
		gen = h.slots[1-best].gen
	}
	if gen == math.MaxUint32 {
		return false, fmt.Errorf("key slot generation exhausted: %w", ErrFormat)
	}
	h.binding = slices.Clone(to)
	h.slots[best] = slot{}
	if err := h.wrapInto(1-best, gen+1, dek, kr); err != nil {
		return false, err
	}
	return true, writeHeader(b, h)
}
