package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/keyfile"
	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// KeyFile is where the keyring lives on disk and how it is sealed.
type KeyFile struct {
	Path       string
	Passphrase []byte // nil: a plain 0600 key file
}

// Load reads the keyring.
func (k KeyFile) Load() (*envelope.Keyring, error) {
	return keyfile.Load(k.Path, k.Passphrase)
}

// Save writes the keyring atomically, 0600.
func (k KeyFile) Save(kr *envelope.Keyring) error {
	return keyfile.Save(k.Path, kr, k.Passphrase, envelope.Argon2Params{})
}

// Local runs management operations on a database and store this process
// has open. It is safe for concurrent use.
type Local struct {
	Users *users.DB
	Store *vfs.Store
	Keys  KeyFile
	// KeyCheck is the path of the key-check file (see CheckKey); rotation
	// re-wraps it with the store's files.
	KeyCheck string
	// AuditDir is the audit trail's directory: rotation re-wraps its key
	// file, so old segments stay readable ("": no trail).
	AuditDir string
	// UsersKey is the path of the users database's key file (sealed
	// users.db, users.Options.Key): rotation re-wraps it ("": none).
	UsersKey string
	// IndexKey is the path of storage v2's index key file (vfs.Options.
	// IndexKey): rotation re-wraps it ("": none, a version 1 store).
	IndexKey string
	// Policy is applied to every password set through this Local (user
	// add, user passwd); nil means pwpolicy.Default().
	Policy *pwpolicy.Policy
	// Now is the clock of invitations' and share links' expiry (nil:
	// time.Now; tests move it).
	Now func() time.Time
	// BaseURL is where the server's web pages are reached from outside
	// (serve --public-url, else its own HTTPS address), without a trailing
	// slash; "" when unknown (no server). Created links and invitations
	// carry it so the CLI prints them with the server's setting.
	BaseURL string
	// RotationProgress, if set, is told the re-wrap's progress during a
	// key rotation (metrics).
	RotationProgress func(done, total int)
	// Sessions are the running server's live sessions, by protocol (none:
	// no server; the session operations then say ErrNoServer).
	Sessions []SessionSource

	mu      sync.Mutex // serializes rotations
	ringMu  sync.Mutex
	keyring *envelope.Keyring
}

// NewLocal returns a Local using keyring kr (already loaded from keys).
func NewLocal(db *users.DB, store *vfs.Store, keys KeyFile, keyCheck string, kr *envelope.Keyring) *Local {
	return &Local{Users: db, Store: store, Keys: keys, KeyCheck: keyCheck, keyring: kr}
}

// Keyring returns the keyring currently in use.
func (l *Local) Keyring() *envelope.Keyring {
	l.ringMu.Lock()
	defer l.ringMu.Unlock()
	return l.keyring
}

func (l *Local) setKeyring(kr *envelope.Keyring) {
	l.ringMu.Lock()
	l.keyring = kr
	l.ringMu.Unlock()
	l.Store.SetKeyring(kr)
}

// AddUser implements Manager.
func (l *Local) AddUser(ctx context.Context, req AddUserRequest) error {
	perms := users.PermAll
	if req.Perms != "" {
		p, err := users.ParsePerm(req.Perms)
		if err != nil {
			return err
		}
		perms = p
	}
	if req.ReadOnly {
		perms = users.PermReadOnly
	}
	u := users.User{
		Name:       req.Name,
		Home:       req.Name,
		Perms:      perms,
		QuotaBytes: req.QuotaBytes,
		QuotaFiles: req.QuotaFiles,
		Admin:      req.Admin,
	}
	if req.Password != nil {
		if err := l.policy().Check(req.Name, req.Password); err != nil {
			return err
		}
	}
	if err := l.checkHome(ctx, u, req.ReuseHome); err != nil {
		return err
	}
	if err := l.Users.Add(ctx, u, req.Password); err != nil {
		return err
	}
	for _, k := range req.Keys {
		if _, err := l.Users.AddKey(ctx, req.Name, k); err != nil {
			_ = l.Users.Delete(ctx, req.Name)
			return err
		}
	}
	// Create the home now so a first login finds it and errors surface here.
	if _, err := account.Open(l.Store, u); err != nil {
		return fmt.Errorf("create home of %s: %w", req.Name, err)
	}
	return nil
}

