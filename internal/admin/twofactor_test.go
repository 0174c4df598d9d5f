package admin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/securefsd/securefsd/internal/users"
)

// ResetTwoFactor works locally and through the socket with the same
// errors, and ListUsers never carries a secret either way.
func TestResetTwoFactorLocalAndSocket(t *testing.T) {
	l, dir := newLocal(t)
	ctx := t.Context()
	c := serveSocket(t, l, dir)
	if err := l.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("Granite-Otter-50")}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Manager{l, c} {
		k, err := users.NewTOTPKey("test", "alice")
		if err != nil {
			t.Fatal(err)
		}
		code, _ := totp.GenerateCode(k.Secret(), time.Now())
		if _, err := l.Users.EnableTwoFactor(ctx, "alice", k.Secret(), code); err != nil {
			t.Fatal(err)
		}
		_, appPW, err := l.Users.AddAppPassword(ctx, "alice", "laptop", []string{users.ProtoWebDAV})
		if err != nil {
			t.Fatal(err)
		}
		us, err := m.ListUsers(ctx)
		if err != nil || len(us) != 1 || us[0].TwoFactor == nil || len(us[0].AppPasswords) != 1 {
			t.Fatalf("%T list: %+v %v", m, us, err)
		}
		if us[0].TwoFactor.Secret != "" || us[0].AppPasswords[0].Hash != "" || strings.Contains(us[0].TwoFactor.Secret+us[0].AppPasswords[0].Hash, appPW) {
			t.Fatalf("%T list carries a secret: %+v", m, us[0])
		}
		tr := m.(TwoFactorResetter)
		if err := tr.ResetTwoFactor(ctx, "alice"); err != nil {
			t.Fatalf("%T reset: %v", m, err)
		}
		if err := tr.ResetTwoFactor(ctx, "alice"); !errors.Is(err, users.ErrNoTwoFactor) {
			t.Fatalf("%T second reset: %v", m, err)
		}
		if err := tr.ResetTwoFactor(ctx, "nobody"); !errors.Is(err, users.ErrNotFound) {
			t.Fatalf("%T unknown user: %v", m, err)
		}
		if u, _ := l.Users.Get(ctx, "alice"); u.TwoFactor != nil || len(u.AppPasswords) != 0 {
			t.Fatalf("%T: after reset %+v", m, u)
		}
	}
}
