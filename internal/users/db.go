package users

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/ssh"
)

// SchemaVersion is the layout this package writes. Open migrates older
// databases step by step (see migrations) and refuses newer ones.
const SchemaVersion = 1

var (
	bucketMeta  = []byte("meta")
	bucketUsers = []byte("users")
	keySchema   = []byte("schema")
	keyRevision = []byte("revision")
)

const (
	maxNameLen      = 64
	loginTouchEvery = time.Minute
)

// DB is an open user database. It is safe for concurrent use. Close it when
// done; the file stays locked against other processes until then.
type DB struct {
	bolt   *bbolt.DB   // the single-node engine; nil on etcd
	etcd   *etcdEngine // the cluster engine (OpenEtcd); nil on bbolt
	log    *slog.Logger
	now    func() time.Time
	params Argon2Params
	dummy  phc    // verified against for unknown, disabled and key-only users
	dummyK []byte // compared against for unknown users' key logins
	cache  *pwCache
	def    *defender
	// require2FA: see Options.Require2FA.
	require2FA bool
	sem        *fairSem      // bounds concurrent Argon2id runs, shared in turn between source addresses
	rev        atomic.Uint64 // the stored revision counter
	// unsure counts breaks of the etcd watch: while it is broken this
	// node may miss other nodes' changes, so each break moves Revision
	// and every open session re-checks its user (and fails closed if
	// etcd does not answer). Always 0 on bbolt.
	unsure atomic.Uint64
	seal   *sealer // Options.Key's; nil: a plain database

	verifies   atomic.Uint64       // Argon2id verifications run by AuthPassword (tests)
	onVerify   func(remote string) // test hook: called before each AuthPassword verification
	onLogin    func(LoginEvent)    // SetLoginHook
	verifyCost atomic.Int64        // moving average of a verification's wall time, ns (PaceRefusal)
	calibrate  sync.Once

	touchMu sync.Mutex
	touched map[string]time.Time // last LastLogin write per user and app password (name NUL id)
}

// record is the stored JSON form of a user (schema v1). Perms are stored as
// a number so renaming a right never changes the data.
type record struct {
	Name         string        `json:"name"`
	PasswordHash string        `json:"password_hash,omitempty"`
	Keys         []Key         `json:"keys,omitempty"`
	Home         string        `json:"home"`
	Perms        uint32        `json:"perms"`
	QuotaBytes   int64         `json:"quota_bytes,omitempty"`
	QuotaFiles   int64         `json:"quota_files,omitempty"`
	Disabled     bool          `json:"disabled,omitempty"`
	Admin        bool          `json:"admin,omitempty"`
	Created      time.Time     `json:"created"`
	LastLogin    time.Time     `json:"last_login,omitzero"`
	TwoFactor    *TwoFactor    `json:"totp,omitempty"`
	AppPasswords []AppPassword `json:"app_passwords,omitempty"`
	Logins       []LoginRecord `json:"logins,omitempty"`
}

func toRecord(u User) record {
	return record{Name: u.Name, PasswordHash: u.PasswordHash, Keys: u.Keys, Home: u.Home, Perms: uint32(u.Perms),
		QuotaBytes: u.QuotaBytes, QuotaFiles: u.QuotaFiles, Disabled: u.Disabled, Created: u.Created, LastLogin: u.LastLogin,
		Admin: u.Admin, TwoFactor: u.TwoFactor, AppPasswords: u.AppPasswords, Logins: u.Logins}
}

func (r record) user() User {
	return User{Name: r.Name, PasswordHash: r.PasswordHash, Keys: r.Keys, Home: r.Home, Perms: Perm(r.Perms),
		QuotaBytes: r.QuotaBytes, QuotaFiles: r.QuotaFiles, Disabled: r.Disabled, Created: r.Created, LastLogin: r.LastLogin,
		Admin: r.Admin, TwoFactor: r.TwoFactor, AppPasswords: r.AppPasswords, Logins: r.Logins}
}

