package users

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/securefsd/securefsd/internal/testutil"
)

// code computes the TOTP code for secret at t with the library, as an
// authenticator app would.
func code(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrol sets up 2FA for name at clk's time and returns the secret and the
// recovery codes.
func enrol(t testing.TB, db *DB, clk *fakeClock, name string) (string, []string) {
	t.Helper()
	k, err := NewTOTPKey("securefsd", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnableTwoFactor(t.Context(), name, k.Secret(), "000000x"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("enrolment with a wrong code: %v", err)
	}
	codes, err := db.EnableTwoFactor(t.Context(), name, k.Secret(), code(t, k.Secret(), clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return k.Secret(), codes
}

func TestTOTPEnrolAndVerify(t *testing.T) {
	clk := newClock()
	rec := testutil.NewLogs()
	db, _ := openTest(t, Options{Now: clk.Now, Logger: rec.Logger(), Defender: DefenderOptions{Disabled: true}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "correct horse")
	secret, codes := enrol(t, db, clk, "alice")
	if len(codes) != RecoveryCodes {
		t.Fatalf("%d recovery codes", len(codes))
	}
	if _, err := db.EnableTwoFactor(ctx, "alice", secret, code(t, secret, clk.Now())); !errors.Is(err, ErrTwoFactorOn) {
		t.Fatalf("second enrolment: %v", err)
	}
	// The enrolment's own code was used: it does not log in (replay).
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", code(t, secret, clk.Now())); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("the enrolment code replayed: %v", err)
	}
	clk.Advance(30 * time.Second)
	c := code(t, secret, clk.Now())
	if m, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", c); err != nil || m != "totp" {
		t.Fatalf("fresh code: %q %v", m, err)
	}
	// Replay of the same code within its window (and of an older one).
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", c); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("replayed code: %v", err)
	}
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", code(t, secret, clk.Now().Add(-30*time.Second))); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("older code after a newer one: %v", err)
	}
	// Drift of one step ahead is accepted, two is not.
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", code(t, secret, clk.Now().Add(60*time.Second))); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("code two steps ahead: %v", err)
	}
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", code(t, secret, clk.Now().Add(30*time.Second))); err != nil {
		t.Fatalf("code one step ahead: %v", err)
	}
	// A recovery code works once, in any case and grouping.
	rc := strings.ToUpper(strings.ReplaceAll(codes[3], "-", " "))
	if m, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", rc); err != nil || m != "recovery-code" {
		t.Fatalf("recovery code: %q %v", m, err)
	}
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", codes[3]); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("recovery code reused: %v", err)
	}
	u, _ := db.Get(ctx, "alice")
	if len(u.TwoFactor.Recovery) != RecoveryCodes-1 {
		t.Fatalf("%d recovery codes left", len(u.TwoFactor.Recovery))
	}
	// Neither the secret nor a recovery code is in JSON or in the logs.
	j, _ := json.Marshal(u)
	for _, s := range append([]string{secret, u.TwoFactor.Recovery[0]}, codes...) {
		if strings.Contains(string(j), s) || rec.AnyText(s) {
			t.Fatalf("secret %q leaked: json %s", s, j)
		}
	}
	var back User
	if err := json.Unmarshal(j, &back); err != nil || back.TwoFactor == nil || back.TwoFactor.Secret != "" || len(back.TwoFactor.Recovery) != RecoveryCodes-1 {
		t.Fatalf("JSON round trip: %+v %v", back.TwoFactor, err)
	}
	// A user without 2FA has no second factor to give.
	mustAdd(t, db, User{Name: "bob", Perms: PermAll}, "pw")
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "bob", "123456"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("bob: %v", err)
	}
	// Reset: gone, and a new enrolment is possible.
	if err := db.ResetTwoFactor(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := db.ResetTwoFactor(ctx, "alice"); !errors.Is(err, ErrNoTwoFactor) {
		t.Fatalf("second reset: %v", err)
	}
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.1:1", "alice", codes[0]); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("recovery code after reset: %v", err)
	}
}

