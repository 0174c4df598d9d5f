package envelope

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// Header layout, version 1 (docs/FORMAT.md, "Header"):
//
//	off  len  field
//	  0    8  magic "securefs"
//	  8    1  version (1)
//	  9    1  AEAD id (1 = XChaCha20-Poly1305, 2 = XAES-256-GCM)
//	 10    1  log2 of the chunk size (16)
//	 11    5  reserved, zero
//	 16   32  file id (random)
//	 48   80  key slot 0
//	128   80  key slot 1
//
// Key slot: generation u32 BE, KEK id u32 BE, 24-byte wrap nonce, 48-byte
// wrapped DEK (32-byte DEK sealed by the KEK's wrap AEAD, 16-byte tag). A
// slot with generation 0 is empty and all zero.
const (
	magic       = "securefs"
	fixedSize   = 48
	slotSize    = 80
	wrappedSize = keySize + tagSize
	// slotAADSize: fixed header fields + slot index + generation + KEK id.
	slotAADSize = fixedSize + 1 + 8
)

type slot struct {
	gen     uint32
	kekID   uint32
	nonce   [nonceSize]byte
	wrapped [wrappedSize]byte
}

func (s *slot) empty() bool { return s.gen == 0 }

type header struct {
	aeadID byte
	fileID [32]byte
	slots  [2]slot
	// binding is the caller's binding context (docs/FORMAT.md, section 5.5):
	// not stored, appended to every key slot's AAD. Empty for unbound files.
	binding []byte
}

// fixed returns the first fixedSize bytes of the header.
func (h *header) fixed() [fixedSize]byte {
	var b [fixedSize]byte
	copy(b[:8], magic)
	b[8] = FormatVersion
	b[9] = h.aeadID
	b[10] = chunkLog2
	copy(b[16:48], h.fileID[:])
	return b
}

func (h *header) marshal() []byte {
	b := make([]byte, HeaderSize)
	f := h.fixed()
	copy(b, f[:])
	for i := range h.slots {
		s := &h.slots[i]
		if s.empty() {
			continue
		}
		o := fixedSize + i*slotSize
		binary.BigEndian.PutUint32(b[o:], s.gen)
		binary.BigEndian.PutUint32(b[o+4:], s.kekID)
		copy(b[o+8:], s.nonce[:])
		copy(b[o+8+nonceSize:], s.wrapped[:])
	}
	return b
}

// slotAAD is the associated data of the DEK wrap in slot i: the fixed
// header fields, the slot index, the slot's generation and KEK id, then the
// binding context (nothing for an unbound file; the fields before it have a
// fixed size, so no length prefix is needed). The wrap nonce is bound as the
// nonce; the other slot is not bound, so each slot can be rewritten alone.
func (h *header) slotAAD(i int, s *slot) []byte {
	aad := make([]byte, 0, slotAADSize+len(h.binding))
	f := h.fixed()
	aad = append(aad, f[:]...)
	aad = append(aad, byte(i))
	aad = binary.BigEndian.AppendUint32(aad, s.gen)
	aad = binary.BigEndian.AppendUint32(aad, s.kekID)
	aad = append(aad, h.binding...)
	return aad
}

// parseHeader checks the structure of b (HeaderSize bytes) without any key.
func parseHeader(b []byte) (*header, error) {
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("header: short (%d bytes): %w", len(b), ErrFormat)
	}
	if string(b[:8]) != magic {
		return nil, fmt.Errorf("header: bad magic: %w", ErrVersion)
	}
	if b[8] != FormatVersion {
		return nil, fmt.Errorf("header: version %d: %w", b[8], ErrVersion)
	}
	if !AEAD(b[9]).known() {
		return nil, fmt.Errorf("header: AEAD id %d: %w", b[9], ErrVersion)
	}
	if b[10] != chunkLog2 {
		return nil, fmt.Errorf("header: chunk size 2^%d: %w", b[10], ErrVersion)
	}
	if !allZero(b[11:16]) {
		return nil, fmt.Errorf("header: reserved bytes not zero: %w", ErrFormat)
	}
	h := &header{aeadID: b[9]}
	copy(h.fileID[:], b[16:48])
	for i := range h.slots {
		o := fixedSize + i*slotSize
		raw := b[o : o+slotSize]
		s := &h.slots[i]
		s.gen = binary.BigEndian.Uint32(raw)
		s.kekID = binary.BigEndian.Uint32(raw[4:])
		copy(s.nonce[:], raw[8:])
		copy(s.wrapped[:], raw[8+nonceSize:])
		switch {
		case s.gen == 0 && !allZero(raw):
			return nil, fmt.Errorf("header: empty key slot %d not zero: %w", i, ErrFormat)
		case s.gen != 0 && s.kekID == 0:
			return nil, fmt.Errorf("header: key slot %d has KEK id 0: %w", i, ErrFormat)
		}
	}
	s0, s1 := &h.slots[0], &h.slots[1]
	if s0.empty() && s1.empty() {
		return nil, fmt.Errorf("header: no key slot in use: %w", ErrFormat)
	}
	if s0.gen == s1.gen {
		return nil, fmt.Errorf("header: both key slots have generation %d: %w", s0.gen, ErrFormat)
	}
	return h, nil
}