// newDB makes a DB of opts with no engine yet (open or OpenEtcd sets it).
func newDB(opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	params := opts.Argon2.withDefaults()
	if err := params.validate(); err != nil {
		return nil, err
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = 5 * time.Minute
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 4096
	}
	if opts.MaxConcurrentHashes <= 0 {
		opts.MaxConcurrentHashes = 2 * runtime.GOMAXPROCS(0)
	}
	db := &DB{
		log:     log,
		now:     now,
		params:  params,
		def:     newDefender(opts.Defender, now, log),
		sem:     newFairSem(opts.MaxConcurrentHashes),
		touched: make(map[string]time.Time),

		require2FA: opts.Require2FA,
	}
	if opts.CacheTTL > 0 {
		db.cache = newPWCache(opts.CacheTTL, opts.CacheSize)
	}
	db.dummy = phc{params: params, salt: make([]byte, saltLen), hash: make([]byte, hashLen)}
	rand.Read(db.dummy.salt)
	rand.Read(db.dummy.hash)
	db.dummyK = make([]byte, 51) // length of a marshalled ssh-ed25519 key
	rand.Read(db.dummyK)
	if opts.Key != nil {
		var err error
		if db.seal, err = newSealer(opts.Key); err != nil {
			return nil, err
		}
	}
	return db, nil
}

func open(path string, opts Options) (*DB, error) {
	db, err := newDB(opts)
	if err != nil {
		return nil, err
	}
	log := db.log
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 250 * time.Millisecond
	}

	b, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("users: open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("users: open %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("users: database was readable by others; setting mode 0600", "path", path, "mode", fi.Mode().Perm().String())
		if err := os.Chmod(path, 0o600); err != nil {
			b.Close()
			return nil, fmt.Errorf("users: chmod %s: %w", path, err)
		}
	}
	db.bolt = b

	sealed, err := db.migrate()
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("users: open %s: %w", path, err)
	}
	if sealed {
		// The plain records stay in bbolt's free pages until reused:
		// rewrite the file compactly so none is left.
		if db.bolt, err = compactInPlace(b, path, opts.LockTimeout); err != nil {
			return nil, fmt.Errorf("users: open %s: %w", path, err)
		}
		log.Info("users: database sealed (names, keys and records are no longer readable without the data directory's key)")
	}
	return db, nil
}

// Close closes the database and releases the file lock (on etcd: stops
// watching other nodes' changes; the client stays open).
func (db *DB) Close() error {
	if db.etcd != nil {
		db.etcd.close()
		return nil
	}
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("users: close: %w", err)
	}
	return nil
}

// Revision changes whenever any user record changes (including the
// at-most-once-a-minute LastLogin update). It is persisted, so it only grows
// across restarts.
//
// On etcd the counter is the cluster's: every node's changes bump it, and
// a watch brings other nodes' changes to this one (etcd.go), so sessions
// polling Revision see a change made on any node. It also moves when
// the watch breaks (etcd unreachable, the leader lost), so open sessions
// re-check their user and end if etcd does not answer: a node cut off
// from etcd keeps no session on rights it can no longer verify. Only the
// stored counter (storedRevision) goes into the rollback anchor.
func (db *DB) Revision() uint64 { return db.rev.Load() + db.unsure.Load() }

// storedRevision is the revision counter as stored (bbolt or etcd).
func (db *DB) storedRevision() uint64 { return db.rev.Load() }

