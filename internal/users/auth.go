package users

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// lookup loads name for authentication. An invalid or unknown name is
// found=false with no error.
func (db *DB) lookup(ctx context.Context, name string) (u User, found bool, err error) {
	if !validName(name) {
		return User{}, false, nil
	}
	err = db.read(ctx, func(b *bucket) error {
		r, err := getRecord(b, name)
		if err != nil {
			return err
		}
		u, found = r.user(), true
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return User{}, false, nil
	}
	return u, found, err
}

// AuthPassword authenticates name with password for protocol proto ("ssh",
// "dav", "web"; logged) from remote ("ip:port" or "ip").
//
// Order: a banned address or name gets ErrBanned without any check (the
// name's ban does not apply from an address the user logged in from
// before, nor from a safelisted one); a cached verification (same name and
// password, same stored hash, user enabled) succeeds at once; otherwise the
// attempt takes a slot of the address's and the name's failure budget
// (waiting while attempts in flight fill it, see defender.begin), serves
// the defender's delay (returning early with ctx's error if ctx ends
// first), waits its turn for Argon2id (shared in turn between source
// addresses), looks at the ban again, and only then runs Argon2id against
// the user's hash, or against a dummy hash with the current parameters for
// an unknown, disabled or key-only user, so every failure costs the same
// and returns ErrAuthFailed. A success under parameters weaker than
// Options.Argon2 rewrites the hash with the current ones.
//
// Two-factor login: for a user with TwoFactor (or any user under
// Options.Require2FA), "dav" and "ssh" logins take only an app password
// allowing that protocol (webdav, sftp), matched before the defender's
// delay like a cached password (it needs the secret anyway), never cached
// (revocation takes effect at the next request); the account password is
// then refused there, and verified against the dummy hash so the failure
// costs what every failure costs. "web" checks the account password: the
// browser asks for the code next (VerifySecondFactor).
func (db *DB) AuthPassword(ctx context.Context, proto, remote, name string, password []byte) (User, error) {
	u, _, err := db.AuthLogin(ctx, proto, remote, name, password)
	return u, err
}

// AuthLogin is AuthPassword that also returns the id of the app password
// that matched ("" for the account password), for a protocol that must
// end its session when that app password is revoked (sftpd).
func (db *DB) AuthLogin(ctx context.Context, proto, remote, name string, password []byte) (User, string, error) {
	if err := ctx.Err(); err != nil {
		return User{}, "", fmt.Errorf("users: auth: %w", err)
	}
	if db.def.bannedFor(remote, name) {
		db.log.Debug("users: login refused while banned", "proto", proto, "remote", remote, "user", logName(name))
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Err: ErrBanned})
		return User{}, "", ErrBanned
	}
	appProto, isApp := appProtocol(proto)
	// quick looks the user up and accepts, without the defender's delay or
	// Argon2id, an app password (where only those are taken) or a password
	// verified recently. appOnly says the account password is refused here.
	var (
		u       User
		found   bool
		appOnly bool
	)
	quick := func() (appID string, ok bool, err error) {
		if u, found, err = db.lookup(ctx, name); err != nil {
			return "", false, fmt.Errorf("users: auth: %w", err)
		}
		appOnly = isApp && found && db.NeedsSecondFactor(u)
		if appOnly && !u.Disabled {
			if i := matchApp(u, appProto, password); i >= 0 {
				id := u.AppPasswords[i].ID
				db.loggedIn(ctx, proto, remote, &u, "app-password", id, false)
				return id, true, nil
			}
		}
		// The HMAC runs for unknown users too, so both paths do the same work.
		if db.cache.hit(name, password, u.PasswordHash, found && !u.Disabled && !appOnly, db.now()) {
			db.passwordOK(ctx, proto, remote, &u, true)
			return "", true, nil
		}
		return "", false, nil
	}
	if id, ok, err := quick(); err != nil {
		return User{}, "", err
	} else if ok {
		return u, id, nil
	}
	a, delay, err := db.def.begin(ctx, remote, name)
	if errors.Is(err, ErrBanned) {
		db.log.Debug("users: login refused while banned", "proto", proto, "remote", remote, "user", logName(name))
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Err: ErrBanned})
		return User{}, "", err
	}
	if err != nil {
		return User{}, "", fmt.Errorf("users: auth: %w", err)
	}
	failed := false
	defer func() { db.def.end(a, proto, name, failed) }()
	db.log.Debug("users: password check admitted", "proto", proto, "remote", remote, "user", logName(name))
	// An attempt that waited for others in flight may find the password
	// verified by one of them meanwhile (a client's parallel first
	// requests); the record may have changed while waiting.
	if id, ok, err := quick(); err != nil {
		return User{}, "", err
	} else if ok {
		return u, id, nil
	}
	if delay > 0 {
		if err := db.def.opts.Sleep(ctx, delay); err != nil {
			return User{}, "", fmt.Errorf("users: auth: %w", err)
		}
	}
	if err := db.sem.acquire(ctx, a.src); err != nil {
		return User{}, "", fmt.Errorf("users: auth: %w", err)
	}
	// A ban may have begun during the delay or the wait for Argon2id (a
	// name scored from other addresses, a failed SSH connection).
	if err := db.def.recheck(a); err != nil {
		db.sem.release()
		db.log.Debug("users: login refused while banned", "proto", proto, "remote", remote, "user", logName(name))
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Err: ErrBanned})
		return User{}, "", err
	}
	target, genuine := db.dummy, false
	if found && !u.Disabled && u.PasswordHash != "" && !appOnly {
		if p, err := parsePHC(u.PasswordHash); err == nil {
			target, genuine = p, true
		} else {
			db.log.Error("users: stored password hash unusable; password login impossible", "user", name, "err", err)
		}
	}
	pw := password
	if len(pw) > maxPasswordLen {
		pw, genuine = pw[:maxPasswordLen], false
	}
	db.verifies.Add(1)
	if db.onVerify != nil {
		db.onVerify(remote)
	}
	start := time.Now()
	ok := target.verify(pw) && genuine
	db.noteVerifyCost(time.Since(start))
	db.sem.release()
	db.log.Debug("users: password verified", "proto", proto, "remote", remote, "user", logName(name), "ok", ok)
	if !ok {
		failed = true
		db.log.Info("users: login failed", "event", EventLoginFailed, "proto", proto, "remote", remote, "user", logName(name), "method", "password")
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Method: "password", Err: ErrAuthFailed})
		return User{}, "", ErrAuthFailed
	}
	if target.params.weakerThan(db.params) {
		db.rehash(context.WithoutCancel(ctx), &u, password)
	}
	db.cache.put(name, password, u.PasswordHash, db.now())
	db.passwordOK(ctx, proto, remote, &u, false)
	return u, "", nil
}

