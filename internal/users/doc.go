// Package users is securefsd's user database: one bbolt file holding users,
// Argon2id password hashes, SSH public keys, permissions and quotas, plus the
// login defender that slows down and bans repeated failures. With
// OpenEtcd the same records live in etcd instead, shared by the nodes of a
// cluster (see "Cluster engine" below). With index, it is the only
// package that imports bbolt. It knows nothing about files.
//
// It must not import envelope, vfs or any protocol package; sftpd, davd,
// webui, admin and cmd/securefsd import it.
//
// # Database
//
// One bbolt file (conventionally <data-dir>/users.db), created with mode
// 0600; Open tightens a file found readable by group or others. bbolt takes
// an exclusive flock, so only one process can have it open: Open waits
// Options.LockTimeout (250ms) and then returns ErrLocked, which tells the CLI
// that a server is running and it must use the server's admin socket.
//
// Buckets: "meta" holds "schema" (uint64 big-endian, SchemaVersion, now 1)
// and "revision" (uint64, bumped by every committed change, see
// DB.Revision); "users" maps each name to a JSON record (see record in
// db.go: name, password_hash, keys, home, perms as a number, quotas,
// disabled, created, last_login, and, optional and new in the same schema,
// totp, app_passwords and logins: see twofactor.go). Open migrates older files in one
// transaction through the table migrations[n] (schema n to n+1), so a
// failed migration leaves the file untouched, and refuses a newer schema
// with ErrSchema. Schema 0 is the pre-release layout (a users bucket with
// read_only flags and bare key lines, no meta bucket); v0→v1 is tested with
// a fixture built in the test.
//
// Names are 1 to 64 of [a-z0-9._-], not starting with '.' or '-'; the same
// rule applies to Home. Anything else is ErrInvalid.
//
// # Password hashes
//
// Argon2id (golang.org/x/crypto/argon2) in PHC string form:
//
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
//
// with unpadded standard base64, a 16-byte random salt and a 32-byte hash.
// New hashes use Options.Argon2 (default t=3, m=65536 KiB = 64 MiB, p=4,
// RFC 9106's second recommendation). Parameters read from a stored hash are
// capped (t ≤ 16, m ≤ 1 GiB, p ≤ 64, salt 8..64 bytes, hash 16..64 bytes)
// so a tampered record cannot make a login exhaust the machine. When a login
// succeeds against a hash whose t, m or p is below the current parameters,
// the hash is recomputed with the current ones and stored (upgrade path);
// stronger stored hashes are never downgraded. The comparison is
// subtle.ConstantTimeCompare. Concurrent Argon2id runs are bounded by
// Options.MaxConcurrentHashes (2 × GOMAXPROCS), bounding memory to about
// that many × m; waiting runs are served in turn per source address.
//
// Unknown users, disabled users and key-only users are verified against a
// dummy hash with the current parameters (random salt and hash, made at
// Open), so every failure costs one Argon2id run and returns the same
// ErrAuthFailed: names cannot be probed by error or by timing (a
// statistical test compares the medians). Passwords are never logged, never
// in error strings, and longer than 1024 bytes are refused. A user name that
// is not valid is logged as "(invalid name)", since it may be a password
// typed into the wrong field.
//
// # Two-factor login
//
// twofactor.go: TOTP enrolment and codes (RFC 6238 through
// github.com/pquerna/otp; a code counts only for a time step after the last
// one accepted), ten recovery codes stored as SHA-256, app passwords
// (random, per protocol, SHA-256, never cached) that WebDAV ("dav") and SSH
// ("ssh") password logins take instead of the account password once a user
// has TOTP or Options.Require2FA is set. VerifySecondFactor goes through the
// defender like AuthPassword.
//
// # Verified-password cache
//
// WebDAV clients send Basic auth with every request; paying Argon2id for
// each would make the server crawl. After a successful verification,
// AuthPassword caches HMAC-SHA256(k, name || 0x00 || password) → (the
// PasswordHash verified against, expiry), where k is 32 random bytes made at
// Open and never stored. The plaintext is never kept. A hit counts only if
// the user's current PasswordHash equals the cached one (so SetPassword, a
// rehash or delete-and-recreate kill it) and the user is not disabled.
// Entries live Options.CacheTTL (5 min; negative disables the cache), at
// most Options.CacheSize (4096) of them. A hit skips the defender's delay
// (it needs the right password anyway) but not a ban.
//
// # Defender
//
// Inside AuthPassword and AuthKey, for every protocol, like SFTPGo's
// defender or fail2ban. Failures are scored per remote address (port
// stripped; IPv4-mapped IPv6 unmapped; IPv6 grouped by /64, since one host
// usually owns a whole /64) and per user name, in a sliding window. Names
// are scored whether or not the user exists, so a ban reveals nothing.
// Defaults (DefenderOptions zero value):
//
//	Window        5 min    failures older than this are forgotten
//	AddrThreshold 10       failures from one address ban the address
//	UserThreshold 30       failures for one name (any address) ban the name
//	BanTime       15 min
//	DelayAfter    3        failures before password attempts are slowed
//	Delay         500ms    doubled per further failure, up to
//	MaxDelay      8s
//	MaxEntries    65536    tracked addresses + names (bans are kept first)
//
// Order in AuthPassword: a banned address or name gets ErrBanned before any
// credential check (even the right password; a success never lifts a ban);
// then the cache; then the attempt takes a slot of the address's and the
// name's budget: failures in the window plus checks in flight must stay
// below the threshold, else the attempt waits for one in flight to settle
// and looks again (ErrBanned once the ban begins). So parallel guesses get
// no more Argon2id checks than sequential ones: at most AddrThreshold per
// address and UserThreshold per name per window. Then the delay
// (context-aware: it returns ctx's error rather than sleep past ctx, and is
// served before the check, so an attacker cannot learn a guess was right
// by timing out early); then a turn for Argon2id (a fair queue of
// MaxConcurrentHashes slots handed out in turn between source addresses,
// so one flooding address cannot starve the others); then the ban is
// looked at again; then Argon2id. A wrong password scores 1 for the
// address and the name; an unknown or invalid name scores like any other.
// A ban is logged at Warn with the address or name, the protocol and the
// expiry. Each admitted check and each verification is logged at Debug.
//
// A ban of a name (which anyone can cause) does not apply to key logins,
// nor to password logins from an address the user logged in from
// successfully before (the last 4 per user, remembered in memory), nor
// from DefenderOptions.Safelist; those addresses also skip the name's
// budget and delay. Safelisted addresses are never scored or banned by
// address; their failures still count against the name. Bans and
// remembered addresses live in memory: restarting the server clears them;
// DB.Bans lists bans and DB.Unban lifts one ("ADDRESS" or "user:NAME";
// securefsd ban list/del through the admin socket). DB.PaceRefusal waits
// as long as a failure at the threshold takes, without Argon2id, for the
// browser form, whose answer must not reveal a ban. Options.Now and
// DefenderOptions.Sleep are injectable so tests need no sleeping.
//
// SSH public-key authentication offers every key of the client's agent in
// turn, so a rejected key is not scored (an honest user with five keys would
// otherwise be banned after two logins). Instead sftpd MUST call
// DB.Failed(proto, remote, name) when a connection ends without having
// authenticated (all keys refused, client gave up, MaxAuthTries reached);
// that scores 1. Password failures inside that connection were already
// scored by AuthPassword. Protocols may also call Failed for other failed
// attempts and check DB.Banned(remote) to drop a banned client before the
// handshake.
//
// # Keys
//
// AddKey takes one authorized_keys line, parsed with ssh.ParseAuthorizedKey;
// it stores the line, ssh.FingerprintSHA256 and the comment. Lines with
// options (from=, command=...; securefsd would not enforce them),
// certificates and RSA keys under 2048 bits are ErrInvalid. AuthKey compares
// the offered key's wire encoding with every stored key using
// subtle.ConstantTimeCompare.
//
// # Cluster engine
//
// OpenEtcd(EtcdConfig{Client, Prefix}, Options) (etcd.go) returns the same
// *DB on etcd: every bucket and record of a sealed users.db, byte for
// byte, under PREFIX ‖ bucket ‖ "/" ‖ stored key (Options.Key is
// required: etcd holds keyed hashes and ciphertext only). The rest of the
// package sees no difference: txn and bucket (seal.go) sit on bbolt's
// transaction or on an etcd one (rawTx, rawBucket).
//
// A transaction reads at one revision (its first, linearizable, read's)
// and commits in one etcd Txn comparing the mod revision of every key it
// read and, for every bucket it scanned, that no key there is newer; on a
// conflict fn runs again (so fns act only through their txn), at most
// EtcdConfig.Attempts times (ErrConflict). Changes of users, folders and
// groups all write meta/revision, so they serialize on it. No quorum:
// every operation fails with ErrUnavailable within EtcdConfig.Timeout,
// nothing is served from memory. CopyTo is ErrNotSupported (an etcd
// snapshot is the cluster's backup).
//
// Each node watches the prefix: meta/revision raises Revision, which the
// protocols poll to re-check open sessions, so a change on one node
// (password, rights, disable, grant, revoke) reaches every node's sessions
// within the watch's delivery plus their poll (sftpd: 500 ms). A broken
// watch also moves Revision, so sessions re-check and end if etcd does not
// answer. Bans are shared under PREFIX ‖ "bans/" (etcdbans.go): a ban begun
// or lifted on one node holds on all, each key under a lease of the ban
// time; failure scores stay per node.
//
// # Last login
//
// A successful login sets LastLogin, written at most once a minute per user
// so per-request WebDAV auth does not turn every request into a bbolt write.
//
// # JSON
//
// User marshals as PublicUser (no PasswordHash; has_password instead; perms
// as "list,download,..."), for `user list --json` and the admin socket.
package users

