package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// All cryptographic primitives of the package are constructed here, and only
// here. The HKDF labels are part of the format (docs/FORMAT.md, "Key
// schedule"): changing one is a format change.
const (
	// aeadXChaCha20Poly1305 and aeadXAES256GCM are the AEAD ids of the
	// content AEADs of format version 1 (header byte 9).
	aeadXChaCha20Poly1305 = byte(XChaCha20Poly1305)
	aeadXAES256GCM        = byte(XAES256GCM)

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
		return nil, fmt.Errorf("derive wrap key: %w", err)
	}
	defer clear(key)
	return chacha20poly1305.NewX(key)
}

// kekID returns the id of a KEK: the first 4 bytes (big-endian) of
// HKDF-SHA256(kek, no salt, labelKEKID). 0 is not a valid id.
func kekID(kek []byte) (uint32, error) {
	b, err := hkdf.Key(sha256.New, kek, nil, labelKEKID, 4)
	if err != nil {
		return 0, fmt.Errorf("derive KEK id: %w", err)
	}
	return binary.BigEndian.Uint32(b), nil
}

// newChunkAEAD returns the AEAD that seals the chunks of the file with the
// given DEK, file id and AEAD id. The AEAD object keeps its own copy of the
// derived key; the caller clears dek.
func newChunkAEAD(aeadID byte, dek []byte, fileID []byte) (cipher.AEAD, error) {
	if !AEAD(aeadID).known() {
		return nil, fmt.Errorf("AEAD id %d: %w", aeadID, ErrVersion)
	}
	key, err := hkdf.Key(sha256.New, dek, fileID, labelChunk+string([]byte{aeadID}), keySize)
	if err != nil {
		return nil, fmt.Errorf("derive chunk key: %w", err)
	}
	defer clear(key)
	if aeadID == aeadXAES256GCM {
		return newXAES256GCM(key)
	}
	return chacha20poly1305.NewX(key)
}

// xaes256gcm is XAES-256-GCM (https://c2sp.org/XAES-256-GCM): AES-256-GCM
// under a key derived per message from the input key and the first 12
// bytes of the 24-byte nonce (a NIST SP 800-108r1 counter KDF with
// CMAC-AES-256: two AES-256 blocks), with the last 12 bytes as the GCM
// nonce. The input key's AES-256 block cipher and CMAC subkey K1 are
// computed once; each Seal and Open derives the message key with two block
// encryptions and builds an AES-256-GCM for it (crypto/aes and
// crypto/cipher allocate that; nothing else does). Safe for concurrent use.
type xaes256gcm struct {
	b  cipher.Block // AES-256 under the input key
	k1 [aes.BlockSize]byte
}

func newXAES256GCM(key []byte) (*xaes256gcm, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("XAES-256-GCM key of %d bytes", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	x := &xaes256gcm{b: b}
	// K1 = L << 1, xor 0x87 into the last byte if L's top bit was set,
	// where L = AES-256(key, 0^128): the CMAC subkey of SP 800-38B.
	var l [aes.BlockSize]byte
	b.Encrypt(l[:], l[:])
	msb := l[0] >> 7
	for i := range l {
		x.k1[i] = l[i] << 1
		if i+1 < len(l) {
			x.k1[i] |= l[i+1] >> 7
		}
	}
	x.k1[len(l)-1] ^= 0x87 * msb // constant time in msb
	return x, nil
}

func (x *xaes256gcm) NonceSize() int { return 24 }
func (x *xaes256gcm) Overhead() int  { return 16 }

// xaesScratch is derive's working memory. The block cipher is an
// interface, so arrays handed to it live on the heap: a sealer keeps one
// scratch for all its chunks.
type xaesScratch struct {
	m [aes.BlockSize]byte
	k [keySize]byte
}

// derive returns the AES-256-GCM of the message key for nonce[:12]:
// AES(key, M1 xor K1) || AES(key, M2 xor K1), Mi = 0x00 || i || "X" ||
// 0x00 || nonce[:12].
func (x *xaes256gcm) derive(scr *xaesScratch, nonce []byte) cipher.AEAD {
	if len(nonce) != 24 {
		panic("envelope: internal error: XAES-256-GCM nonce of wrong size")
	}
	m, k := &scr.m, &scr.k
	clear(m[:])
	m[1], m[2] = 1, 'X'
	copy(m[4:], nonce[:12])
	subtle.XORBytes(m[:], m[:], x.k1[:])
	x.b.Encrypt(k[:16], m[:])
	m[1] ^= 1 ^ 2 // i = 2 (K1 is already in)
	x.b.Encrypt(k[16:], m[:])
	b, err := aes.NewCipher(k[:])
	clear(k[:])
	if err != nil {
		panic("envelope: internal error: " + err.Error())
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("envelope: internal error: " + err.Error())
	}
	return g
}

// Seal and Open make xaes256gcm a cipher.AEAD; the chunk sealer calls
// derive with its own scratch instead (one allocation fewer per chunk).
func (x *xaes256gcm) Seal(dst, nonce, plaintext, additionalData []byte) []byte {
	var scr xaesScratch
	return x.derive(&scr, nonce).Seal(dst, nonce[12:], plaintext, additionalData)
}

func (x *xaes256gcm) Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error) {
	var scr xaesScratch
	return x.derive(&scr, nonce).Open(dst, nonce[12:], ciphertext, additionalData)
}

// newPassphraseAEAD returns the AEAD that seals a keyring under a key derived
// from a passphrase by Argon2id (the key is cleared by the caller).
func newPassphraseAEAD(key []byte) (cipher.AEAD, error) {
	return chacha20poly1305.NewX(key)
}
