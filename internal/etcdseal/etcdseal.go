// Package etcdseal names and seals what a cluster keeps in etcd beside the
// index and the users database (browser sessions, WebDAV locks): a key's
// name is a keyed hash, so etcd sees no user, path or token, and a value is
// encrypted with XChaCha20-Poly1305 bound to its key, so a value moved
// under another key does not open. Both subkeys come from one 32-byte
// secret every node has, with HKDF labels the caller chooses.
package etcdseal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrOpen: a value is too short, damaged, bound to another key or sealed
// under another secret.
var ErrOpen = errors.New("etcdseal: value does not open")

// Sealer names keys and seals values. Safe for concurrent use.
type Sealer struct {
	names []byte
	aead  cipher.AEAD
}

// New derives the naming and sealing subkeys of secret (32 bytes) under
// the HKDF labels namesLabel and valuesLabel. Changing a label makes every
// stored name or value unreadable.
func New(secret []byte, namesLabel, valuesLabel string) (*Sealer, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("etcdseal: a %d-byte secret, want 32", len(secret))
	}
	nk, err := hkdf.Key(sha256.New, secret, nil, namesLabel, 32)
	if err != nil {
		return nil, err
	}
	vk, err := hkdf.Key(sha256.New, secret, nil, valuesLabel, 32)
	if err != nil {
		return nil, err
	}
	a, err := chacha20poly1305.NewX(vk)
	clear(vk)
	if err != nil {
		return nil, err
	}
	return &Sealer{names: nk, aead: a}, nil
}

// Name is the key name of v of kind: hex of HMAC-SHA256(names subkey,
// kind || 0 || v), first 16 bytes.
func (s *Sealer) Name(kind string, v []byte) string {
	m := hmac.New(sha256.New, s.names)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(v)
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Seal encrypts plain bound to key: nonce (24) || ciphertext and tag.
func (s *Sealer) Seal(key string, plain []byte) []byte {
	out := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(out)
	return s.aead.Seal(out, out, plain, []byte(key))
}

// Open decrypts what Seal made under key (ErrOpen otherwise).
func (s *Sealer) Open(key string, sealed []byte) ([]byte, error) {
	n := chacha20poly1305.NonceSizeX
	if len(sealed) < n+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrOpen)
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(key))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
