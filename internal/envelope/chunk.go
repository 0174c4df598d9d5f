package envelope

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// aadSize: chunk index (u64 BE) || final flag (1 byte) || file id.
const aadSize = 8 + 1 + 32

// sealer seals and opens the chunks of one file. It is not safe for
// concurrent use: its aad is scratch space.
type sealer struct {
	aead cipher.AEAD
	aad  [aadSize]byte
	// For XAES-256-GCM (aead is x): the per-chunk key derivation with
	// this sealer's scratch, so that only the AES-GCM itself allocates.
	x   *xaes256gcm
	scr *xaesScratch
}

func newSealer(aead cipher.AEAD, fileID [32]byte) *sealer {
	s := &sealer{aead: aead}
	if x, ok := aead.(*xaes256gcm); ok {
		s.x, s.scr = x, new(xaesScratch)
	}
	copy(s.aad[9:], fileID[:])
	return s
}

// gcm returns what seals and opens with nonce: the AEAD itself, or for
// XAES-256-GCM the AES-256-GCM of the nonce's derived key and the GCM
// nonce (the nonce's last 12 bytes).
func (s *sealer) gcm(nonce []byte) (cipher.AEAD, []byte) {
	if s.x == nil {
		return s.aead, nonce
	}
	return s.x.derive(s.scr, nonce), nonce[12:]
}

// fileID returns the file id bound into the AAD.
func (s *sealer) fileID() (id [32]byte) {
	copy(id[:], s.aad[9:])
	return id
}

func (s *sealer) setAAD(i int64, final bool) []byte {
	binary.BigEndian.PutUint64(s.aad[:8], uint64(i))
	s.aad[8] = 0
	if final {
		s.aad[8] = 1
	}
	return s.aad[:]
}

// seal writes chunk i (nonce || ciphertext || tag) into out, which must have
// room for len(plain)+ChunkOverhead bytes, and returns that prefix of out.
// plain may be exactly out[nonceSize:nonceSize+len(plain)] (sealed in place)
// or not overlap out at all.
func (s *sealer) seal(out []byte, i int64, final bool, plain []byte) []byte {
	n := len(plain) + ChunkOverhead
	out = out[:n]
	randomBytes(out[:nonceSize])
	a, nonce := s.gcm(out[:nonceSize])
	a.Seal(out[nonceSize:nonceSize], nonce, plain, s.setAAD(i, final))
	return out
}

// open authenticates chunk i (nonce || ciphertext || tag in ct) and
// decrypts it into dst[:len(ct)-ChunkOverhead], which must not overlap ct.
// Nothing is written to dst unless the chunk authenticates (dst may be
// zeroed on failure). If the chunk only opens with the other final flag,
// the error is ErrTruncated (expected final, found interior) or
// ErrStaleFinal (expected interior, found final); otherwise ErrAuth.
func (s *sealer) open(dst, ct []byte, i int64, final bool) error {
	if len(ct) < ChunkOverhead {
		return fmt.Errorf("chunk %d: short: %w", i, ErrFormat)
	}
	dst = dst[:0]
	a, nonce := s.gcm(ct[:nonceSize])
	body := ct[nonceSize:]
	if _, err := a.Open(dst, nonce, body, s.setAAD(i, final)); err == nil {
		return nil
	}
	if _, err := a.Open(dst, nonce, body, s.setAAD(i, !final)); err == nil {
		clear(dst[:len(body)-tagSize])
		if final {
			return fmt.Errorf("chunk %d: %w", i, ErrTruncated)
		}
		return fmt.Errorf("chunk %d: %w", i, ErrStaleFinal)
	}
	return fmt.Errorf("chunk %d: %w", i, ErrAuth)
}