// noteRev raises the revision to rev; never lowers it (a commit's and a
// watch's news may arrive in either order).
func (db *DB) noteRev(rev uint64) {
	for {
		cur := db.rev.Load()
		if rev <= cur || db.rev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// getter and putter are what the record helpers need of a bucket: the
// sealed view (bucket) or bbolt's own, in schema migrations.
type getter interface{ Get(k []byte) []byte }
type putter interface{ Put(k, v []byte) error }

func getU64(b getter, k []byte) (uint64, bool) {
	v := b.Get(k)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func putU64(b putter, k []byte, v uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, v))
}

// write runs fn on the users bucket in a read-write transaction and bumps
// the revision when fn returns nil (writeTx).
func (db *DB) write(ctx context.Context, fn func(users *bucket) error) error {
	return db.writeTx(ctx, func(tx *txn) error { return fn(tx.Bucket(bucketUsers)) })
}

func (db *DB) read(ctx context.Context, fn func(users *bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.view(func(tx *txn) error { return fn(tx.Bucket(bucketUsers)) })
}

func getRecord(b *bucket, name string) (record, error) {
	v := b.Get([]byte(name))
	if v == nil {
		return record{}, ErrNotFound
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("users: record %q: %w", name, err)
	}
	return r, nil
}

func putRecord(b putter, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("users: record %q: %w", r.Name, err)
	}
	return b.Put([]byte(r.Name), v)
}

// validName reports whether s is a valid user or home name:
// [a-z0-9._-]{1,64}, not starting with '.' or '-'.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidName reports whether s is acceptable as a user name.
func ValidName(s string) bool { return validName(s) }

func checkName(name string) error {
	if !validName(name) {
		return fmt.Errorf("users: name %q: want 1-64 of [a-z0-9._-], not starting with '.' or '-': %w", name, ErrInvalid)
	}
	return nil
}

// ParseKey parses one authorized_keys line into a Key (Added left zero) and
// its public key. Options (from=, command=...) are refused because securefsd
// would not enforce them, as are certificates and RSA keys under 2048 bits.
func ParseKey(line string) (Key, ssh.PublicKey, error) {
	line = strings.TrimSpace(line)
	if strings.ContainsAny(line, "\r\n") {
		return Key{}, nil, fmt.Errorf("users: key: want exactly one authorized_keys line: %w", ErrInvalid)
	}
	pk, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Key{}, nil, fmt.Errorf("users: key: not an authorized_keys line: %w", ErrInvalid)
	}
	if len(options) > 0 {
		return Key{}, nil, fmt.Errorf("users: key: authorized_keys options (%s) are not supported: %w", options[0], ErrInvalid)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return Key{}, nil, fmt.Errorf("users: key: want exactly one authorized_keys line: %w", ErrInvalid)
	}
	if _, ok := pk.(*ssh.Certificate); ok {
		return Key{}, nil, fmt.Errorf("users: key: certificates are not supported: %w", ErrInvalid)
	}
	if cpk, ok := pk.(ssh.CryptoPublicKey); ok {
		if r, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok && r.N.BitLen() < 2048 {
			return Key{}, nil, fmt.Errorf("users: key: RSA key of %d bits, want at least 2048: %w", r.N.BitLen(), ErrInvalid)
		}
	}
	return Key{Line: line, Fingerprint: ssh.FingerprintSHA256(pk), Comment: comment}, pk, nil
}

// normalize validates u and fills defaults: Home, key fingerprints and
// comments (recomputed from the lines, never trusted), key Added times.
func (db *DB) normalize(u *User, now time.Time) error {
	if err := checkName(u.Name); err != nil {
		return err
	}
	if u.Home == "" {
		u.Home = u.Name
	}
	if !validName(u.Home) {
		return fmt.Errorf("users: home %q: want 1-64 of [a-z0-9._-], not starting with '.' or '-': %w", u.Home, ErrInvalid)
	}
	if u.Perms&^PermAll != 0 {
		return fmt.Errorf("users: unknown permission bits %#x: %w", uint32(u.Perms&^PermAll), ErrInvalid)
	}
	if u.QuotaBytes < 0 || u.QuotaFiles < 0 {
		return fmt.Errorf("users: negative quota: %w", ErrInvalid)
	}
	if u.PasswordHash != "" {
		if _, err := parsePHC(u.PasswordHash); err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(u.Keys))
	keys := make([]Key, 0, len(u.Keys))
	for _, k := range u.Keys {
		nk, _, err := ParseKey(k.Line)
		if err != nil {
			return err
		}
		if seen[nk.Fingerprint] {
			return fmt.Errorf("users: key %s: %w", nk.Fingerprint, ErrExists)
		}
		seen[nk.Fingerprint] = true
		nk.Added = k.Added
		if nk.Added.IsZero() {
			nk.Added = now
		}
		keys = append(keys, nk)
	}
	u.Keys = keys
	if u.Created.IsZero() {
		u.Created = now
	}
	return nil
}

func checkPassword(password []byte) error {
	if len(password) > maxPasswordLen {
		return fmt.Errorf("users: password longer than %d bytes: %w", maxPasswordLen, ErrInvalid)
	}
	return nil
}

