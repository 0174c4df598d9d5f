package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/backup"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/users"
)

// BackupRequest asks for an online backup (securefsd backup).
type BackupRequest struct {
	// Dest is the backup directory (absolute): the backup goes to
	// Dest/<id>, resumed if a run was stopped, incremental against the
	// newest complete backup there.
	Dest string `json:"dest"`
	// KeyringPassphrase, if set, puts the keyring into the backup sealed
	// with it (--include-keyring); never the keyring in the clear.
	KeyringPassphrase []byte `json:"keyring_passphrase,omitempty"`
}

// BackupResult is a finished backup.
type BackupResult struct {
	Dir     string        `json:"dir"`
	Files   int           `json:"files"`
	Bytes   int64         `json:"bytes"`
	Linked  int           `json:"linked"`
	Resumed int           `json:"resumed"`
	Frozen  time.Duration `json:"frozen"` // how long the store was frozen for the snapshot (0: a stopped run's snapshot was reused)
	Keyring bool          `json:"keyring"`
}

// BackupManager makes online backups.
type BackupManager interface {
	Backup(ctx context.Context, req BackupRequest, progress func(Progress)) (BackupResult, error)
}

// Names in a backup (and in the data directory it restores to).
const (
	snapshotDir       = ".backup-snapshot"
	snapshotComplete  = "COMPLETE"
	SealedKeyringName = "keyring.sealed"
	usersDBName       = "users.db"
	backupAuditDir    = "audit"
)

