// Package keyfile stores securefsd's keyring in a file: the encoding of
// envelope.MarshalKeyring (plain, or sealed with a passphrase), kept with
// mode 0600. It owns the file I/O the pure format package does not do: the
// permission check when loading, and the atomic replace (temporary file in
// the same directory, fsync, rename, fsync of the directory) when saving.
//
// It imports only the standard library and internal/envelope
// (scripts/check-imports.sh). Threat notes: a plain key file holds every
// KEK; anyone who can read it can read every stored file. Load therefore
// refuses a file that group or others may access (ErrPerm) rather than warn.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/securefsd/securefsd/internal/atomicfile"
	"github.com/securefsd/securefsd/internal/envelope"
)

// ErrPerm: Load refuses a key file that is not a regular file or that
// group or others may access.
var ErrPerm = errors.New("unsafe key file permissions")

// Load reads the keyring in the key file at path (see envelope.ParseKeyring;
// passphrase nil for a plain key file). It refuses, with ErrPerm, a file
// that is not regular or that group or others may read or write: chmod 600
// it, or keep it on a secrets mount. Errors of the encoding keep their
// envelope sentinels (envelope.ErrPassphrase, envelope.ErrFormat).
func Load(path string, passphrase []byte) (*envelope.Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err) // *PathError: names path
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keyfile: %s is not a regular file: %w", path, ErrPerm)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keyfile: %s has mode %04o, so group or others can access it; "+
			"run \"chmod 600 %s\" (and check who could have read it): %w", path, perm, path, ErrPerm)
	}
	data, err := io.ReadAll(io.LimitReader(f, envelope.MaxKeyringSize+1))
	defer clear(data)
	if err != nil {
		return nil, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	k, err := envelope.ParseKeyring(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return k, nil
}

// Save writes k to path atomically (temporary file in the same directory,
// fsync, rename, fsync of the directory) with mode 0600: plain if
// passphrase is nil, else sealed with Argon2id parameters p (zero value:
// envelope.DefaultArgon2Params).
func Save(path string, k *envelope.Keyring, passphrase []byte, p envelope.Argon2Params) error {
	data, err := envelope.MarshalKeyring(k, passphrase, p)
	if err != nil {
		return fmt.Errorf("keyfile: save %s: %w", path, err)
	}
	defer clear(data)
	if err := replace(path, data); err != nil {
		return fmt.Errorf("keyfile: save %s: %w", path, err)
	}
	return nil
}

// replace writes data to path through a temporary file and a rename, so
// that a crash leaves the old or the new file, never a partial one.
func replace(path string, data []byte) error { return atomicfile.Write(path, data) }
