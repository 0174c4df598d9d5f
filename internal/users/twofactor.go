package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Two-factor login (issue 18).
//
// TOTP follows RFC 6238 through github.com/pquerna/otp with the parameters
// every authenticator app reads from an otpauth:// URL: SHA-1, six digits,
// 30-second steps. A code is accepted for the current step and one step
// either side (clock drift), and only for a step later than the last one
// accepted, so a code seen by someone else (shoulder, proxy log) cannot be
// used again, not even within its own window.
//
// Ten recovery codes are made at enrolment, shown once and stored as
// SHA-256: each is 80 random bits, far beyond guessing through the
// defender and beyond an offline search of a stolen database. Using one
// removes it.
//
// App passwords are random (160 bits from crypto/rand), named, limited to
// the protocols chosen (webdav, sftp) and stored as SHA-256, compared in
// constant time with every stored one. High-entropy secrets need no
// Argon2id: nobody can search 2^160. They are what WebDAV and SFTP
// password logins take once TwoFactor is set (or under Require2FA); the
// account password then works only in the browser, followed by a code.

// TwoFactor is a user's TOTP enrolment. The secret is stored in users.db
// (mode 0600) and never leaves it: not in JSON (PublicUser shows only
// whether 2FA is on), not in logs, not over the admin socket.
type TwoFactor struct {
	Secret   string    `json:"secret"`              // base32, as in the otpauth:// URL
	LastStep int64     `json:"last_step,omitempty"` // the last time step a code was accepted for
	Recovery []string  `json:"recovery,omitempty"`  // SHA-256 (hex) of the unused recovery codes
	Enrolled time.Time `json:"enrolled"`
}

// AppPassword is one app password. Hash is SHA-256 (hex) of the password,
// never in JSON output (PublicAppPassword).
type AppPassword struct {
	ID        string    `json:"id"` // 16 hex digits, for revocation
	Name      string    `json:"name"`
	Hash      string    `json:"hash"`
	Protocols []string  `json:"protocols"` // ProtoWebDAV, ProtoSFTP
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// Allows reports whether the app password may log in over protocol
// (ProtoWebDAV or ProtoSFTP).
func (a AppPassword) Allows(protocol string) bool { return slices.Contains(a.Protocols, protocol) }

// LoginRecord is one recorded login (User.Logins).
type LoginRecord struct {
	Time   time.Time `json:"time"`
	Proto  string    `json:"proto"`  // "ssh", "dav", "web"
	Remote string    `json:"remote"` // the client's address (no port)
	Method string    `json:"method"` // "password", "publickey", "app-password", "totp", "recovery-code"
}

// App password protocols.
const (
	ProtoWebDAV = "webdav"
	ProtoSFTP   = "sftp" // the SSH server: SFTP and SCP
)

const (
	// RecoveryCodes is how many recovery codes an enrolment makes.
	RecoveryCodes = 10
	// MaxAppPasswords bounds one user's app passwords.
	MaxAppPasswords = 50
	maxAppNameLen   = 64
	maxLogins       = 10
	totpSkew        = 1 // steps accepted either side of the current one
	totpPeriod      = 30
)

var (
	// ErrNoTwoFactor: the operation needs a TOTP enrolment the user does
	// not have (app passwords), or there is none to reset.
	ErrNoTwoFactor = errors.New("users: two-factor login is not set up")
	// ErrTwoFactorOn: enrolment when the user already has 2FA.
	ErrTwoFactorOn = errors.New("users: two-factor login is already set up")
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func totpOpts() totp.ValidateOpts {
	return totp.ValidateOpts{Period: totpPeriod, Skew: 0, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
}

// NewTOTPKey makes a new random TOTP key (160-bit secret) for name, to show
// as a QR code (Key.Image) and an otpauth:// URL; EnableTwoFactor stores it
// once the user has confirmed a code.
func NewTOTPKey(issuer, name string) (*otp.Key, error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: name, Period: totpPeriod,
		SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Rand: rand.Reader})
	if err != nil {
		return nil, fmt.Errorf("users: totp key: %w", err)
	}
	return k, nil
}

// matchTOTP returns the step in [now-skew, now+skew] whose code is code and
// that is later than after, or -1. Every candidate is computed and
// compared in constant time.
func matchTOTP(secret, code string, now time.Time, after int64) int64 {
	found := int64(-1)
	if len(code) != 6 {
		return -1
	}
	step := now.Unix() / totpPeriod
	for s := step - totpSkew; s <= step+totpSkew; s++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), totpOpts())
		if err != nil {
			return -1
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && s > after && found < 0 {
			found = s
		}
	}
	return found
}

