package keyfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/securefsd/securefsd/internal/envelope"
)

// A secret key file holds one random key of a component (the audit
// trail's, the users database's) as an envelope file wrapped by the
// keyring, bound to the component's binding context: a copy of the data
// directory without the keyring holds no usable key, `key rotate`
// re-wraps it (RewrapSecret) without changing the key, and another
// envelope file cannot stand in for it.

// LoadSecret returns the key of size bytes in the secret key file at path,
// opened with kr and binding. With create, a missing file is made: a fresh
// random key, mode 0600, written atomically; without, a missing file is an
// error wrapping fs.ErrNotExist. The caller clears the key when done.
func LoadSecret(path string, kr *envelope.Keyring, binding []byte, size int, create bool) ([]byte, error) {
	key, err := readSecret(path, kr, binding, size)
	if errors.Is(err, fs.ErrNotExist) && create {
		key = make([]byte, size)
		rand.Read(key)
		err = writeSecret(path, key, kr, binding)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func readSecret(path string, kr *envelope.Keyring, binding []byte, size int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r, err := envelope.NewReader(f, fi.Size(), kr, envelope.Options{Binding: binding})
	if err != nil {
		return nil, err
	}
	key, err := io.ReadAll(io.LimitReader(r, int64(size)+1))
	if err != nil {
		return nil, err
	}
	if len(key) != size {
		clear(key)
		return nil, fmt.Errorf("holds %d bytes, want %d: %w", len(key), size, envelope.ErrFormat)
	}
	return key, nil
}

func writeSecret(path string, key []byte, kr *envelope.Keyring, binding []byte) error {
	var buf bytes.Buffer
	w, err := envelope.NewWriter(&buf, kr, envelope.Options{Binding: binding})
	if err != nil {
		return err
	}
	if _, err := w.Write(key); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return replace(path, buf.Bytes())
}

// RewrapSecret re-wraps the secret key file at path under kr's active KEK
// (key rotation; the key itself does not change). A missing file is not
// an error: the component is not in use here.
func RewrapSecret(path string, kr *envelope.Keyring, binding []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	if _, err := envelope.Rewrap(f, fi.Size(), kr, envelope.Options{Binding: binding}); err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return nil
}
