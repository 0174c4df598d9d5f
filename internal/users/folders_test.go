package users

import (
	"context"
	"errors"
	"testing"
)

func TestFolderAccess(t *testing.T) {
	db, _ := openTest(t, Options{})
	ctx := context.Background()
	for _, n := range []string{"alice", "bob", "carol"} {
		mustAdd(t, db, User{Name: n, Perms: PermAll}, "")
	}
	if err := db.AddFolder(ctx, Folder{Name: "case", QuotaFiles: 10}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddFolder(ctx, Folder{Name: "case"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: %v", err)
	}
	for _, bad := range []string{"Case", "../x", ".x", ""} {
		if err := db.AddFolder(ctx, Folder{Name: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("folder %q: %v", bad, err)
		}
	}
	if err := db.AddGroup(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMembers(ctx, "staff", []string{"bob", "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.SetMembers(ctx, "staff", []string{"nobody"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown member: %v", err)
	}
	rev := db.Revision()
	if err := db.SetGrant(ctx, "case", "@staff", PermReadOnly, false); err != nil {
		t.Fatal(err)
	}
	if db.Revision() == rev {
		t.Error("a grant did not bump the revision")
	}
	if err := db.SetGrant(ctx, "case", "alice", PermUpload, true); err != nil {
		t.Fatal(err)
	}
	if err := db.SetGrant(ctx, "case", "@nogroup", PermAll, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("grant to an unknown group: %v", err)
	}
	access := func(u string) []FolderAccess {
		t.Helper()
		a, err := db.Access(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// The union of the user's grant and their groups'.
	if a := access("alice"); len(a) != 1 || a[0].Perms != PermReadOnly|PermUpload || !a[0].Manage || a[0].QuotaFiles != 10 {
		t.Errorf("alice: %+v", a)
	}
	if a := access("bob"); len(a) != 1 || a[0].Perms != PermReadOnly || a[0].Manage {
		t.Errorf("bob: %+v", a)
	}
	if a := access("carol"); len(a) != 0 {
		t.Errorf("carol: %+v", a)
	}
	// Leaving the group takes the group's rights at once.
	if err := db.SetMembers(ctx, "staff", nil, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if a := access("bob"); len(a) != 0 {
		t.Errorf("bob after leaving: %+v", a)
	}
	// A deleted user's grants and memberships go with them.
	if err := db.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, db, User{Name: "alice", Perms: PermAll}, "")
	if a := access("alice"); len(a) != 0 {
		t.Errorf("a new alice inherits %+v", a)
	}
	if err := db.SetGrant(ctx, "case", "@staff", PermAll, false); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteGroup(ctx, "staff"); err != nil {
		t.Fatal(err)
	}
	f, err := db.GetFolder(ctx, "case")
	if err != nil || len(f.Grants) != 0 {
		t.Errorf("grants after the group went: %+v %v", f, err)
	}
	if err := db.Revoke(ctx, "case", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke of no grant: %v", err)
	}
	if err := db.DeleteFolder(ctx, "case"); err != nil {
		t.Fatal(err)
	}
	if fs, _ := db.Folders(ctx); len(fs) != 0 {
		t.Errorf("folders left: %+v", fs)
	}
}

func TestParseGrantPerms(t *testing.T) {
	p, m, err := ParseGrantPerms("list,download,manage")
	if err != nil || p != PermReadOnly || !m {
		t.Errorf("got %v %v %v", p, m, err)
	}
	if _, _, err := ParseGrantPerms("list,own"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown word: %v", err)
	}
}