// noteVerifyCost folds one Argon2id verification's wall time into a moving
// average (1/8 weight), which PaceRefusal waits.
func (db *DB) noteVerifyCost(d time.Duration) {
	for {
		old := db.verifyCost.Load()
		nv := int64(d)
		if old != 0 {
			nv = old + (int64(d)-old)/8
		}
		if db.verifyCost.CompareAndSwap(old, nv) {
			return
		}
	}
}

// PaceRefusal waits as long as a failed password check usually takes (the
// defender's delay at the threshold plus the average Argon2id time), or
// until ctx ends. A protocol whose answer to a ban must not differ from a
// failure (the browser's sign-in form) calls it on ErrBanned, so the ban
// is not visible by timing either. It runs no Argon2id (it must not spend
// the hashing budget that bans protect): before any verification has been
// timed it times one dummy verification, once per process.
func (db *DB) PaceRefusal(ctx context.Context) error {
	if db.verifyCost.Load() == 0 {
		db.calibrate.Do(func() {
			// Not cut short by this caller's ctx: the Once runs only once.
			if err := db.sem.acquire(context.WithoutCancel(ctx), ""); err != nil {
				return
			}
			start := time.Now()
			db.dummy.verify([]byte("calibration"))
			db.noteVerifyCost(time.Since(start))
			db.sem.release()
		})
	}
	d := db.def.refusalDelay() + time.Duration(db.verifyCost.Load())
	db.log.Debug("users: refusal paced like a failure", "wait", d)
	if err := db.def.opts.Sleep(ctx, d); err != nil {
		return fmt.Errorf("users: pace refusal: %w", err)
	}
	return nil
}