// hash computes a new hash under the current parameters, waiting for a slot
// of the Argon2id semaphore.
func (db *DB) hash(ctx context.Context, password []byte) (string, error) {
	if err := db.sem.acquire(ctx, ""); err != nil {
		return "", err
	}
	defer db.sem.release()
	return hashPassword(password, db.params), nil
}

// Add creates u. An empty password makes a key-only user (unless
// u.PasswordHash carries an existing PHC hash, which is imported as is; giving
// both is ErrInvalid). Home defaults to Name, Created to now. Perms are taken
// as given: zero means no rights.
func (db *DB) Add(ctx context.Context, u User, password []byte) error {
	now := db.now()
	u.LastLogin = time.Time{}
	if err := db.normalize(&u, now); err != nil {
		return err
	}
	if len(password) > 0 {
		if u.PasswordHash != "" {
			return fmt.Errorf("users: add %s: both a password and a hash: %w", u.Name, ErrInvalid)
		}
		if err := checkPassword(password); err != nil {
			return err
		}
		exists := false
		if err := db.read(ctx, func(b *bucket) error { exists = b.Get([]byte(u.Name)) != nil; return nil }); err != nil {
			return fmt.Errorf("users: add %s: %w", u.Name, err)
		}
		if exists { // fail before paying for the hash
			return fmt.Errorf("users: add %s: %w", u.Name, ErrExists)
		}
		h, err := db.hash(ctx, password)
		if err != nil {
			return fmt.Errorf("users: add %s: %w", u.Name, err)
		}
		u.PasswordHash = h
	}
	err := db.write(ctx, func(b *bucket) error {
		if b.Get([]byte(u.Name)) != nil {
			return ErrExists
		}
		return putRecord(b, toRecord(u))
	})
	if err != nil {
		return fmt.Errorf("users: add %s: %w", u.Name, err)
	}
	db.log.Info("users: user added", "user", u.Name, "perms", u.Perms.String(), "keys", len(u.Keys), "password", u.PasswordHash != "")
	return nil
}

// Get returns the user called name, or ErrNotFound.
func (db *DB) Get(ctx context.Context, name string) (User, error) {
	if err := checkName(name); err != nil {
		return User{}, err
	}
	var r record
	err := db.read(ctx, func(b *bucket) error {
		var err error
		r, err = getRecord(b, name)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("users: get %s: %w", name, err)
	}
	return r.user(), nil
}

// List returns every user sorted by name.
func (db *DB) List(ctx context.Context) ([]User, error) {
	var us []User
	err := db.read(ctx, func(b *bucket) error {
		return b.ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("users: record %q: %w", k, err)
			}
			us = append(us, r.user())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("users: list: %w", err)
	}
	return us, nil
}

// Delete removes the user record (not their files: that is the caller's
// job, e.g. `user del --purge`).
func (db *DB) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		// Folder grants and group memberships go with the user, so a
		// new account of the same name starts without them.
		return dropGrants(tx, name)
	})
	if err != nil {
		return fmt.Errorf("users: delete %s: %w", name, err)
	}
	db.touchMu.Lock()
	for k := range db.touched {
		if strings.HasPrefix(k, name+"\x00") {
			delete(db.touched, k)
		}
	}
	db.touchMu.Unlock()
	db.log.Info("users: user deleted", "user", name)
	return nil
}

// Update loads the user, calls fn on a copy and stores the result if fn
// returns nil and the result is valid. The name cannot change. fn runs
// inside the write transaction: keep it short and do not call back into db.
func (db *DB) Update(ctx context.Context, name string, fn func(*User) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	now := db.now()
	err := db.write(ctx, func(b *bucket) error {
		r, err := getRecord(b, name)
		if err != nil {
			return err
		}
		u := r.user()
		if err := fn(&u); err != nil {
			return err
		}
		if u.Name != name {
			return fmt.Errorf("users: renaming is not supported: %w", ErrInvalid)
		}
		if err := db.normalize(&u, now); err != nil {
			return err
		}
		return putRecord(b, toRecord(u))
	})
	if err != nil {
		return fmt.Errorf("users: update %s: %w", name, err)
	}
	return nil
}