// TestTOTPGuessingBanned: wrong codes score like wrong passwords: the
// address is banned at its threshold and then even the right code is
// refused without a check.
func TestTOTPGuessingBanned(t *testing.T) {
	clk := newClock()
	sl := &sleepRecorder{}
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{AddrThreshold: 5, UserThreshold: 100, Sleep: sl.Sleep}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "correct horse")
	secret, _ := enrol(t, db, clk, "alice")
	clk.Advance(30 * time.Second)
	good := code(t, secret, clk.Now())
	bad := "000000"
	if bad == good {
		bad = "000001"
	}
	for i := range 5 {
		if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.9:1", "alice", bad); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.9:1", "alice", good); !errors.Is(err, ErrBanned) {
		t.Fatalf("right code after the ban: %v", err)
	}
	bans := db.Bans()
	if len(bans) != 1 || bans[0].Kind != "address" || bans[0].Who != "10.0.0.9" {
		t.Fatalf("bans %+v", bans)
	}
	// From elsewhere the right code still works.
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.10:1", "alice", good); err != nil {
		t.Fatalf("right code from another address: %v", err)
	}
}

func TestAppPasswords(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{Disabled: true}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "correct horse")
	if _, _, err := db.AddAppPassword(ctx, "alice", "laptop", []string{"webdav"}); !errors.Is(err, ErrNoTwoFactor) {
		t.Fatalf("app password without 2FA: %v", err)
	}
	// Before 2FA the account password works over WebDAV (and is cached).
	if _, err := db.AuthPassword(ctx, "dav", "10.0.0.1", "alice", []byte("correct horse")); err != nil {
		t.Fatal(err)
	}
	enrol(t, db, clk, "alice")
	for _, bad := range [][]string{nil, {"ftp"}, {""}} {
		if _, _, err := db.AddAppPassword(ctx, "alice", "x", bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("protocols %q: %v", bad, err)
		}
	}
	dav, davPW, err := db.AddAppPassword(ctx, "alice", "rclone", []string{"webdav"})
	if err != nil {
		t.Fatal(err)
	}
	if len(davPW) != 32 {
		t.Fatalf("app password %q: want 32 base32 characters (160 bits)", davPW)
	}
	if _, _, err := db.AddAppPassword(ctx, "alice", "rclone", []string{"sftp"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	both, bothPW, err := db.AddAppPassword(ctx, "alice", "phone", []string{"sftp", "WebDAV"})
	if err != nil || strings.Join(both.Protocols, ",") != "sftp,webdav" {
		t.Fatalf("both: %+v %v", both, err)
	}
	// The account password no longer works over WebDAV or SFTP, not even
	// from the cache; the browser still takes it.
	for _, proto := range []string{"dav", "ssh"} {
		if _, err := db.AuthPassword(ctx, proto, "10.0.0.1", "alice", []byte("correct horse")); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("%s with the account password under 2FA: %v", proto, err)
		}
	}
	if _, err := db.AuthPassword(ctx, "web", "10.0.0.1", "alice", []byte("correct horse")); err != nil {
		t.Fatalf("browser: %v", err)
	}
	// App passwords per protocol.
	u, id, err := db.AuthLogin(ctx, "dav", "10.0.0.1", "alice", []byte(davPW))
	if err != nil || id != dav.ID || u.Name != "alice" {
		t.Fatalf("webdav app password: %v %q", err, id)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "10.0.0.1", "alice", []byte(davPW)); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("webdav-only app password over SFTP: %v", err)
	}
	if _, err := db.AuthPassword(ctx, "web", "10.0.0.1", "alice", []byte(davPW)); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("app password in the browser: %v", err)
	}
	for _, proto := range []string{"dav", "ssh"} {
		if _, id, err := db.AuthLogin(ctx, proto, "10.0.0.1", "alice", []byte(bothPW)); err != nil || id != both.ID {
			t.Fatalf("%s: %v", proto, err)
		}
	}
	// Last use recorded; recent logins kept.
	u, _ = db.Get(ctx, "alice")
	if u.AppPasswords[0].LastUsed.IsZero() || u.AppPasswords[1].LastUsed.IsZero() || len(u.Logins) == 0 || u.Logins[0].Method != "app-password" {
		t.Fatalf("last use: %+v logins %+v", u.AppPasswords, u.Logins)
	}
	j, _ := json.Marshal(u)
	if strings.Contains(string(j), davPW) || strings.Contains(string(j), u.AppPasswords[0].Hash) {
		t.Fatalf("app password or hash in JSON: %s", j)
	}
	// Revocation takes effect at the next login.
	if err := db.RevokeAppPassword(ctx, "alice", dav.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AuthPassword(ctx, "dav", "10.0.0.1", "alice", []byte(davPW)); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("revoked app password: %v", err)
	}
	if err := db.RevokeAppPassword(ctx, "alice", dav.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revocation: %v", err)
	}
	// Reset removes the app passwords and gives the account password back.
	if err := db.ResetTwoFactor(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "10.0.0.1", "alice", []byte(bothPW)); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("app password after reset: %v", err)
	}
	if _, err := db.AuthPassword(ctx, "ssh", "10.0.0.1", "alice", []byte("correct horse")); err != nil {
		t.Fatalf("account password after reset: %v", err)
	}
}