// rehash replaces u's hash with one under the current parameters, unless
// the stored hash changed meanwhile. Failure is logged, not returned: the
// login itself succeeded.
func (db *DB) rehash(ctx context.Context, u *User, password []byte) {
	old := u.PasswordHash
	h, err := db.hash(ctx, password)
	if err != nil {
		return
	}
	err = db.write(ctx, func(b *bucket) error {
		r, err := getRecord(b, u.Name)
		if err != nil {
			return err
		}
		if r.PasswordHash != old {
			return errStale
		}
		r.PasswordHash = h
		return putRecord(b, r)
	})
	switch {
	case err == nil:
		u.PasswordHash = h
		db.log.Info("users: password hash upgraded to current argon2id parameters", "user", u.Name,
			"t", db.params.Time, "m", db.params.Memory, "p", db.params.Threads)
	case errors.Is(err, errStale):
	default:
		db.log.Warn("users: password hash upgrade failed", "user", u.Name, "err", err)
	}
}

var errStale = errors.New("users: record changed")

// AuthKey authenticates name by public key for sftpd's PublicKeyCallback.
// The key's wire encoding is compared in constant time with every stored
// key. A banned address gets ErrBanned; a ban of the name does not apply to
// keys. A key that is not accepted
// is ErrAuthFailed but is NOT scored by the defender, because SSH clients
// offer several keys per login; sftpd must call Failed when a connection
// ends without authenticating.
func (db *DB) AuthKey(ctx context.Context, proto, remote, name string, key ssh.PublicKey) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, fmt.Errorf("users: auth: %w", err)
	}
	// Only the address's ban applies: a ban of the name (which anyone can
	// cause by guessing passwords for it) must not lock out key logins.
	if db.def.banned(remote) {
		db.log.Debug("users: login refused while banned", "proto", proto, "remote", remote, "user", logName(name))
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Err: ErrBanned})
		return User{}, ErrBanned
	}
	if key == nil {
		return User{}, ErrAuthFailed
	}
	u, found, err := db.lookup(ctx, name)
	if err != nil {
		return User{}, fmt.Errorf("users: auth: %w", err)
	}
	want := key.Marshal()
	match := 0
	if found && !u.Disabled {
		for _, k := range u.Keys {
			_, pk, err := ParseKey(k.Line)
			if err != nil {
				continue
			}
			match |= subtle.ConstantTimeCompare(pk.Marshal(), want)
		}
	} else {
		subtle.ConstantTimeCompare(db.dummyK, want)
	}
	if match != 1 {
		db.log.Debug("users: public key not accepted", "proto", proto, "remote", remote, "user", logName(name),
			"fingerprint", ssh.FingerprintSHA256(key))
		return User{}, ErrAuthFailed
	}
	db.loggedIn(ctx, proto, remote, &u, "publickey", "", false)
	return u, nil
}

// Failed reports a login that failed overall without going through a scored
// AuthPassword failure: sftpd calls it when an SSH connection closes without
// authenticating (every offered key refused, or the client gave up), and a
// protocol may call it for other failed attempts (bad handshake). It adds
// one failure for remote and, if name is a valid user name, for name.
func (db *DB) Failed(proto, remote, name string) {
	db.def.fail(proto, remote, name, scoreFailed)
	db.log.Info("users: login failed", "event", EventLoginFailed, "proto", proto, "remote", remote, "user", logName(name), "method", "connection")
	db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Method: "connection", Err: ErrAuthFailed})
}