// readHeader reads and parses the header of r.
func readHeader(r io.ReaderAt) (*header, error) {
	b := make([]byte, HeaderSize)
	if n, err := r.ReadAt(b, 0); n < HeaderSize {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read header: %w (%w)", ErrFormat, err)
	}
	return parseHeader(b)
}

// unwrap opens the DEK from the header's slots with kr. Every occupied slot
// whose KEK is in kr must open (else ErrAuth: a damaged slot is tampering,
// not something to skip); the one with the highest generation wins. It
// returns the DEK (the caller clears it) and the winning slot's index.
func (h *header) unwrap(kr *Keyring) ([]byte, int, error) {
	if kr == nil {
		return nil, 0, fmt.Errorf("nil keyring: %w", ErrUnknownKey)
	}
	var dek []byte
	best := -1
	for i := range h.slots {
		s := &h.slots[i]
		if s.empty() {
			continue
		}
		wrap := kr.wrapAEAD(s.kekID)
		if wrap == nil {
			continue
		}
		d, err := wrap.Open(nil, s.nonce[:], s.wrapped[:], h.slotAAD(i, s))
		if err != nil {
			clear(dek)
			return nil, 0, fmt.Errorf("header: key slot %d (KEK %d) does not open (damaged, or bound to another context): %w", i, s.kekID, ErrAuth)
		}
		if best < 0 || s.gen > h.slots[best].gen {
			clear(dek)
			dek, best = d, i
		} else {
			clear(d)
		}
	}
	if best < 0 {
		return nil, 0, fmt.Errorf("header: file uses KEK %v, keyring has %v: %w", h.keyIDs(), kr.IDs(), ErrUnknownKey)
	}
	return dek, best, nil
}

// wrapInto seals dek into slot i with generation gen under kr's active KEK.
func (h *header) wrapInto(i int, gen uint32, dek []byte, kr *Keyring) error {
	id, wrap := kr.activeAEAD()
	if wrap == nil {
		return fmt.Errorf("keyring has no active KEK: %w", ErrUnknownKey)
	}
	s := slot{gen: gen, kekID: id}
	randomBytes(s.nonce[:])
	wrap.Seal(s.wrapped[:0], s.nonce[:], dek, h.slotAAD(i, &s))
	h.slots[i] = s
	return nil
}

// keyIDs lists the KEK ids of the occupied slots, highest generation first.
func (h *header) keyIDs() []uint32 {
	var ids []uint32
	order := []int{0, 1}
	if h.slots[1].gen > h.slots[0].gen {
		order = []int{1, 0}
	}
	for _, i := range order {
		if s := &h.slots[i]; !s.empty() && !slices.Contains(ids, s.kekID) {
			ids = append(ids, s.kekID)
		}
	}
	return ids
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// newHeader returns the header of a new file: a fresh random file id and
// DEK, the DEK wrapped in slot 0 (generation 1) by kr's active KEK, bound
// to o.Binding, with o's content AEAD. The caller clears the DEK.
func newHeader(kr *Keyring, o Options) (*header, []byte, error) {
	aead, err := o.aead()
	if err != nil {
		return nil, nil, err
	}
	if kr == nil {
		return nil, nil, fmt.Errorf("nil keyring: %w", ErrUnknownKey)
	}
	h := &header{aeadID: byte(aead), binding: slices.Clone(o.Binding)}
	randomBytes(h.fileID[:])
	dek := make([]byte, keySize)
	randomBytes(dek)
	if err := h.wrapInto(0, 1, dek, kr); err != nil {
		clear(dek)
		return nil, nil, err
	}
	return h, dek, nil
}

// openHeader is the common start of every way to read a stored file (Open,
// NewReader, Verify): it checks that ciphertextSize is a length the format
// produces (ErrFormat), then unwraps the header (unwrapHeader). It returns
// the plaintext size, the header, the DEK (the caller clears it) and the
// winning slot's index.
func openHeader(r io.ReaderAt, ciphertextSize int64, kr *Keyring, o Options) (int64, *header, []byte, int, error) {
	size, err := plaintextSize(ciphertextSize)
	if err != nil {
		return 0, nil, nil, 0, err
	}
	h, dek, best, err := unwrapHeader(r, kr, o)
	return size, h, dek, best, err
}

// unwrapHeader reads and parses r's header and unwraps the DEK with kr,
// authenticating o.Binding (docs/FORMAT.md, section 5.3). It returns the
// header, the DEK (the caller clears it) and the winning slot's index.
func unwrapHeader(r io.ReaderAt, kr *Keyring, o Options) (*header, []byte, int, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, nil, 0, err
	}
	h.binding = slices.Clone(o.Binding)
	dek, best, err := h.unwrap(kr)
	if err != nil {
		return nil, nil, 0, err
	}
	return h, dek, best, nil
}
