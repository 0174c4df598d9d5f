package shares

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/perm"
	"github.com/securefsd/securefsd/internal/users"
)

func setupInvites(t *testing.T) (*Invites, *users.DB, *clock) {
	t.Helper()
	_, db, c := setup(t)
	return NewInvites(db, Options{Now: c.Now}), db, c
}

// TestInviteLifecycle: an invitation makes exactly one account with its
// rights; its token is stored hashed; used, expired, revoked and garbage
// tokens each give their error; a group is refused.
func TestInviteLifecycle(t *testing.T) {
	ctx := t.Context()
	m, db, c := setupInvites(t)
	tok, iv, err := m.Create(ctx, InviteSpec{Perms: perm.ReadOnly, QuotaBytes: 1 << 20, QuotaFiles: 7, TTL: time.Hour, CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !ValidToken(tok) || len(tok) < 22 { // >= 128 bits
		t.Fatalf("token %q", tok)
	}
	// Only the hash is stored: neither the token nor its raw bytes.
	_ = db.Invites(ctx, func(k string, v []byte) error {
		if strings.Contains(k, tok) || strings.Contains(string(v), tok) {
			t.Errorf("token stored in clear: %s %s", k, v)
		}
		if k != keyOf(tok) {
			t.Errorf("key %s, want the SHA-256 of the token", k)
		}
		return nil
	})
	if got, err := m.Lookup(ctx, tok); err != nil || got.ID != iv.ID || got.State(c.Now()) != "open" {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	u, err := m.Redeem(ctx, tok, "bob", []byte("bob-password-1"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Get(ctx, "bob")
	if err != nil || got.Perms != perm.ReadOnly || got.QuotaBytes != 1<<20 || got.QuotaFiles != 7 || got.Admin || u.Name != "bob" {
		t.Fatalf("account %+v %v", got, err)
	}
	if _, err := db.AuthPassword(ctx, "test", "192.0.2.1:1", "bob", []byte("bob-password-1")); err != nil {
		t.Fatalf("the new account cannot log in: %v", err)
	}
	// Reuse: refused, no second account.
	if _, err := m.Redeem(ctx, tok, "carol", []byte("carol-password-1")); !errors.Is(err, ErrInviteUsed) {
		t.Fatalf("reuse: %v, want ErrInviteUsed", err)
	}
	if _, err := db.Get(ctx, "carol"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("reuse made an account: %v", err)
	}
	if l, err := m.List(ctx); err != nil || len(l) != 1 || l[0].UsedBy != "bob" || l[0].State(c.Now()) != "used" {
		t.Fatalf("list: %+v %v", l, err)
	}

	// Expiry, by the injected clock.
	tok2, _, err := m.Create(ctx, InviteSpec{Perms: perm.All, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if _, err := m.Lookup(ctx, tok2); !errors.Is(err, ErrInviteExpired) {
		t.Fatalf("expired lookup: %v", err)
	}
	if _, err := m.Redeem(ctx, tok2, "dave", []byte("dave-password-1")); !errors.Is(err, ErrInviteExpired) {
		t.Fatalf("expired redeem: %v", err)
	}

	// Revoke, garbage, a taken name (the invitation stays usable).
	tok3, iv3, err := m.Create(ctx, InviteSpec{Perms: perm.All})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Redeem(ctx, tok3, "alice", []byte("another-password-1")); !errors.Is(err, users.ErrExists) {
		t.Fatalf("taken name: %v", err)
	}
	if _, err := m.Redeem(ctx, tok3, "Bad Name", []byte("another-password-1")); !errors.Is(err, users.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := m.Lookup(ctx, tok3); err != nil {
		t.Fatalf("a failed sign-up consumed the invitation: %v", err)
	}
	if err := m.Revoke(ctx, iv3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Redeem(ctx, tok3, "erin", []byte("erin-password-1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked: %v", err)
	}
	if err := m.Revoke(ctx, iv3.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", TokenLen), tok[:len(tok)-1] + "!"} {
		if _, err := m.Lookup(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("lookup %q: %v", bad, err)
		}
	}
	// A group must exist when the invitation is made and when it is used:
	// the account joins it in the sign-up's transaction.
	if _, _, err := m.Create(ctx, InviteSpec{Perms: perm.All, Group: "staff"}); !errors.Is(err, ErrInviteGroup) {
		t.Fatalf("unknown group: %v", err)
	}
	if err := db.AddGroup(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	tokG, ivG, err := m.Create(ctx, InviteSpec{Perms: perm.All, Group: "staff"})
	if err != nil || ivG.Group != "staff" {
		t.Fatalf("group invitation: %+v %v", ivG, err)
	}
	tokG2, _, err := m.Create(ctx, InviteSpec{Perms: perm.All, Group: "staff"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Redeem(ctx, tokG, "frank", []byte("frank-password-1")); err != nil {
		t.Fatal(err)
	}
	if gs, _ := db.Groups(ctx); len(gs) != 1 || len(gs[0].Members) != 1 || gs[0].Members[0] != "frank" {
		t.Fatalf("staff after sign-up: %+v", gs)
	}
	if err := db.DeleteGroup(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Redeem(ctx, tokG2, "gina", []byte("gina-password-1")); !errors.Is(err, ErrInviteGroup) {
		t.Fatalf("deleted group: %v", err)
	}
	if iv, err := m.Lookup(ctx, tokG2); err != nil || iv.State(c.Now()) != "open" {
		t.Fatalf("invitation after a refused sign-up: %+v %v", iv, err)
	}
	if _, _, err := m.Create(ctx, InviteSpec{Perms: perm.All, QuotaBytes: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative quota: %v", err)
	}
}

// TestInviteRedeemRace: many sign-ups race with one token, under distinct
// names and under one name: exactly one account is made, every other
// attempt is refused as used (or, for the same name, as existing).
func TestInviteRedeemRace(t *testing.T) {
	for _, sameName := range []bool{false, true} {
		t.Run(fmt.Sprintf("sameName=%v", sameName), func(t *testing.T) {
			ctx := t.Context()
			m, db, _ := setupInvites(t)
			tok, _, err := m.Create(ctx, InviteSpec{Perms: perm.All})
			if err != nil {
				t.Fatal(err)
			}
			const n = 16
			var wg sync.WaitGroup
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					name := fmt.Sprintf("racer%d", i)
					if sameName {
						name = "racer"
					}
					_, errs[i] = m.Redeem(ctx, tok, name, []byte("racing-password-1"))
				}()
			}
			close(start)
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrInviteUsed), sameName && errors.Is(err, users.ErrExists):
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
			us, _ := db.List(ctx)
			if ok != 1 || len(us) != 2 { // alice and the one winner
				t.Fatalf("%d sign-ups succeeded, %d users; want 1 and 2", ok, len(us))
			}
		})
	}
}
