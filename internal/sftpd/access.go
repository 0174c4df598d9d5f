package sftpd

import (
	"context"
	"errors"
	"fmt"
	"github.com/securefsd/securefsd/internal/account"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// errRevoked: the user's record changed so that this connection may no
// longer act for them (disabled, deleted, password or login key changed).
// It matches fs.ErrPermission, so a request that meets it is "permission
// denied" for the client, whose connection is being closed anyway.
var errRevoked = fmt.Errorf("sftpd: access revoked: %w", fs.ErrPermission)

// login is what a connection proved when it logged in: the user record it
// matched and how.
type login struct {
	user   users.User
	method string // "password" or "publickey"
	keyFP  string // publickey: SHA256 fingerprint of the key used
	app    string // password: the id of the app password used ("" = the account password)
}

// grant is the rights a connection acts with: the home view (whose Perm the
// vfs enforces) and the quota set on the home.
type grant struct {
	fs      *vfs.FS
	perm    users.Perm
	quota   vfs.Quota
	folders []users.FolderAccess // the shared folders in fs, with the rights there
}

// access keeps one connection's rights in step with the user database.
// Every request calls current: while the database's revision is unchanged
// that is two atomic loads; after any change the user is read once and the
// connection either takes the new rights (permissions, quota) or is ended
// (user disabled or deleted, home changed, the password it logged in with
// changed, the key it logged in with removed). Server.watchUsers runs the
// same check for idle connections, so a revoked connection ends even
// without a request.
type access struct {
	db    *users.DB
	store *vfs.Store
	log   *slog.Logger
	login login
	// revoke ends the connection; called at most once, with the reason.
	revoke func(reason string)
	// deny is the view taken once revoked: the same home with no rights,
	// so work already under way fails at its next step.
	deny *grant

	mu      sync.Mutex // serialises re-checks
	rev     atomic.Uint64
	cur     atomic.Pointer[grant]
	revoked atomic.Bool
}

// newAccess checks the user once more (the record may have changed since
// the login callback read it) and opens the home with the rights the
// record gives now. It returns the reason instead when the connection may
// not start.
func newAccess(db *users.DB, store *vfs.Store, log *slog.Logger, l login, revoke func(string)) (*access, string, error) {
	a := &access{db: db, store: store, log: log, login: l, revoke: revoke}
	rev := db.Revision() // before Get: a change during Get is seen next time
	u, err := db.Get(context.Background(), l.user.Name)
	if reason := a.verdict(u, err); reason != "" {
		return nil, reason, nil
	}
	acc, err := db.Access(context.Background(), u.Name)
	if err != nil {
		return nil, "", fmt.Errorf("sftpd: folders of %q: %w", u.Name, err)
	}
	g, err := a.open(u, acc)
	if err != nil {
		return nil, "", err
	}
	denyFS, err := store.Home(account.Dir(u), vfs.HomeOptions{Quota: g.quota, Perm: 0})
	if err != nil {
		return nil, "", fmt.Errorf("sftpd: open home %q: %w", account.Dir(u), err)
	}
	a.deny = &grant{fs: denyFS, quota: g.quota}
	a.cur.Store(g)
	a.rev.Store(rev)
	return a, "", nil
}

// staticAccess is an access that never changes (tests that drive a session
// without a user database).
func staticAccess(f *vfs.FS, perm users.Perm) *access {
	a := &access{}
	a.cur.Store(&grant{fs: f, perm: perm})
	return a
}

// open returns the home view for u's current rights. Store.Home also
// updates the home's quota, shared by every view of it.
func (a *access) open(u users.User, folders []users.FolderAccess) (*grant, error) {
	opts := account.Options(u)
	f, err := account.OpenViewWith(a.store, u, folders)
	if err != nil {
		return nil, fmt.Errorf("sftpd: open home %q: %w", account.Dir(u), err)
	}
	return &grant{fs: f, perm: u.Perms, quota: opts.Quota, folders: folders}, nil
}

// current returns the rights to use for the next request, or errRevoked
// (with the no-rights view) once the connection may no longer act.
func (a *access) current() (*grant, error) {
	if a.db == nil {
		return a.cur.Load(), nil
	}
	if a.db.Revision() == a.rev.Load() {
		if a.revoked.Load() {
			return a.deny, errRevoked
		}
		return a.cur.Load(), nil
	}
	return a.recheck()
}

// fs is the home view for the next operation (the no-rights view once
// revoked, so the operation fails with "permission denied").
func (a *access) fs() *vfs.FS {
	g, _ := a.current()
	return g.fs
}

// may reports whether the current rights include every one of need.
func (a *access) may(need users.Perm) bool {
	g, err := a.current()
	return err == nil && g.perm.Has(need)
}

// mayAt reports whether the current rights include every one of need at
// name (in a shared folder: the member's rights there).
func (a *access) mayAt(name string, need users.Perm) bool {
	g, err := a.current()
	return err == nil && g.rightsAt(name).Has(need)
}

// rightsAt is the rights the grant gives on name: the user's rights in
// the home, the member's rights in a shared folder, none where the view
// reaches nothing.
func (g *grant) rightsAt(name string) users.Perm {
	if g.fs == nil || !g.fs.IsView() {
		return g.perm
	}
	return g.fs.RightsAt(name)
}

func (a *access) recheck() (*grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked.Load() {
		return a.deny, errRevoked
	}
	rev := a.db.Revision()
	if rev == a.rev.Load() { // another request re-checked meanwhile
		return a.cur.Load(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	u, err := a.db.Get(ctx, a.login.user.Name)
	var folders []users.FolderAccess
	if err == nil {
		folders, err = a.db.Access(ctx, a.login.user.Name)
	}
	cancel()
	if reason := a.verdict(u, err); reason != "" {
		if err != nil && !errors.Is(err, users.ErrNotFound) {
			a.log.Error("re-check of the user failed; closing the connection", "err", err)
		}
		return a.revokeLocked(reason)
	}
	cur := a.cur.Load()
	q := vfs.Quota{Bytes: u.QuotaBytes, Files: u.QuotaFiles}
	// A change may be the user's rights, or a folder grant, a
	// revocation or a group's membership (the folders and rights there).
	if u.Perms != cur.perm || q != cur.quota || !slices.Equal(folders, cur.folders) {
		g, err := a.open(u, folders)
		if err != nil {
			a.log.Error("reopening the view with new rights failed; closing the connection", "err", err)
			return a.revokeLocked("home unavailable")
		}
		a.log.Info("rights changed; the session takes them now", "perms", u.Perms.String(), "quota_bytes", u.QuotaBytes, "quota_files", u.QuotaFiles, "folders", len(folders))
		a.cur.Store(g)
		cur = g
	}
	a.rev.Store(rev)
	return cur, nil
}

func (a *access) revokeLocked(reason string) (*grant, error) {
	a.revoked.Store(true)
	a.log.Info("connection closed: access revoked", "event", eventRevoked, "reason", reason)
	a.revoke(reason)
	return a.deny, errRevoked
}

// verdict says why the record (u, err from Get) no longer admits this
// connection, or "" if it does.
func (a *access) verdict(u users.User, err error) string {
	l := a.login
	switch {
	case errors.Is(err, users.ErrNotFound):
		return "user deleted"
	case err != nil:
		return "user record unreadable" // fail closed
	case u.Disabled:
		return "user disabled"
	case !u.Created.Equal(l.user.Created):
		return "user deleted and added again"
	case u.Home != l.user.Home:
		return "home changed"
	case l.method == "password" && l.app == "" && u.PasswordHash != l.user.PasswordHash:
		return "password changed"
	case l.method == "password" && l.app == "" && a.db.NeedsSecondFactor(u):
		return "two-factor login turned on: password logins take app passwords"
	case l.method == "password" && l.app != "" && !users.AppPasswordValid(u, l.app, users.ProtoSFTP):
		return "app password revoked"
	case l.method == "publickey" && !hasKey(u, l.keyFP):
		return "login key removed"
	case l.method != "password" && l.method != "publickey":
		return "unknown login method" // fail closed
	}
	return ""
}

func hasKey(u users.User, fp string) bool {
	for _, k := range u.Keys {
		if k.Fingerprint == fp {
			return true
		}
	}
	return false
}

// loginKey is the ExtraData key under which a public-key login records the
// key's fingerprint (the Permissions of the key that authenticated are the
// connection's).
type loginKey struct{}

// keyPermissions marks p as a login with key.
func keyPermissions(p *ssh.Permissions, key ssh.PublicKey) *ssh.Permissions {
	p.ExtraData[loginKey{}] = ssh.FingerprintSHA256(key)
	return p
}

// appKey is the ExtraData key under which a password login with an app
// password records the app password's id.
type appKey struct{}

// appPermissions marks p as a login with app password id ("" = the
// account password).
func appPermissions(p *ssh.Permissions, id string) *ssh.Permissions {
	if id != "" {
		p.ExtraData[appKey{}] = id
	}
	return p
}

// loginOf reads what the auth callbacks recorded.
func loginOf(p *ssh.Permissions) (login, bool) {
	if p == nil {
		return login{}, false
	}
	u, ok := p.ExtraData[permUserKey{}].(users.User)
	if !ok {
		return login{}, false
	}
	if fp, ok := p.ExtraData[loginKey{}].(string); ok {
		return login{user: u, method: "publickey", keyFP: fp}, true
	}
	app, _ := p.ExtraData[appKey{}].(string)
	return login{user: u, method: "password", app: app}, true
}

// watchInterval is how often watchUsers looks at the database's revision
// (an atomic load) to end idle connections whose access was revoked;
// connections making requests re-check on every request anyway.
const watchInterval = 500 * time.Millisecond

// watchUsers re-checks every logged-in connection after each change of the
// user database, until Shutdown.
func (s *Server) watchUsers() {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	last := s.opts.Users.Revision()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		rev := s.opts.Users.Revision()
		if rev == last {
			continue
		}
		last = rev
		s.mu.Lock()
		accs := make([]*access, 0, len(s.conns))
		for c := range s.conns {
			if a := c.acc.Load(); a != nil {
				accs = append(accs, a)
			}
		}
		s.mu.Unlock()
		for _, a := range accs {
			a.current()
		}
	}
}
