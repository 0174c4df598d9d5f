package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupThroughSocket: a backup through the admin socket, with the
// keyring sealed in it; a relative destination and one inside the data
// directory (it would back itself up) are refused; the passphrase reaches
// neither the backup in the clear nor the manifest.
func TestBackupThroughSocket(t *testing.T) {
	l, dir := newLocal(t)
	c := serveSocket(t, l, dir)
	ctx := t.Context()
	for _, dest := range []string{"relative/dir", filepath.Join(dir, "backups")} {
		if _, err := c.Backup(ctx, BackupRequest{Dest: dest}, nil); err == nil {
			t.Errorf("backup into %s succeeded", dest)
		}
	}
	dest := filepath.Join(t.TempDir(), "backups")
	const pass = "a passphrase only the escrow knows"
	var progressed int
	res, err := c.Backup(ctx, BackupRequest{Dest: dest, KeyringPassphrase: []byte(pass)}, func(Progress) { progressed++ })
	if err != nil {
		t.Fatal(err)
	}
	if !res.Keyring || res.Files == 0 || progressed == 0 || !strings.HasPrefix(res.Dir, dest) {
		t.Errorf("backup result %+v, %d progress reports", res, progressed)
	}
	for _, name := range []string{SealedKeyringName, usersDBName, "keycheck"} {
		if _, err := os.Stat(filepath.Join(res.Dir, name)); err != nil {
			t.Errorf("backup lacks %s: %v", name, err)
		}
	}
	filepath.WalkDir(res.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), pass) {
				t.Errorf("%s holds the passphrase", p)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, snapshotDir)); !os.IsNotExist(err) {
		t.Errorf("the snapshot stayed after a complete backup: %v", err)
	}
}
