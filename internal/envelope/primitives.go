package envelope

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// All cryptographic primitives of the package are constructed here, and only
// here. The HKDF labels are part of the format (docs/FORMAT.md, "Key
// schedule"): changing one is a format change.
const (
	// aeadXChaCha20Poly1305 is the AEAD id of XChaCha20-Poly1305, the only
	// content AEAD of format version 1.
	aeadXChaCha20Poly1305 byte = 1

	// labelWrap is the HKDF info that derives a KEK's wrapping key.
	labelWrap = "securefsd/v1 kek wrap"
	// labelKEKID is the HKDF info that derives a KEK's 32-bit id (a
	// fingerprint: a different key has, but for a 2^-32 chance, another id).
	labelKEKID = "securefsd/v1 kek id"
	// labelChunk is the HKDF info prefix (followed by the AEAD id byte)
	// that derives a file's chunk key from its DEK, salted with the file id.
	labelChunk = "securefsd/v1 chunk"

	keySize   = 32 // KEK, DEK and derived keys
	nonceSize = chacha20poly1305.NonceSizeX
	tagSize   = chacha20poly1305.Overhead
)

// randomBytes fills b from crypto/rand. Since Go 1.24, crypto/rand.Read never
// returns an error (the program crashes instead of producing weak bytes).
func randomBytes(b []byte) {
	_, _ = rand.Read(b)
}

// newWrapAEAD returns the AEAD that wraps DEKs under kek.
func newWrapAEAD(kek []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, kek, nil, labelWrap, keySize)
	if err != nil {
		return nil, fmt.Errorf("envelope: derive wrap key: %w", err)
	}
	defer clear(key)
	return chacha20poly1305.NewX(key)
}

// kekID returns the id of a KEK: the first 4 bytes (big-endian) of
// HKDF-SHA256(kek, no salt, labelKEKID). 0 is not a valid id.
func kekID(kek []byte) (uint32, error) {
	b, err := hkdf.Key(sha256.New, kek, nil, labelKEKID, 4)
	if err != nil {
		return 0, fmt.Errorf("envelope: derive KEK id: %w", err)
	}
	return binary.BigEndian.Uint32(b), nil
}

// newChunkAEAD returns the AEAD that seals the chunks of the file with the
// given DEK, file id and AEAD id. The AEAD object keeps its own copy of the
// derived key; the caller clears dek.
func newChunkAEAD(aeadID byte, dek []byte, fileID []byte) (cipher.AEAD, error) {
	if aeadID != aeadXChaCha20Poly1305 {
		return nil, fmt.Errorf("envelope: AEAD id %d: %w", aeadID, ErrVersion)
	}
	key, err := hkdf.Key(sha256.New, dek, fileID, labelChunk+string([]byte{aeadID}), keySize)
	if err != nil {
		return nil, fmt.Errorf("envelope: derive chunk key: %w", err)
	}
	defer clear(key)
	return chacha20poly1305.NewX(key)
}

// newPassphraseAEAD returns the AEAD that seals a keyring under a key derived
// from a passphrase by Argon2id (the key is cleared by the caller).
func newPassphraseAEAD(key []byte) (cipher.AEAD, error) {
	return chacha20poly1305.NewX(key)
}