// normCode strips the spaces and dashes people type or copy into codes and
// lowercases them.
func normCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			return -1
		case 'A' <= r && r <= 'Z':
			return r + ('a' - 'A')
		}
		return r
	}, code)
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newRecoveryCode is 80 random bits in lower-case base32, grouped by four
// ("abcd-efgh-ijkl-mnop").
func newRecoveryCode() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	s := strings.ToLower(b32.EncodeToString(b))
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// EnableTwoFactor stores secret (from NewTOTPKey) as name's TOTP enrolment
// if code is a current code for it, and returns the ten recovery codes to
// show the user once. A wrong code is ErrAuthFailed; an existing enrolment
// is ErrTwoFactorOn.
func (db *DB) EnableTwoFactor(ctx context.Context, name, secret, code string) ([]string, error) {
	if _, err := b32.DecodeString(strings.ToUpper(secret)); err != nil || len(secret) < 26 {
		return nil, fmt.Errorf("users: totp secret: %w", ErrInvalid)
	}
	now := db.now()
	step := matchTOTP(secret, normCode(code), now, -1)
	if step < 0 {
		db.log.Info("users: two-factor enrolment: wrong code", "user", logName(name))
		return nil, ErrAuthFailed
	}
	codes := make([]string, RecoveryCodes)
	hashes := make([]string, RecoveryCodes)
	for i := range codes {
		codes[i] = newRecoveryCode()
		hashes[i] = sha256Hex(normCode(codes[i]))
	}
	err := db.Update(ctx, name, func(u *User) error {
		if u.TwoFactor != nil {
			return ErrTwoFactorOn
		}
		u.TwoFactor = &TwoFactor{Secret: secret, LastStep: step, Recovery: hashes, Enrolled: now}
		return nil
	})
	if err != nil {
		return nil, err
	}
	db.log.Info("users: two-factor login enabled", "user", name)
	return codes, nil
}

// NewRecoveryCodes replaces name's recovery codes with ten new ones.
func (db *DB) NewRecoveryCodes(ctx context.Context, name string) ([]string, error) {
	codes := make([]string, RecoveryCodes)
	hashes := make([]string, RecoveryCodes)
	for i := range codes {
		codes[i] = newRecoveryCode()
		hashes[i] = sha256Hex(normCode(codes[i]))
	}
	err := db.Update(ctx, name, func(u *User) error {
		if u.TwoFactor == nil {
			return ErrNoTwoFactor
		}
		u.TwoFactor.Recovery = hashes
		return nil
	})
	if err != nil {
		return nil, err
	}
	db.log.Info("users: recovery codes replaced", "user", name)
	return codes, nil
}

// ResetTwoFactor removes name's TOTP enrolment, recovery codes and app
// passwords (made for a device that may be the lost one). The account
// password alone works again everywhere, unless Require2FA, which makes
// the next browser login enrol anew. Open SFTP sessions logged in with an
// app password end (sftpd re-checks on the revision change).
// ErrNoTwoFactor when there was none.
func (db *DB) ResetTwoFactor(ctx context.Context, name string) error {
	err := db.Update(ctx, name, func(u *User) error {
		if u.TwoFactor == nil && len(u.AppPasswords) == 0 {
			return ErrNoTwoFactor
		}
		u.TwoFactor, u.AppPasswords = nil, nil
		return nil
	})
	if err != nil {
		return err
	}
	db.log.Info("users: two-factor login reset", "user", name)
	return nil
}

