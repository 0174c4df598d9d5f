// Package users is securefsd's user database: one bbolt file holding users,
// Argon2id password hashes, SSH public keys, permissions and quotas, plus the
// login defender that slows down and bans repeated failures. It is the only
// package that imports bbolt. It knows nothing about files.
package users

// API CONTRACT (kept stable for sftpd, davd, webui, admin and cmd/securefsd):
//
//	var ErrAuthFailed   // unknown user, wrong password, unknown key, disabled user: one error for all
//	var ErrBanned       // the address or user is banned for now (wraps nothing; callers log it)
//	var ErrNotFound     // no such user (management calls only; never from Auth*)
//	var ErrExists       // user already exists
//	var ErrInvalid      // bad name, bad key line, bad option
//
//	type Perm uint32
//	const ( PermList Perm = 1 << iota; PermDownload; PermUpload; PermOverwrite; PermDelete; PermRename; PermMkdir; PermChmod )
//	const PermReadOnly = PermList | PermDownload
//	const PermAll = PermList | PermDownload | PermUpload | PermOverwrite | PermDelete | PermRename | PermMkdir | PermChmod
//	func (p Perm) Has(q Perm) bool
//	func (p Perm) String() string  // "list,download,..." ; ParsePerm(string) (Perm, error)
//
//	type Key struct {
//		Line        string    // the authorized_keys line as given (type, base64, comment)
//		Fingerprint string    // SHA256:... (ssh.FingerprintSHA256)
//		Comment     string
//		Added       time.Time
//	}
//	type User struct {
//		Name         string    // [a-z0-9._-], 1..64 chars, not starting with '.' or '-'
//		PasswordHash string    // PHC: $argon2id$v=19$m=65536,t=3,p=4$salt$hash ; "" = no password login
//		Keys         []Key
//		Home         string    // home tree name in the vfs store (defaults to Name)
//		Perms        Perm
//		QuotaBytes   int64     // 0 = unlimited
//		QuotaFiles   int64
//		Disabled     bool
//		Created      time.Time
//		LastLogin    time.Time
//	}
//
//	type Options struct {
//		Logger  *slog.Logger      // nil: discard
//		Argon2  Argon2Params      // zero: t=3, m=64 MiB, p=4 (tests lower it)
//		Now     func() time.Time  // nil: time.Now
//		Defender DefenderOptions  // zero: sensible defaults (see defender.go)
//	}
//	func Open(path string, opts Options) (*DB, error)  // creates 0600, migrates schema; bbolt lock timeout -> ErrLocked
//	var ErrLocked   // another process holds the database (the server is running: use the admin socket)
//	func (db *DB) Close() error
//
//	func (db *DB) Add(ctx context.Context, u User, password []byte) error   // password nil/empty: key-only user
//	func (db *DB) Get(ctx context.Context, name string) (User, error)
//	func (db *DB) List(ctx context.Context) ([]User, error)
//	func (db *DB) Delete(ctx context.Context, name string) error
//	func (db *DB) SetPassword(ctx context.Context, name string, password []byte) error
//	func (db *DB) AddKey(ctx context.Context, name, authorizedKeyLine string) (Key, error)
//	func (db *DB) DelKey(ctx context.Context, name, fingerprintOrComment string) error
//	func (db *DB) Update(ctx context.Context, name string, fn func(*User) error) error
//
//	// Authentication: constant-time, unknown users verified against a dummy
//	// hash, the defender consulted first and fed after. remote is the client's
//	// address ("ip:port" or "ip"); proto ("ssh", "dav", "web") goes to the log.
//	// Verified passwords are cached for a short time, keyed by an HMAC under a
//	// per-process random key (never the plaintext), and the cache entry dies
//	// when the user's password hash changes, so WebDAV clients that send Basic
//	// auth on every request do not pay Argon2id each time.
//	func (db *DB) AuthPassword(ctx context.Context, proto, remote, name string, password []byte) (User, error)
//	func (db *DB) AuthKey(ctx context.Context, proto, remote, name string, key ssh.PublicKey) (User, error)
//	// Defender used by protocols for failures that never reach Auth* (e.g. bad SSH handshakes).
//	func (db *DB) Banned(remote string) bool
//	// Revision changes whenever any user record changes (for caches in other packages).
//	func (db *DB) Revision() uint64