// Backup implements BackupManager: a snapshot of the store, the users
// database, its key file, the key check and the audit trail, all of one
// moment (taken while vfs.Store.Snapshot holds the store frozen), then
// copied to req.Dest (internal/backup). A snapshot a stopped run left is
// reused, so the rerun resumes that backup. Not during a key rotation:
// both hold l.mu.
func (l *Local) Backup(ctx context.Context, req BackupRequest, progress func(Progress)) (BackupResult, error) {
	var res BackupResult
	if !filepath.IsAbs(req.Dest) {
		return res, fmt.Errorf("backup: destination %q is not an absolute path", req.Dest)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	dataDir := filepath.Dir(l.KeyCheck)
	if under(req.Dest, dataDir) {
		return res, fmt.Errorf("backup: destination %s is inside the data directory", req.Dest)
	}
	root := filepath.Join(dataDir, snapshotDir)
	id, err := os.ReadFile(filepath.Join(root, snapshotComplete))
	if err != nil || !validID(string(id)) {
		if id, res.Frozen, err = l.snapshot(ctx, root); err != nil {
			return res, err
		}
	} else {
		report(progress, Progress{Stage: "resume", Item: string(id)})
	}
	snap := filepath.Join(root, string(id))
	sealed := filepath.Join(snap, SealedKeyringName)
	os.Remove(sealed)
	if req.KeyringPassphrase != nil {
		data, err := envelope.MarshalKeyring(l.Keyring(), req.KeyringPassphrase, envelope.DefaultArgon2Params())
		if err == nil {
			err = os.WriteFile(sealed, data, 0o600)
		}
		if err != nil {
			return res, fmt.Errorf("backup: sealed keyring: %w", err)
		}
		res.Keyring = true
	}
	if err := os.MkdirAll(req.Dest, 0o700); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	out, err := backup.Copy(ctx, snap, req.Dest, func(p backup.Progress) {
		report(progress, Progress{Stage: "copy", Done: p.Files, Total: p.TotalFiles, Item: fmt.Sprintf("%d/%d bytes", p.Bytes, p.TotalBytes)})
	})
	if err != nil {
		return res, fmt.Errorf("backup: %w (run it again to resume)", err)
	}
	if err := os.RemoveAll(root); err != nil {
		return res, fmt.Errorf("backup: remove the snapshot: %w", err)
	}
	res.Dir, res.Files, res.Bytes, res.Linked, res.Resumed = out.Dir, out.Files, out.Bytes, out.Linked, out.Resumed
	return res, nil
}

// snapshot takes a new snapshot under root (removing a stopped one) and
// marks it complete.
func (l *Local) snapshot(ctx context.Context, root string) ([]byte, time.Duration, error) {
	if err := os.RemoveAll(root); err != nil {
		return nil, 0, fmt.Errorf("backup: %w", err)
	}
	id := time.Now().UTC().Format("20060102T150405Z")
	snap := filepath.Join(root, id)
	if err := os.MkdirAll(snap, 0o700); err != nil {
		return nil, 0, fmt.Errorf("backup: %w", err)
	}
	st, err := l.Store.Snapshot(ctx, filepath.Join(snap, "store"), func() error {
		if err := l.Users.CopyTo(filepath.Join(snap, usersDBName)); err != nil {
			return err
		}
		for _, f := range []string{l.KeyCheck, l.UsersKey, l.IndexKey} {
			if f == "" {
				continue
			}
			if err := copyPlain(f, filepath.Join(snap, filepath.Base(f))); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		if l.AuditDir != "" {
			return copyDir(l.AuditDir, filepath.Join(snap, backupAuditDir))
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("backup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, snapshotComplete), []byte(id), 0o600); err != nil {
		return nil, 0, fmt.Errorf("backup: %w", err)
	}
	return []byte(id), st.Frozen, nil
}

func validID(id string) bool {
	_, err := time.Parse("20060102T150405Z", id)
	return err == nil
}

func under(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && (rel == "." || !strings.HasPrefix(rel, ".."))
}

// copyPlain copies a small state file (the key check, the users key:
// envelope files, encrypted).
func copyPlain(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// copyDir copies the audit trail's directory (segments are appended to
// by the trail's writer: a record written during the copy may be cut at
// the end, as after a crash, which the trail recovers from).
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type().IsRegular():
			return copyPlain(p, target)
		}
		return nil
	})
}

// The admin socket's side.

type backupHandler struct {
	m   BackupManager
	log *slog.Logger
}

func routeBackup(mux *http.ServeMux, m Manager, log *slog.Logger) {
	bm, ok := m.(BackupManager)
	if !ok {
		return
	}
	h := &backupHandler{m: bm, log: log}
	mux.HandleFunc("POST /v1/backup", h.backup)
}

func (h *backupHandler) backup(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var req BackupRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err))
		return
	}
	defer clear(req.KeyringPassphrase)
	h.log.Info("admin: backup started", "dest", req.Dest, "keyring", req.KeyringPassphrase != nil)
	res, err := h.m.Backup(r.Context(), req, func(p Progress) { s.send(event{Progress: &p}) })
	h.log.Info("admin: backup finished", "dir", res.Dir, "files", res.Files, "linked", res.Linked, "resumed", res.Resumed, "frozen", res.Frozen, "err", err)
	if err == nil {
		s.send(event{Backup: &res})
	}
	s.finish(err)
}

// Backup implements BackupManager.
func (c *Client) Backup(ctx context.Context, req BackupRequest, progress func(Progress)) (BackupResult, error) {
	var res BackupResult
	err := c.call(ctx, "POST", "/v1/backup", req, func(ev event) {
		if ev.Progress != nil {
			report(progress, *ev.Progress)
		}
		if ev.Backup != nil {
			res = *ev.Backup
		}
	})
	return res, err
}

// Backup implements BackupManager, recording the backup in the trail.
func (m *audited) Backup(ctx context.Context, req BackupRequest, progress func(Progress)) (BackupResult, error) {
	bm, ok := m.Manager.(BackupManager)
	if !ok {
		return BackupResult{}, errUnsupported
	}
	res, err := bm.Backup(ctx, req, progress)
	m.rec(ctx, audit.OpBackup, "", fmt.Sprintf("dir=%s files=%d keyring=%v", res.Dir, res.Files, res.Keyring), err)
	return res, err
}

var _ BackupManager = (*Local)(nil)