// API CONTRACT (kept stable for sftpd, davd, webui, admin and cmd/securefsd):
//
//	var ErrAuthFailed   // unknown user, wrong password, unknown key, disabled user: one error for all
//	var ErrBanned       // the address or user is banned for now (wraps nothing; callers log it)
//	var ErrNotFound     // no such user (management calls only; never from Auth*)
//	var ErrExists       // user already exists
//	var ErrInvalid      // bad name, bad key line, bad option
//
//	type Perm = perm.Perm   // one type with vfs; the rights are documented in package perm
//	const ( PermList = perm.List; ...; PermChmod = perm.Chmod ); PermReadOnly, PermAll
//	func ParsePerm(string) (Perm, error)  // perm.Parse, errors match ErrInvalid
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
//
// ADDITIONS (beyond the original contract, all additive):
//
//	var ErrSchema                                           // Open: database written by a newer securefsd
//	func (db *DB) Failed(proto, remote, name string)        // sftpd: connection ended unauthenticated (scores 1)
//	func (u User) Public() PublicUser; User.MarshalJSON/UnmarshalJSON  // JSON without PasswordHash
//	func ParseKey(line string) (Key, ssh.PublicKey, error)  // validate an authorized_keys line (CLI --key)
//	func ValidName(s string) bool
//	func (db *DB) Bans() []Ban; func (db *DB) Unban(who string) error  // admin: list/lift bans ("ADDRESS" or "user:NAME")
//	func (db *DB) PaceRefusal(ctx context.Context) error      // webui: answer a ban as slowly as a failure
//	Perm.MarshalText/UnmarshalText                          // perms as "list,download,..." in JSON/config
//	Options.LockTimeout, CacheTTL, CacheSize, MaxConcurrentHashes; DefenderOptions fields (defender.go)
//	func OpenEtcd(cfg EtcdConfig, opts Options) (*DB, error)  // the cluster engine (etcd.go); Options.Key required
//	func (db *DB) CopyToEtcd(ctx, cfg EtcdConfig) error       // a sealed users.db into an empty prefix (toetcd.go)
//	var ErrUnavailable, ErrConflict, ErrTooLarge, ErrNotSupported  // the etcd engine's failures
