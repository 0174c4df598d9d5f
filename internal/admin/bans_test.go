package admin

import (
	"errors"
	"fmt"
	"testing"

	"github.com/securefsd/securefsd/internal/users"
)

// TestBansOverSocket lists and lifts a running server's bans through the
// admin socket: an address ban and a name ban, made by failed logins.
func TestBansOverSocket(t *testing.T) {
	l, dir := newLocal(t)
	c := serveSocket(t, l, dir)
	ctx := t.Context()
	if bans, err := c.ListBans(ctx); err != nil || len(bans) != 0 {
		t.Fatalf("ListBans before any failure = %v, %v", bans, err)
	}
	for range 10 {
		l.Users.Failed("ssh", "192.0.2.9:22", "")
	}
	for i := range 30 {
		l.Users.Failed("ssh", fmt.Sprintf("198.51.100.%d:22", i), "alice")
	}
	bans, err := c.ListBans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 2 || bans[0].Kind != "address" || bans[0].Who != "192.0.2.9" || bans[1].Kind != "user" || bans[1].Who != "alice" || bans[0].Until.IsZero() {
		t.Fatalf("ListBans = %+v", bans)
	}
	if err := c.Unban(ctx, "alice"); !errors.Is(err, users.ErrInvalid) {
		t.Errorf("Unban(alice) = %v, want ErrInvalid (names are user:NAME)", err)
	}
	if err := c.Unban(ctx, "user:alice"); err != nil {
		t.Errorf("Unban(user:alice) = %v", err)
	}
	if err := c.Unban(ctx, "192.0.2.9"); err != nil {
		t.Errorf("Unban(192.0.2.9) = %v", err)
	}
	if err := c.Unban(ctx, "192.0.2.9"); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("second Unban = %v, want ErrNotFound", err)
	}
	if bans, err := c.ListBans(ctx); err != nil || len(bans) != 0 {
		t.Errorf("ListBans after Unban = %v, %v", bans, err)
	}
	if l.Users.Banned("192.0.2.9") {
		t.Error("address still banned")
	}
	// An IPv6 ban covers the /64 and is lifted as listed, or by any address in it.
	for _, who := range []string{"2001:db8:1:2::/64", "2001:db8:1:2::77"} {
		for range 10 {
			l.Users.Failed("ssh", "[2001:db8:1:2::5]:22", "")
		}
		bans, err := c.ListBans(ctx)
		if err != nil || len(bans) != 1 || bans[0].Who != "2001:db8:1:2::/64" {
			t.Fatalf("ListBans = %+v, %v", bans, err)
		}
		if err := c.Unban(ctx, who); err != nil {
			t.Errorf("Unban(%s) = %v", who, err)
		}
		if l.Users.Banned("2001:db8:1:2::5") {
			t.Errorf("still banned after Unban(%s)", who)
		}
	}
}
