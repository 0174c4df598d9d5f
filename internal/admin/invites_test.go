package admin

import (
	"errors"
	"testing"

	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// Invitations are made, listed and revoked locally and through the socket
// with the same errors; SignUp applies the policy, refuses a deleted
// user's leftover home, gives the invitation's rights and creates the home.
func TestInvitesLocalAndSocket(t *testing.T) {
	l, dir := newLocal(t)
	l.BaseURL = "https://files.example.org"
	ctx := t.Context()
	c := serveSocket(t, l, dir)
	for _, m := range []InviteManager{l, c} {
		res, err := m.CreateInvite(ctx, InviteRequest{Expires: "7d", Perms: "list,download", QuotaBytes: 1 << 20, CreatedBy: "cli"})
		if err != nil {
			t.Fatal(err)
		}
		if !shares.ValidToken(res.Token) || res.Invite.Perms != users.PermReadOnly || res.Invite.Expires.IsZero() || res.BaseURL != l.BaseURL {
			t.Fatalf("%T created %+v", m, res)
		}
		if _, err := m.CreateInvite(ctx, InviteRequest{Group: "nosuch"}); !errors.Is(err, shares.ErrInviteGroup) {
			t.Errorf("%T unknown group: %v", m, err)
		}
		for _, bad := range []InviteRequest{{Expires: "soon"}, {Perms: "fly"}, {QuotaBytes: -1}} {
			if _, err := m.CreateInvite(ctx, bad); err == nil {
				t.Errorf("%T created %+v", m, bad)
			}
		}
		ivs, err := m.ListInvites(ctx)
		if err != nil || len(ivs) == 0 || ivs[len(ivs)-1].ID != res.Invite.ID {
			t.Fatalf("%T list %+v %v", m, ivs, err)
		}
		if err := m.RevokeInvite(ctx, res.Invite.ID); err != nil {
			t.Fatal(err)
		}
		if err := m.RevokeInvite(ctx, res.Invite.ID); !errors.Is(err, shares.ErrNotFound) {
			t.Errorf("%T revoke twice: %v", m, err)
		}
	}

	res, err := l.CreateInvite(ctx, InviteRequest{Perms: "list,download,upload", QuotaBytes: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	su := func(name, pw string) error {
		_, err := l.SignUp(ctx, SignUpRequest{Token: res.Token, Name: name, Password: []byte(pw)})
		return err
	}
	if err := su("weak", "short"); !errors.Is(err, pwpolicy.ErrWeak) {
		t.Fatalf("weak: %v", err)
	}
	// A home left by `user del` without --purge is not handed to a sign-up.
	if err := l.AddUser(ctx, AddUserRequest{Name: "ghost", Password: []byte("Granite-Otter-50")}); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteUser(ctx, "ghost", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := su("ghost", "Granite-Otter-51"); !errors.Is(err, ErrHomeExists) {
		t.Fatalf("leftover home: %v", err)
	}
	if err := su("newbie", "Granite-Otter-51"); err != nil {
		t.Fatal(err)
	}
	u, err := l.Users.Get(ctx, "newbie")
	if err != nil || u.Perms != users.PermList|users.PermDownload|users.PermUpload || u.QuotaBytes != 2<<20 {
		t.Fatalf("account %+v %v", u, err)
	}
	if ok, err := l.Store.HasHome("newbie"); err != nil || !ok {
		t.Fatalf("home not created: %v %v", ok, err)
	}
	if err := su("again", "Granite-Otter-51"); !errors.Is(err, shares.ErrInviteUsed) {
		t.Fatalf("reuse: %v", err)
	}
	// Open sign-up (no token): the rights the caller gives.
	if _, err := l.SignUp(ctx, SignUpRequest{Name: "opener", Password: []byte("Granite-Otter-52"), Perms: users.PermReadOnly}); err != nil {
		t.Fatal(err)
	}
	if u, _ := l.Users.Get(ctx, "opener"); u.Perms != users.PermReadOnly {
		t.Fatalf("open account %+v", u)
	}
}