// SetPassword replaces the user's password hash (under the current Argon2id
// parameters). An empty password removes password login (key-only user).
// Cached verifications of the old password die with the old hash.
func (db *DB) SetPassword(ctx context.Context, name string, password []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	if _, err := db.Get(ctx, name); err != nil {
		return fmt.Errorf("users: set password: %w", err)
	}
	h := ""
	if len(password) > 0 {
		var err error
		if h, err = db.hash(ctx, password); err != nil {
			return fmt.Errorf("users: set password %s: %w", name, err)
		}
	}
	if err := db.Update(ctx, name, func(u *User) error { u.PasswordHash = h; return nil }); err != nil {
		return err
	}
	db.log.Info("users: password changed", "user", name, "password", h != "")
	return nil
}

// AddKey parses an authorized_keys line (see ParseKey) and adds it to the
// user. A key already present is ErrExists.
func (db *DB) AddKey(ctx context.Context, name, authorizedKeyLine string) (Key, error) {
	k, _, err := ParseKey(authorizedKeyLine)
	if err != nil {
		return Key{}, err
	}
	k.Added = db.now()
	err = db.Update(ctx, name, func(u *User) error {
		for _, o := range u.Keys {
			if o.Fingerprint == k.Fingerprint {
				return fmt.Errorf("users: key %s: %w", k.Fingerprint, ErrExists)
			}
		}
		u.Keys = append(u.Keys, k)
		return nil
	})
	if err != nil {
		return Key{}, err
	}
	db.log.Info("users: key added", "user", name, "fingerprint", k.Fingerprint)
	return k, nil
}

// DelKey removes the key whose fingerprint ("SHA256:..." or without the
// prefix) or comment is fingerprintOrComment. A comment shared by several
// keys is ErrInvalid (use the fingerprint); no match is ErrNotFound.
func (db *DB) DelKey(ctx context.Context, name, fingerprintOrComment string) error {
	sel := strings.TrimSpace(fingerprintOrComment)
	if sel == "" {
		return fmt.Errorf("users: delete key: empty selector: %w", ErrInvalid)
	}
	var removed []string
	err := db.Update(ctx, name, func(u *User) error {
		idx := -1
		for i, k := range u.Keys {
			if k.Fingerprint == sel || strings.TrimPrefix(k.Fingerprint, "SHA256:") == sel {
				idx = i
				break
			}
		}
		if idx < 0 {
			n := 0
			for i, k := range u.Keys {
				if k.Comment != "" && k.Comment == sel {
					idx = i
					n++
				}
			}
			if n > 1 {
				return fmt.Errorf("users: %d keys have comment %q; give the fingerprint: %w", n, sel, ErrInvalid)
			}
		}
		if idx < 0 {
			return fmt.Errorf("users: key %q: %w", sel, ErrNotFound)
		}
		removed = append(removed, u.Keys[idx].Fingerprint)
		u.Keys = slices.Delete(u.Keys, idx, idx+1)
		return nil
	})
	if err != nil {
		return err
	}
	db.log.Info("users: key deleted", "user", name, "fingerprint", removed[0])
	return nil
}

// Ping reports whether the database answers: a read transaction opens
// (readiness probes).
func (db *DB) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if db.etcd != nil {
		return db.etcd.ping(ctx)
	}
	return db.bolt.View(func(*bbolt.Tx) error { return nil })
}

// CopyTo writes a consistent copy of the database to path (bbolt's
// transactional copy: a read transaction, so logins and changes go on),
// mode 0600, fsynced. A sealed database stays sealed in the copy.
//
// On etcd there is no file to copy: it is ErrNotSupported (an etcd
// snapshot, `etcdctl snapshot save`, is the cluster's backup).
func (db *DB) CopyTo(path string) error {
	if db.etcd != nil {
		return fmt.Errorf("users: copy to %s: the database is in etcd: %w", path, ErrNotSupported)
	}
	err := db.bolt.View(func(tx *bbolt.Tx) error { return tx.CopyFile(path, 0o600) })
	if err != nil {
		return fmt.Errorf("users: copy to %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