// VerifySecondFactor checks the code a browser login gives after the
// password: a TOTP code (six digits) or a recovery code. The attempt goes
// through the login defender like a password (a wrong code scores a
// failure for the address and the name, bans apply, the delay is served).
// A TOTP code counts only for a step later than the last one accepted
// (replay); a recovery code is removed when used. It returns the method
// ("totp" or "recovery-code"), ErrAuthFailed, or ErrBanned.
func (db *DB) VerifySecondFactor(ctx context.Context, proto, remote, name, code string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("users: second factor: %w", err)
	}
	if db.def.bannedFor(remote, name) {
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Method: "second-factor", Err: ErrBanned})
		return "", ErrBanned
	}
	a, delay, err := db.def.begin(ctx, remote, name)
	if errors.Is(err, ErrBanned) {
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Method: "second-factor", Err: ErrBanned})
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("users: second factor: %w", err)
	}
	failed := true
	defer func() { db.def.end(a, proto, name, failed) }()
	if delay > 0 {
		if err := db.def.opts.Sleep(ctx, delay); err != nil {
			failed = false
			return "", fmt.Errorf("users: second factor: %w", err)
		}
	}
	if err := db.def.recheck(a); err != nil {
		failed = false
		return "", err
	}
	code = normCode(code)
	method := "totp"
	if len(code) != 6 {
		method = "recovery-code"
	}
	now := db.now()
	var u User
	err = db.Update(ctx, name, func(x *User) error {
		tf := x.TwoFactor
		if x.Disabled || tf == nil || len(code) > 64 {
			return ErrAuthFailed
		}
		if method == "totp" {
			s := matchTOTP(tf.Secret, code, now, tf.LastStep)
			if s < 0 {
				return ErrAuthFailed
			}
			tf.LastStep = s
		} else {
			h := sha256Hex(code)
			idx := -1
			for i, r := range tf.Recovery {
				if subtle.ConstantTimeCompare([]byte(r), []byte(h)) == 1 {
					idx = i
				}
			}
			if idx < 0 {
				return ErrAuthFailed
			}
			tf.Recovery = slices.Delete(tf.Recovery, idx, idx+1)
		}
		u = *x
		return nil
	})
	if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
		db.log.Info("users: login failed", "event", EventLoginFailed, "proto", proto, "remote", remote, "user", logName(name), "method", method)
		db.loginEvent(LoginEvent{Proto: proto, Remote: remote, User: logName(name), Method: method, Err: ErrAuthFailed})
		return "", ErrAuthFailed
	}
	if err != nil {
		failed = false
		return "", fmt.Errorf("users: second factor: %w", err)
	}
	failed = false
	if method == "recovery-code" {
		db.log.Warn("users: recovery code used", "user", name, "remote", remote, "left", len(u.TwoFactor.Recovery))
	}
	db.loggedIn(ctx, proto, remote, &u, method, "", false)
	return method, nil
}

// NeedsSecondFactor reports whether password logins of u over WebDAV and
// SFTP take only app passwords: u has 2FA, or the server requires it.
func (db *DB) NeedsSecondFactor(u User) bool { return u.TwoFactor != nil || db.require2FA }

// Require2FA reports Options.Require2FA.
func (db *DB) Require2FA() bool { return db.require2FA }

// appProtocol maps an AuthPassword proto to the app password protocol it
// needs; "" for the browser ("web"), which asks for a code instead.
func appProtocol(proto string) (string, bool) {
	switch proto {
	case "web":
		return "", false
	case "dav":
		return ProtoWebDAV, true
	case "ssh":
		return ProtoSFTP, true
	}
	return "(unknown)", true // fail closed: no app password allows it
}

// matchApp returns the index of u's app password that is password and
// allows protocol, or -1; it compares with every stored hash.
func matchApp(u User, protocol string, password []byte) int {
	h := sha256.Sum256(password)
	want := []byte(hex.EncodeToString(h[:]))
	idx := -1
	for i, a := range u.AppPasswords {
		if subtle.ConstantTimeCompare([]byte(a.Hash), want) == 1 && a.Allows(protocol) {
			idx = i
		}
	}
	return idx
}

