package users

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestAddClaimingAtomic: the account and the claim commit together; a
// failing claim, a missing record or a taken name leave both untouched;
// of parallel claims on one record only one makes an account.
func TestAddClaimingAtomic(t *testing.T) {
	ctx := t.Context()
	db, _ := openTest(t, Options{})
	if err := db.PutInvite(ctx, "k1", []byte("open")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutInvite(ctx, "k1", []byte("open")); !errors.Is(err, ErrExists) {
		t.Fatalf("second put: %v", err)
	}
	claim := func(v []byte) ([]byte, error) {
		if string(v) != "open" {
			return nil, errors.New("used")
		}
		return []byte("used"), nil
	}
	rev := db.Revision()
	boom := errors.New("boom")
	if err := db.AddClaiming(ctx, User{Name: "a1", Perms: PermAll}, []byte("pw-a1-long"), "k1", nil, func([]byte) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("failing claim: %v", err)
	}
	if _, err := db.Get(ctx, "a1"); !errors.Is(err, ErrNotFound) || db.Revision() != rev {
		t.Fatalf("a failed claim made an account: %v", err)
	}
	if err := db.AddClaiming(ctx, User{Name: "a1"}, []byte("pw"), "nokey", nil, claim); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
	if err := db.AddClaiming(ctx, User{Name: "a1"}, nil, "k1", nil, claim); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no password: %v", err)
	}

	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.AddClaiming(ctx, User{Name: fmt.Sprintf("u%d", i), Perms: PermReadOnly}, []byte("pw-racing"), "k1", nil, claim)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		}
	}
	us, _ := db.List(ctx)
	if v, _ := db.Invite(ctx, "k1"); won != 1 || len(us) != 1 || string(v) != "used" || db.Revision() == rev {
		t.Fatalf("won %d, users %d, record %q", won, len(us), v)
	}

	// A taken name leaves the record unclaimed.
	if err := db.PutInvite(ctx, "k2", []byte("open")); err != nil {
		t.Fatal(err)
	}
	if err := db.AddClaiming(ctx, User{Name: us[0].Name}, []byte("pw-x"), "k2", nil, claim); !errors.Is(err, ErrExists) {
		t.Fatalf("taken name: %v", err)
	}
	if v, _ := db.Invite(ctx, "k2"); string(v) != "open" {
		t.Fatalf("record after a refused sign-up: %q", v)
	}
	if err := db.DeleteInvite(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteInvite(ctx, "k2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

// TestAddClaimingGroups: the account joins the invitation's groups in the
// same transaction and so gets their folders; a group deleted since the
// invitation was made aborts the sign-up and leaves the record unclaimed.
func TestAddClaimingGroups(t *testing.T) {
	ctx := t.Context()
	db, _ := openTest(t, Options{})
	for _, g := range []string{"staff", "gone"} {
		if err := db.AddGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddFolder(ctx, Folder{Name: "cases"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetGrant(ctx, "cases", GroupPrefix+"staff", PermReadOnly, false); err != nil {
		t.Fatal(err)
	}
	claim := func([]byte) ([]byte, error) { return []byte("used"), nil }
	for _, k := range []string{"k1", "k2"} {
		if err := db.PutInvite(ctx, k, []byte("open")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddClaiming(ctx, User{Name: "carol"}, []byte("pw-carol-long"), "k1", []string{"staff"}, claim); err != nil {
		t.Fatal(err)
	}
	if acc, err := db.Access(ctx, "carol"); err != nil || len(acc) != 1 || acc[0].Folder != "cases" {
		t.Fatalf("carol's folders: %+v %v", acc, err)
	}
	if err := db.DeleteGroup(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddClaiming(ctx, User{Name: "dave"}, []byte("pw-dave-long"), "k2", []string{"staff", "gone"}, claim); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("deleted group: %v", err)
	}
	if _, err := db.Get(ctx, "dave"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dave made without his group: %v", err)
	}
	gs, _ := db.Groups(ctx)
	for _, g := range gs {
		if g.Name == "staff" && len(g.Members) != 1 {
			t.Fatalf("staff after an aborted sign-up: %v", g.Members)
		}
	}
	if v, _ := db.Invite(ctx, "k2"); string(v) != "open" {
		t.Fatalf("record after an aborted sign-up: %q", v)
	}
}

// TestChargeSignup: sign-up attempts use up the address's budget like
// failed logins; the banned address is refused, another is not.
func TestChargeSignup(t *testing.T) {
	db, _ := openTest(t, Options{Defender: DefenderOptions{AddrThreshold: 3}})
	for i := range 3 {
		if err := db.ChargeSignup("192.0.2.7:1000"); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	if err := db.ChargeSignup("192.0.2.7:1001"); !errors.Is(err, ErrBanned) {
		t.Fatalf("4th attempt: %v, want ErrBanned", err)
	}
	if !db.Banned("192.0.2.7") {
		t.Fatal("address not listed as banned")
	}
	if err := db.ChargeSignup("192.0.2.8:1000"); err != nil {
		t.Fatalf("other address: %v", err)
	}
}