// TestRequire2FA: under Require2FA an account without 2FA has no password
// login over WebDAV or SFTP; keys and the browser still work.
func TestRequire2FA(t *testing.T) {
	db, _ := openTest(t, Options{Require2FA: true, Defender: DefenderOptions{Disabled: true}})
	ctx := t.Context()
	pk, line := newKey(t, "k")
	mustAdd(t, db, User{Name: "alice", Perms: PermAll, Keys: []Key{{Line: line}}}, "correct horse")
	for _, proto := range []string{"dav", "ssh", "other"} {
		before := db.verifies.Load()
		if _, err := db.AuthPassword(ctx, proto, "10.0.0.1", "alice", []byte("correct horse")); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("%s: %v", proto, err)
		}
		if db.verifies.Load() != before+1 {
			t.Fatalf("%s: the refusal did not cost one Argon2id run", proto)
		}
	}
	if _, err := db.AuthPassword(ctx, "web", "10.0.0.1", "alice", []byte("correct horse")); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if _, err := db.AuthKey(ctx, "ssh", "10.0.0.1", "alice", pk); err != nil {
		t.Fatalf("key: %v", err)
	}
	if err := db.DisableTwoFactor(ctx, "10.0.0.1", "alice", "123456"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("switching 2FA off under Require2FA: %v", err)
	}
}

// TestTwoFactorLoginRecorded: for a user with 2FA the browser's password
// step is not a login (no record, the address not remembered against a
// ban of the name); the code makes the login, recorded with its method.
func TestTwoFactorLoginRecorded(t *testing.T) {
	clk := newClock()
	db, _ := openTest(t, Options{Now: clk.Now, Defender: DefenderOptions{Disabled: true}})
	ctx := t.Context()
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "correct horse")
	secret, _ := enrol(t, db, clk, "alice")
	clk.Advance(time.Hour)
	if _, err := db.AuthPassword(ctx, "web", "10.0.0.7:1", "alice", []byte("correct horse")); err != nil {
		t.Fatal(err)
	}
	if u, _ := db.Get(ctx, "alice"); len(u.Logins) != 0 || !u.LastLogin.IsZero() {
		t.Fatalf("the password step was recorded as a login: %+v", u.Logins)
	}
	db.def.mu.Lock()
	known := len(db.def.known["alice"])
	db.def.mu.Unlock()
	if known != 0 {
		t.Fatal("the password step made the address known")
	}
	if _, err := db.VerifySecondFactor(ctx, "web", "10.0.0.7:1", "alice", code(t, secret, clk.Now())); err != nil {
		t.Fatal(err)
	}
	u, _ := db.Get(ctx, "alice")
	if len(u.Logins) != 1 || u.Logins[0].Method != "totp" || u.Logins[0].Remote != "10.0.0.7" || u.Logins[0].Proto != "web" {
		t.Fatalf("logins %+v", u.Logins)
	}
}
