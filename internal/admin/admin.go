// Package admin is the management channel between the securefsd command and
// a running server.
//
// bbolt lets one process at a time open the user database, so while the
// server runs, `securefsd user ...`, `key rotate` and `verify` reach it through
// an HTTP+JSON API on a Unix socket in the data directory: the socket file is
// 0600 inside the 0700 data directory, and the server also checks that the
// peer runs as the same uid (or root). When no server runs, the command opens
// the database and store itself and runs the same operations through Local.
//
// Both paths implement Manager, so the command does not care which it got.
package admin

import (
	"context"
	"errors"

	"github.com/securefsd/securefsd/internal/users"
)

// Manager is what the command line manages, locally or through the socket.
type Manager interface {
	AddUser(ctx context.Context, req AddUserRequest) error
	SetPassword(ctx context.Context, name string, password []byte) error
	DeleteUser(ctx context.Context, name string, purge bool, progress func(Progress)) error
	ListUsers(ctx context.Context) ([]users.User, error)
	SetDisabled(ctx context.Context, name string, disabled bool) error
	AddKey(ctx context.Context, name, authorizedKey string) (users.Key, error)
	DelKey(ctx context.Context, name, fingerprint string) error
	// RotateKey makes a new active KEK, re-wraps every file's DEK under it
	// and then retires the older KEKs. Interrupted, it resumes on the next
	// call without making yet another KEK.
	RotateKey(ctx context.Context, progress func(Progress)) error
	// Verify authenticates every file (of one user, or all) and reports the
	// damaged ones.
	Verify(ctx context.Context, user string, damaged func(Damage)) (VerifyResult, error)
	// KeyFile is the path of the key file the keyring was loaded from:
	// rotation writes it, verification reads with it.
	KeyFile(ctx context.Context) (string, error)
}

// AddUserRequest describes a new user.
type AddUserRequest struct {
	Name       string   `json:"name"`
	Password   []byte   `json:"password,omitempty"`
	Keys       []string `json:"keys,omitempty"` // authorized_keys lines
	Perms      string   `json:"perms,omitempty"`
	ReadOnly   bool     `json:"read_only,omitempty"`
	QuotaBytes int64    `json:"quota_bytes,omitempty"`
	QuotaFiles int64    `json:"quota_files,omitempty"`
	Admin      bool     `json:"admin,omitempty"` // the admin role
	// ReuseHome gives the new user the home a deleted user of the same
	// name left in the store (`user del` without --purge). Without it,
	// AddUser refuses such a name with ErrHomeExists.
	ReuseHome bool `json:"reuse_home,omitempty"`
}

// Progress reports a long operation's advance.
type Progress struct {
	Done  int    `json:"done"`
	Total int    `json:"total"`
	Item  string `json:"item,omitempty"`
	Stage string `json:"stage,omitempty"`
}

// Damage is one file that failed verification.
type Damage struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// VerifyResult sums up a verification run.
type VerifyResult struct {
	Checked int `json:"checked"`
	Damaged int `json:"damaged"`
	// Records: the sealed users.db records checked (a whole-store verify).
	Records int `json:"records,omitempty"`
}

// ErrNoServer means no server listens on the admin socket.
var ErrNoServer = errors.New("admin: no running server")

// ErrHomeExists means the store already holds a home of the new user's
// name, left by a user deleted without --purge: adding the user would hand
// the old files to the new account without anyone deciding so.
var ErrHomeExists = errors.New("admin: the store holds the files of a deleted user of this name")

// SocketName is the admin socket's file name inside the data directory.
const SocketName = "admin.sock"

// BanManager lists and lifts the login defender's bans. Bans live in the
// running server's memory, so only the socket Client reaches real ones;
// Local (no server running) has only its own, empty, defender.
type BanManager interface {
	ListBans(ctx context.Context) ([]users.Ban, error)
	// Unban lifts the ban of an address ("ip"; an IPv6 address stands for
	// its /64) or, written "user:NAME", of a user name. users.ErrNotFound:
	// no active ban; users.ErrInvalid: neither form.
	Unban(ctx context.Context, who string) error
}