// checkHome refuses a new user whose home directory the store already
// holds, unless reuse: it is what `user del` without --purge leaves, and
// the new account would silently get the old account's files. A home that
// belongs to another existing user is refused even with reuse.
func (l *Local) checkHome(ctx context.Context, u users.User, reuse bool) error {
	dir := account.Dir(u)
	leftover, err := l.Store.HasHome(dir)
	if errors.Is(err, vfs.ErrInvalidName) {
		return nil // no such home can exist; Add refuses the name
	}
	if err != nil || !leftover {
		return err
	}
	us, err := l.Users.List(ctx)
	if err != nil {
		return err
	}
	for _, o := range us {
		switch {
		case o.Name == u.Name:
			return nil // the user exists: Add says so
		case account.Dir(o) == dir:
			return fmt.Errorf("home %q of new user %s belongs to user %s: %w", dir, u.Name, o.Name, users.ErrExists)
		}
	}
	if !reuse {
		return fmt.Errorf("%w: %s (give --reuse-home to give them to the new user)", ErrHomeExists, u.Name)
	}
	return nil
}

// KeyFile implements Manager.
func (l *Local) KeyFile(context.Context) (string, error) { return l.Keys.Path, nil }

// SetPassword implements Manager.
func (l *Local) SetPassword(ctx context.Context, name string, password []byte) error {
	if err := l.policy().Check(name, password); err != nil {
		return err
	}
	return l.Users.SetPassword(ctx, name, password)
}

func (l *Local) policy() pwpolicy.Policy {
	if l.Policy == nil {
		return pwpolicy.Default()
	}
	return *l.Policy
}

// SetDisabled implements Manager.
func (l *Local) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return l.Users.Update(ctx, name, func(u *users.User) error {
		u.Disabled = disabled
		return nil
	})
}

// DeleteUser implements Manager. With purge, the user is disabled first,
// then the home is removed, then the record: interrupted at any point, the
// same command finishes the job.
func (l *Local) DeleteUser(ctx context.Context, name string, purge bool, progress func(Progress)) error {
	u, err := l.Users.Get(ctx, name)
	if err != nil {
		return err
	}
	if purge {
		if err := l.SetDisabled(ctx, name, true); err != nil {
			return err
		}
		report(progress, Progress{Stage: "purge", Item: u.Home})
		if err := l.Store.RemoveHome(ctx, u.Home); err != nil {
			return fmt.Errorf("purge home of %s: %w", name, err)
		}
	}
	if err := l.Users.Delete(ctx, name); err != nil {
		return err
	}
	report(progress, Progress{Stage: "deleted", Item: name, Done: 1, Total: 1})
	return nil
}

// ListUsers implements Manager. Password hashes, TOTP secrets, recovery
// code and app password hashes stay in the database.
func (l *Local) ListUsers(ctx context.Context) ([]users.User, error) {
	us, err := l.Users.List(ctx)
	for i := range us {
		us[i].PasswordHash = ""
		if tf := us[i].TwoFactor; tf != nil {
			us[i].TwoFactor = &users.TwoFactor{Recovery: make([]string, len(tf.Recovery)), Enrolled: tf.Enrolled}
		}
		for j := range us[i].AppPasswords {
			us[i].AppPasswords[j].Hash = ""
		}
	}
	return us, err
}

// AddKey implements Manager.
func (l *Local) AddKey(ctx context.Context, name, line string) (users.Key, error) {
	return l.Users.AddKey(ctx, name, line)
}

// DelKey implements Manager.
func (l *Local) DelKey(ctx context.Context, name, fp string) error {
	return l.Users.DelKey(ctx, name, fp)
}

