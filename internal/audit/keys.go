package audit

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/securefsd/securefsd/internal/envelope"
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
	key, err := readKey(path, kr)
	if errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, ErrNoAudit
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		key = make([]byte, keySize)
		_, _ = rand.Read(key)
		err = writeKey(path, key, kr)
	}
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
	f, err := os.OpenFile(filepath.Join(dir, keyFileName), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit: key: %w", err)
	}
	if _, err := envelope.Rewrap(f, fi.Size(), kr, envelope.Options{Binding: keyBinding}); err != nil {
		return fmt.Errorf("audit: key: %w", err)
	}
	return nil
}

// keyBinding binds the key file to its job, so that another envelope file
// (the key check, a stored file) cannot stand in for it.
var keyBinding = []byte("securefsd audit key")

func readKey(path string, kr *envelope.Keyring) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	ef, err := envelope.Open(readOnly{f}, fi.Size(), kr, envelope.Options{Binding: keyBinding})
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	key := make([]byte, keySize+1)
	n, err := ef.ReadAt(key, 0)
	if n != keySize {
		return nil, fmt.Errorf("key file has %d bytes, want %d (%v)", n, keySize, err)
	}
	return key[:keySize], nil
}

func writeKey(path string, key []byte, kr *envelope.Keyring) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	ef, err := envelope.Create(f, kr, envelope.Options{Binding: keyBinding})
	if err == nil {
		_, err = ef.WriteAt(key, 0)
		if cerr := ef.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readOnly adapts a read-only *os.File to envelope.Backing.
type readOnly struct{ *os.File }

func (readOnly) WriteAt([]byte, int64) (int, error) { return 0, os.ErrPermission }
func (readOnly) Truncate(int64) error               { return os.ErrPermission }
