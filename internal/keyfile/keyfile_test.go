package keyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/envelope"
)

// cheapArgon2 keeps tests fast; the defaults are exercised once.
var cheapArgon2 = envelope.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	kr, err := envelope.NewKeyring()
	must(t, err)
	path := filepath.Join(dir, "keyring")
	must(t, Save(path, kr, nil, envelope.Argon2Params{}))
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved with mode %v", fi.Mode())
	}
	got, err := Load(path, nil)
	must(t, err)
	if got.Active() != kr.Active() {
		t.Fatal("loaded keyring differs")
	}
	// Overwrite atomically: no temporary files are left behind.
	_, err = kr.Rotate()
	must(t, err)
	must(t, Save(path, kr, []byte("pw"), cheapArgon2))
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d entries", len(ents))
	}
	got, err = Load(path, []byte("pw"))
	if err != nil || got.Active() != kr.Active() {
		t.Fatalf("load sealed: %v", err)
	}
	if _, err := Load(path, []byte("nope")); !errors.Is(err, envelope.ErrPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602} {
		must(t, os.Chmod(path, mode))
		_, err := Load(path, []byte("pw"))
		if !errors.Is(err, ErrPerm) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	must(t, os.Chmod(path, 0o400))
	if _, err := Load(path, []byte("pw")); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
	if _, err := Load(dir, nil); !errors.Is(err, ErrPerm) {
		t.Errorf("directory as key file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key file: %v", err)
	}
}

// TestErrorsSayWhereOnce checks that an error from a damaged key file names
// the file, the line and the class, each once: no "envelope:" or "keyfile:"
// twice (issue 15, item 7).
func TestErrorsSayWhereOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	bad := "securefsd-keyring v1\nactive 7\nkek x AAAA\n"
	must(t, os.WriteFile(path, []byte(bad), 0o600))
	_, err := Load(path, nil)
	if !errors.Is(err, envelope.ErrFormat) {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	for _, once := range []string{"keyfile:", "envelope:", path, "line 3", "malformed"} {
		if strings.Count(msg, once) != 1 {
			t.Errorf("%q appears %d times in %q", once, strings.Count(msg, once), msg)
		}
	}
}

// TestDefaultArgon2 saves with the real default cost once.
func TestDefaultArgon2(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB Argon2id")
	}
	kr, err := envelope.NewKeyring()
	must(t, err)
	path := filepath.Join(t.TempDir(), "k")
	must(t, Save(path, kr, []byte("pw"), envelope.Argon2Params{}))
	data, err := os.ReadFile(path)
	must(t, err)
	if !bytes.Contains(data, []byte("argon2id t=3 m=65536 p=4\n")) {
		t.Fatalf("stored parameters:\n%s", data)
	}
	if _, err := Load(path, []byte("pw")); err != nil {
		t.Fatal(err)
	}
}
