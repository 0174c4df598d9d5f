package admin

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// Create, list and revoke links locally and through the socket; the token
// never appears in a listing.
func TestSharesLocalAndSocket(t *testing.T) {
	l, dir := newLocal(t)
	ctx := t.Context()
	if err := l.AddUser(ctx, AddUserRequest{Name: "alice", Password: []byte("correct-horse-battery-1")}); err != nil {
		t.Fatal(err)
	}
	u, err := l.Users.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := account.Open(l.Store, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir("/in", 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Create("/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hello"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	l.BaseURL = "https://files.example.org"
	c := serveSocket(t, l, dir)
	for _, m := range []ShareManager{l, c} {
		res, err := m.CreateShare(ctx, ShareRequest{User: "alice", Path: "a.txt", Expires: "7d", MaxDownloads: 3, AllowFrom: []string{"10.0.0.0/8"}})
		if err != nil {
			t.Fatal(err)
		}
		if !shares.ValidToken(res.Token) || res.Link.Kind != shares.File || res.Link.Path != "/a.txt" || res.Link.Expires.IsZero() {
			t.Fatalf("created %+v", res)
		}
		// The server's base URL travels with the link, so the CLI prints
		// it with serve's --public-url.
		if res.BaseURL != l.BaseURL {
			t.Fatalf("base URL %q, want %q", res.BaseURL, l.BaseURL)
		}
		up, err := m.CreateShare(ctx, ShareRequest{User: "alice", Path: "/in", UploadOnly: true, Password: []byte("pw")})
		if err != nil || up.Link.Kind != shares.Folder || !up.Link.Password {
			t.Fatalf("upload link %+v %v", up, err)
		}
		for _, bad := range []ShareRequest{
			{User: "alice", Path: "missing"},
			{User: "alice", Path: "../x"},
			{User: "alice", Path: "a.txt", UploadOnly: true},
			{User: "alice", Path: "a.txt", Expires: "soon"},
			{User: "alice", Path: "a.txt", AllowFrom: []string{"nonsense"}},
			{User: "nobody", Path: "a.txt"},
		} {
			if _, err := m.CreateShare(ctx, bad); err == nil {
				t.Errorf("%T created %+v", m, bad)
			}
		}
		if _, err := m.CreateShare(ctx, ShareRequest{User: "nobody", Path: "a.txt"}); !errors.Is(err, users.ErrNotFound) {
			t.Errorf("%T unknown user: %v", m, err)
		}
		ls, err := m.ListShares(ctx, "alice")
		if err != nil || len(ls) < 2 {
			t.Fatalf("list: %+v %v", ls, err)
		}
		for _, x := range ls {
			if strings.Contains(x.ID, res.Token) {
				t.Fatal("token in listing")
			}
		}
		if err := m.RevokeShare(ctx, res.Link.ID); err != nil {
			t.Fatal(err)
		}
		if err := m.RevokeShare(ctx, res.Link.ID); !errors.Is(err, shares.ErrNotFound) {
			t.Errorf("%T revoke twice: %v", m, err)
		}
		if _, err := shares.New(l.Users, shares.Options{}).Resolve(context.Background(), res.Token, "10.1.2.3"); err != shares.ErrNotFound {
			t.Errorf("revoked link resolves: %v", err)
		}
		if _, err := shares.New(l.Users, shares.Options{}).Resolve(context.Background(), up.Token, "10.1.2.3"); err != nil {
			t.Errorf("upload link: %v", err)
		}
	}
	if ls, err := c.ListShares(ctx, "bob"); err != nil || len(ls) != 0 {
		t.Errorf("bob's links: %+v %v", ls, err)
	}
}
