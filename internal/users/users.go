package users

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// Sentinel errors. Callers decide with errors.Is; messages never contain a
// password.
var (
	// ErrAuthFailed is the one answer for an unknown user, a wrong password,
	// an unknown key, a key-only user trying a password and a disabled user,
	// so a client cannot tell them apart.
	ErrAuthFailed = errors.New("users: authentication failed")
	// ErrBanned means the remote address or the user name is banned for now
	// by the defender; credentials were not checked.
	ErrBanned = errors.New("users: too many failed logins, try again later")
	// ErrNotFound is returned by management calls for a missing user (never
	// by Auth*).
	ErrNotFound = errors.New("users: no such user")
	// ErrExists is returned when adding a user or key that already exists.
	ErrExists = errors.New("users: already exists")
	// ErrInvalid is returned for a bad name, key line, option or record.
	ErrInvalid = errors.New("users: invalid argument")
	// ErrNoGroup is returned when a group named by an operation does not
	// exist (any more).
	ErrNoGroup = errors.New("users: no such group")
	// ErrLocked is returned by Open when another process holds the database
	// (the server is running: use its admin socket instead).
	ErrLocked = errors.New("users: database is locked by another process")
	// ErrSchema is returned by Open for a database written by a newer
	// securefsd (schema version above SchemaVersion).
	ErrSchema = errors.New("users: unsupported database schema version")
)

// Key is one SSH public key of a user.
type Key struct {
	Line        string    `json:"line"`        // the authorized_keys line as given (type, base64, comment)
	Fingerprint string    `json:"fingerprint"` // SHA256:... (ssh.FingerprintSHA256)
	Comment     string    `json:"comment"`
	Added       time.Time `json:"added"`
}

// User is one account. Get and List return copies; change a user with Update,
// SetPassword, AddKey or DelKey.
//
// User marshals to JSON without PasswordHash (see Public), so it is safe to
// print with `user list --json` or send over the admin socket.
type User struct {
	Name         string // [a-z0-9._-], 1..64 chars, not starting with '.' or '-'
	PasswordHash string // PHC: $argon2id$v=19$m=65536,t=3,p=4$salt$hash ; "" = no password login
	Keys         []Key
	Home         string // home tree name in the vfs store (defaults to Name)
	Perms        Perm
	QuotaBytes   int64 // 0 = unlimited
	QuotaFiles   int64 // 0 = unlimited
	Disabled     bool
	Admin        bool // the admin role: the browser's admin page (issue 18)
	Created      time.Time
	LastLogin    time.Time

	// TwoFactor is the TOTP enrolment (nil: none). Once set, the browser
	// asks for a code after the password, and WebDAV and SFTP password
	// logins take only AppPasswords (see twofactor.go).
	TwoFactor *TwoFactor
	// AppPasswords are the named, revocable passwords for protocols that
	// cannot ask for a code.
	AppPasswords []AppPassword
	// Logins are the most recent recorded logins, newest first (at most
	// maxLogins; recorded at most once a minute per user, with LastLogin).
	Logins []LoginRecord
}

// Options configures Open. The zero value works.
type Options struct {
	Logger *slog.Logger     // nil: discard
	Argon2 Argon2Params     // zero: t=3, m=64 MiB, p=4 (tests lower it)
	Now    func() time.Time // nil: time.Now

	// Defender configures failed-login slowdown and bans; the zero value
	// gives the defaults documented on DefenderOptions.
	Defender DefenderOptions

	// LockTimeout is how long Open waits for another process's lock before
	// returning ErrLocked. Zero: 250ms.
	LockTimeout time.Duration
	// CacheTTL is how long a verified password stays cached. Zero: 5 min;
	// negative: no cache.
	CacheTTL time.Duration
	// CacheSize bounds the verified-password cache. Zero: 4096 entries.
	CacheSize int
	// Require2FA (serve --require-2fa): an account without TwoFactor has
	// no password login over WebDAV or SFTP (its browser login must enrol
	// first); public-key SSH logins are not affected.
	Require2FA bool
	// MaxConcurrentHashes bounds simultaneous Argon2id computations (each
	// uses Argon2.Memory KiB). Zero: 2 × GOMAXPROCS.
	MaxConcurrentHashes int
	// Key (KeySize bytes) seals the database (seal.go): a plain database
	// is sealed when first opened with it, and a sealed one does not open
	// without it (ErrKeyRequired) or with another (ErrSealed). nil: plain
	// (tests of other packages, tools that never had a key).
	Key []byte
}

// LoginEvent is one login outcome for SetLoginHook. It never holds a
// password or key, only the key's fingerprint.
type LoginEvent struct {
	Proto, Remote, User string
	Method              string // password, publickey, connection; "" for a ban
	// Err is nil (success), ErrAuthFailed or ErrBanned. Ban is set, with
	// Err nil, when a ban begins: Ban is "address" or "user" and Remote or
	// User names the banned one.
	Err error
	Ban string
	// Cached: a password verified earlier within the cache TTL (WebDAV
	// sends credentials with every request).
	Cached bool
}

// Argon2Params are the Argon2id cost parameters for new hashes. Zero fields
// take the defaults t=3, m=64 MiB, p=4.
type Argon2Params struct {
	Time    uint32 // passes (t)
	Memory  uint32 // KiB (m)
	Threads uint8  // lanes (p)
}

// DefenderOptions configures the login defender. Zero fields take the
// defaults given per field.
type DefenderOptions struct {
	Disabled bool
	// Window is the sliding window failures are counted in. Zero: 5 min.
	Window time.Duration
	// AddrThreshold failures from one address within Window ban the address.
	// Zero: 10.
	AddrThreshold int
	// UserThreshold failures for one user name within Window ban the name
	// (from every address). Zero: 30.
	UserThreshold int
	// BanTime is how long a ban lasts. Zero: 15 min.
	BanTime time.Duration
	// DelayAfter failures start the slowdown. Zero: 3.
	DelayAfter int
	// Delay is the first delay; it doubles with each further failure up to
	// MaxDelay. Zero: 500ms / 8s.
	Delay, MaxDelay time.Duration
	// MaxEntries bounds the tracked addresses and names. Zero: 65536.
	MaxEntries int
	// Safelist holds networks whose addresses are never scored, delayed or
	// banned by address, and to which a ban of a user name does not apply
	// (their failures still count against the name), e.g. an office VPN or
	// a monitoring host. Do not list a reverse proxy's address unless the
	// protocol passes the real client address.
	Safelist []netip.Prefix
	// Sleep waits d or until ctx is done (tests inject a recorder). Nil: a
	// timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Open opens (creating with mode 0600) the database at path and migrates its
// schema. If another process holds it, Open returns ErrLocked after
// Options.LockTimeout.
func Open(path string, opts Options) (*DB, error) { return open(path, opts) }