// ParseProtocols checks an app password's protocol list.
func ParseProtocols(ps []string) ([]string, error) {
	var out []string
	for _, p := range ps {
		p = strings.TrimSpace(strings.ToLower(p))
		if p != ProtoWebDAV && p != ProtoSFTP {
			return nil, fmt.Errorf("users: app password protocol %q: want webdav or sftp: %w", p, ErrInvalid)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("users: app password: choose at least one protocol: %w", ErrInvalid)
	}
	slices.Sort(out)
	return out, nil
}

// AddAppPassword makes a new app password for name, allowed over protocols
// (ProtoWebDAV, ProtoSFTP), and returns its record and the password, which
// is shown once and stored only as SHA-256. The user must have 2FA
// (ErrNoTwoFactor).
func (db *DB) AddAppPassword(ctx context.Context, name, label string, protocols []string) (AppPassword, string, error) {
	label = strings.TrimSpace(label)
	if label == "" || len(label) > maxAppNameLen || !utf8.ValidString(label) || strings.ContainsFunc(label, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return AppPassword{}, "", fmt.Errorf("users: app password name: 1-%d printable characters: %w", maxAppNameLen, ErrInvalid)
	}
	ps, err := ParseProtocols(protocols)
	if err != nil {
		return AppPassword{}, "", err
	}
	secret := make([]byte, 20)
	_, _ = rand.Read(secret)
	pw := strings.ToLower(b32.EncodeToString(secret)) // 32 characters, 160 bits
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	ap := AppPassword{ID: hex.EncodeToString(id), Name: label, Hash: sha256Hex(pw), Protocols: ps, Created: db.now()}
	err = db.Update(ctx, name, func(u *User) error {
		if u.TwoFactor == nil {
			return ErrNoTwoFactor
		}
		if len(u.AppPasswords) >= MaxAppPasswords {
			return fmt.Errorf("users: at most %d app passwords: %w", MaxAppPasswords, ErrInvalid)
		}
		for _, o := range u.AppPasswords {
			if o.Name == label {
				return fmt.Errorf("users: app password %q: %w", label, ErrExists)
			}
		}
		u.AppPasswords = append(u.AppPasswords, ap)
		return nil
	})
	if err != nil {
		return AppPassword{}, "", err
	}
	db.log.Info("users: app password added", "user", name, "app_password", ap.ID, "protocols", strings.Join(ps, ","))
	return ap, pw, nil
}

// RevokeAppPassword removes name's app password id. Logins with it fail
// from the next request on (there is no cache of app passwords), and open
// SFTP sessions made with it end (sftpd re-checks on the revision change).
func (db *DB) RevokeAppPassword(ctx context.Context, name, id string) error {
	err := db.Update(ctx, name, func(u *User) error {
		n := len(u.AppPasswords)
		u.AppPasswords = slices.DeleteFunc(u.AppPasswords, func(a AppPassword) bool { return a.ID == id })
		if len(u.AppPasswords) == n {
			return fmt.Errorf("users: app password %q: %w", id, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return err
	}
	db.log.Info("users: app password revoked", "user", name, "app_password", id)
	return nil
}

// AppPasswordValid reports whether u still has app password id allowing
// protocol: sftpd's re-check of a session logged in with one.
func AppPasswordValid(u User, id, protocol string) bool {
	for _, a := range u.AppPasswords {
		if a.ID == id {
			return a.Allows(protocol)
		}
	}
	return false
}

// DisableTwoFactor is the user's own switch-off: it needs a current code
// (or a recovery code), checked like a login's second step, and removes
// the enrolment and the app passwords. Under Require2FA it is ErrInvalid.
func (db *DB) DisableTwoFactor(ctx context.Context, remote, name, code string) error {
	if db.require2FA {
		return fmt.Errorf("users: the server requires two-factor login: %w", ErrInvalid)
	}
	if _, err := db.VerifySecondFactor(ctx, "web", remote, name, code); err != nil {
		return err
	}
	return db.ResetTwoFactor(ctx, name)
}

// recordLogin appends a login to u's recent logins (newest first).
func recordLogin(r *record, l LoginRecord) {
	r.Logins = append([]LoginRecord{l}, r.Logins...)
	if len(r.Logins) > maxLogins {
		r.Logins = r.Logins[:maxLogins]
	}
}

// touchApp records the last use of app password id in r.
func touchApp(r *record, id string, now time.Time) {
	for i := range r.AppPasswords {
		if r.AppPasswords[i].ID == id {
			r.AppPasswords[i].LastUsed = now
		}
	}
}