// SetLoginHook sets fn to be called for every login outcome (the audit
// trail): success, failure, refusal while banned, and a ban's start. Call
// it before the DB serves logins; fn runs on the login's goroutine (for a
// ban, under the defender's lock) and must neither block for long nor call
// back into the DB.
func (db *DB) SetLoginHook(fn func(LoginEvent)) {
	db.onLogin = fn
	db.def.mu.Lock()
	db.def.onLogin = fn
	db.def.mu.Unlock()
}

func (db *DB) loginEvent(ev LoginEvent) {
	if db.onLogin != nil {
		db.onLogin(ev)
	}
}

// Bans lists the active bans (they live in memory: a restart clears them).
func (db *DB) Bans() []Ban { return db.def.bans() }

// Unban lifts the ban on an address ("ip", "ip:port"; an IPv6 address
// stands for its /64) or, written "user:NAME", a user name, and forgets its
// recent failures. It is ErrNotFound when no ban was active and ErrInvalid
// for anything that is neither.
func (db *DB) Unban(who string) error { return db.def.unban(who) }

// Banned reports whether remote ("ip:port" or "ip") is banned now, so a
// protocol can drop a connection before the handshake.
func (db *DB) Banned(remote string) bool { return db.def.banned(remote) }

// loggedIn records a success: LastLogin (with the recent-logins list and
// the app password's last use) is written at most once a minute per user
// and app password, so WebDAV clients authenticating every request do not
// make every request a bbolt write.
//
// cached says the password was verified recently (the login hook may skip
// such logins: WebDAV clients authenticate every request); an app
// password, never cached, counts as cached when it was used within the
// same minute.
func (db *DB) loggedIn(ctx context.Context, proto, remote string, u *User, method, appID string, cached bool) {
	now := db.now()
	if appID != "" {
		for _, a := range u.AppPasswords {
			if a.ID == appID && now.Sub(a.LastUsed) < loginTouchEvery {
				cached = true
			}
		}
	}
	db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: u.Name, Method: method, Cached: cached})
	db.def.remember(u.Name, remote)
	db.log.Debug("users: login", "proto", proto, "remote", remote, "user", u.Name, "method", method)
	due := now.Sub(u.LastLogin) >= loginTouchEvery
	if appID != "" {
		for _, a := range u.AppPasswords {
			if a.ID == appID && now.Sub(a.LastUsed) >= loginTouchEvery {
				due = true
			}
		}
	}
	if !due {
		return
	}
	key := u.Name + "\x00" + appID
	db.touchMu.Lock()
	last, ok := db.touched[key]
	if ok && now.Sub(last) < loginTouchEvery && !now.Before(last) {
		db.touchMu.Unlock()
		return
	}
	db.touched[key] = now
	db.touchMu.Unlock()
	// The login succeeded: record it even if the request ends meanwhile.
	err := db.write(context.WithoutCancel(ctx), func(b *bucket) error {
		r, err := getRecord(b, u.Name)
		if err != nil {
			return err
		}
		r.LastLogin = now
		recordLogin(&r, LoginRecord{Time: now, Proto: proto, Remote: hostOf(remote), Method: method})
		if appID != "" {
			touchApp(&r, appID, now)
		}
		return putRecord(b, r)
	})
	if err != nil {
		db.log.Warn("users: recording last login failed", "user", u.Name, "err", err)
		return
	}
	u.LastLogin = now
}

// passwordOK records a successful account-password check: a login, except
// in the browser for a user with TwoFactor, where it is only the first
// step: the login (the last-login record, and the remembered address that
// exempts it from a ban of the name) comes with the code
// (VerifySecondFactor), so knowing the password alone does not make an
// address "known".
func (db *DB) passwordOK(ctx context.Context, proto, remote string, u *User, cached bool) {
	if proto == "web" && u.TwoFactor != nil {
		db.log.Debug("users: password accepted; second factor pending", "proto", proto, "remote", remote, "user", u.Name)
		return
	}
	db.loggedIn(ctx, proto, remote, u, "password", "", cached)
}

// hostOf is remote without its port.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// logName is name for logs, or a placeholder when it is not a valid user
// name: people type passwords into the user field, and such a string must
// not reach the log.
func logName(name string) string {
	if validName(name) {
		return name
	}
	return "(invalid name)"
}
