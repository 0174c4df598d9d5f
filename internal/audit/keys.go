package audit

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/keyfile"
)

// All primitives of the package are constructed here. The HKDF labels are
// part of the trail's format (docs/AUDIT.md): changing one is a format
// change.
const (
	labelRecord   = "securefsd/v1 audit record"
	labelLogNames = "securefsd/v1 log names"
	keySize       = 32
	keyFileName   = "key"
)

// ErrNoAudit means the directory holds no audit trail (no key file).
var ErrNoAudit = errors.New("audit: no audit trail here (no key file)")

// Keys are the keys derived from a trail's audit key. Safe for concurrent
// use.
type Keys struct {
	aead  cipher.AEAD
	names []byte
}

// LoadKeys opens the audit key of dir with the keyring. With create, a
// missing key file is made (a fresh random key, 0600, fsynced); without, it
// is ErrNoAudit.
func LoadKeys(dir string, kr *envelope.Keyring, create bool) (*Keys, error) {
	path := filepath.Join(dir, keyFileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, ErrNoAudit
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	key, err := keyfile.LoadSecret(path, kr, keyBinding, keySize, create)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	defer clear(key)
	return newKeys(key)
}

func newKeys(key []byte) (*Keys, error) {
	rk, err := hkdf.Key(sha256.New, key, nil, labelRecord, keySize)
	if err != nil {
		return nil, err
	}
	defer clear(rk)
	a, err := chacha20poly1305.NewX(rk)
	if err != nil {
		return nil, err
	}
	nk, err := hkdf.Key(sha256.New, key, nil, labelLogNames, keySize)
	if err != nil {
		return nil, err
	}
	return &Keys{aead: a, names: nk}, nil
}

// NameToken returns a keyed hash of name for the operational log
// (--log-names hash): the same name gives the same token under the same
// audit key, and without the key the token says nothing about the name.
func (k *Keys) NameToken(name string) string {
	m := hmac.New(sha256.New, k.names)
	m.Write([]byte(name))
	return "h:" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// RewrapKey re-wraps dir's key file under kr's active KEK (key rotation).
// A directory without a trail is not an error.
func RewrapKey(dir string, kr *envelope.Keyring) error {
	if err := keyfile.RewrapSecret(filepath.Join(dir, keyFileName), kr, keyBinding); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// keyBinding binds the key file to its job, so that another envelope file
// (the key check, a stored file) cannot stand in for it.
var keyBinding = []byte("securefsd audit key")

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