// RotateKey implements Manager.
func (l *Local) RotateKey(ctx context.Context, progress func(Progress)) error {
	l.mu.Lock()
	defer l.mu.Unlock()

	kr := l.Keyring().Clone()
	if len(kr.IDs()) == 1 {
		id, err := kr.Rotate()
		if err != nil {
			return fmt.Errorf("new key: %w", err)
		}
		// Save before using it: a crash from here on leaves a keyring that
		// holds both the old and the new KEK, and a re-run resumes.
		if err := l.Keys.Save(kr); err != nil {
			return fmt.Errorf("save keyring: %w", err)
		}
		report(progress, Progress{Stage: "new-key", Item: fmt.Sprintf("kek %d", id)})
	} else {
		report(progress, Progress{Stage: "resume", Item: fmt.Sprintf("kek %d", kr.Active())})
	}
	l.setKeyring(kr)

	// Sweep, then prove that no header names an old KEK before retiring
	// it: a file that moved during a sweep is caught by the next round.
	// Retiring a KEK some file still uses would lose that file.
	const rounds = 5
	clean := false
	for round := 0; round < rounds && !clean; round++ {
		err := l.Store.Rewrap(ctx, func(done, total int, name string) {
			report(progress, Progress{Stage: "rewrap", Done: done, Total: total, Item: name})
			if l.RotationProgress != nil {
				l.RotationProgress(done, total)
			}
		})
		if err != nil {
			return fmt.Errorf("re-wrap: %w", err)
		}
		if err := rewrapFile(l.KeyCheck, kr); err != nil {
			return fmt.Errorf("re-wrap key check: %w", err)
		}
		if l.AuditDir != "" {
			if err := audit.RewrapKey(l.AuditDir, kr); err != nil {
				return fmt.Errorf("re-wrap audit key: %w", err)
			}
		}
		if l.UsersKey != "" {
			if err := keyfile.RewrapSecret(l.UsersKey, kr, users.KeyBinding); err != nil {
				return fmt.Errorf("re-wrap users database key: %w", err)
			}
		}
		if l.IndexKey != "" {
			if err := keyfile.RewrapSecret(l.IndexKey, kr, vfs.IndexKeyBinding); err != nil {
				return fmt.Errorf("re-wrap index key: %w", err)
			}
		}
		inUse, err := l.Store.KeyIDsInUse(ctx)
		if err != nil {
			return fmt.Errorf("check key use: %w", err)
		}
		clean = len(inUse) == 0 || (len(inUse) == 1 && inUse[kr.Active()] > 0)
		if !clean {
			report(progress, Progress{Stage: "recheck", Item: fmt.Sprintf("%d key ids still in use", len(inUse))})
		}
	}
	if !clean {
		return errors.New("some files still use an old key (busy or unreadable): the old key is kept; run key rotate again")
	}

	retired := kr.Clone()
	for _, id := range retired.IDs() {
		if id != retired.Active() {
			if err := retired.Remove(id); err != nil {
				return err
			}
		}
	}
	if err := l.Keys.Save(retired); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	l.setKeyring(retired)
	report(progress, Progress{Stage: "done", Item: fmt.Sprintf("kek %d", retired.Active())})
	return nil
}

// Verify implements Manager.
func (l *Local) Verify(ctx context.Context, user string, damaged func(Damage)) (VerifyResult, error) {
	home := ""
	if user != "" {
		u, err := l.Users.Get(ctx, user)
		if err != nil {
			return VerifyResult{}, err
		}
		home = u.Home
	}
	var res VerifyResult
	checked, err := l.Store.Verify(ctx, home, func(path string, err error) {
		res.Damaged++
		if damaged != nil {
			damaged(Damage{Path: path, Error: err.Error()})
		}
	})
	res.Checked = checked
	if err != nil || user != "" {
		return res, err
	}
	// The users database's sealed records (a record moved to another
	// name, or damaged, is reported like a damaged file).
	records, err := l.Users.Verify(func(bucket string, err error) {
		res.Damaged++
		if damaged != nil {
			damaged(Damage{Path: "users.db: " + bucket, Error: err.Error()})
		}
	})
	res.Records = records
	return res, err
}

func report(fn func(Progress), p Progress) {
	if fn != nil {
		fn(p)
	}
}

// keyCheckText is what the key-check file decrypts to.
const keyCheckText = "securefsd key check v1\n"

// ErrWrongKey means the keyring does not open this data directory.
var ErrWrongKey = errors.New("the keyring does not open this data directory (wrong key file or passphrase)")

// CheckKey proves that kr opens the data directory, using a small
// envelope file written when the data directory was made. It creates the
// file if it is missing (first run).
func CheckKey(path string, kr *envelope.Keyring) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return writeKeyCheck(path, kr)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	ef, err := envelope.Open(readOnly{f}, fi.Size(), kr, envelope.Options{})
	if err != nil {
		if errors.Is(err, envelope.ErrUnknownKey) || errors.Is(err, envelope.ErrAuth) {
			return fmt.Errorf("%w: %v", ErrWrongKey, err)
		}
		return fmt.Errorf("key check %s: %w", path, err)
	}
	defer ef.Close()
	buf := make([]byte, len(keyCheckText)+1)
	n, err := ef.ReadAt(buf, 0)
	if string(buf[:n]) != keyCheckText {
		return fmt.Errorf("%w: key check content mismatch (%v)", ErrWrongKey, err)
	}
	return nil
}

func writeKeyCheck(path string, kr *envelope.Keyring) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	ef, err := envelope.Create(f, kr, envelope.Options{})
	if err == nil {
		_, err = ef.WriteAt([]byte(keyCheckText), 0)
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
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write key check: %w", err)
	}
	return os.Rename(tmp, path)
}

func rewrapFile(path string, kr *envelope.Keyring) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	_, err = envelope.Rewrap(f, fi.Size(), kr, envelope.Options{})
	return err
}

// readOnly adapts a read-only *os.File to envelope.Backing; the key check
// never writes.
type readOnly struct{ *os.File }

func (r readOnly) WriteAt([]byte, int64) (int, error) { return 0, os.ErrPermission }
func (r readOnly) Truncate(int64) error               { return os.ErrPermission }
