package shares

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/perm"
	"github.com/securefsd/securefsd/internal/users"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// setup opens a real users database (tiny Argon2id, a fake clock shared
// with the defender, sleeps skipped) with user alice (all rights).
func setup(t *testing.T) (*Manager, *users.DB, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	db, err := users.Open(filepath.Join(t.TempDir(), "users.db"), users.Options{
		Argon2: users.Argon2Params{Time: 1, Memory: 64, Threads: 1},
		Now:    c.Now,
		Defender: users.DefenderOptions{AddrThreshold: 5, UserThreshold: 8,
			Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Add(t.Context(), users.User{Name: "alice", Perms: perm.All}, []byte("alice-password")); err != nil {
		t.Fatal(err)
	}
	return New(db, Options{Now: c.Now}), db, c
}

func mustCreate(t *testing.T, m *Manager, s Spec) (string, Link) {
	t.Helper()
	tok, l, err := m.Create(t.Context(), s)
	if err != nil {
		t.Fatalf("create %+v: %v", s, err)
	}
	return tok, l
}

func TestCreateResolve(t *testing.T) {
	m, db, _ := setup(t)
	tok, l := mustCreate(t, m, Spec{Owner: "alice", Path: "docs//./a.pdf/", Kind: File})
	if !ValidToken(tok) || len(tok) < 22 {
		t.Fatalf("token %q", tok)
	}
	if l.Path != "/docs/a.pdf" || l.Owner != "alice" || l.ID == "" {
		t.Fatalf("link %+v", l)
	}
	r, err := m.Resolve(t.Context(), tok, "192.0.2.1:1234")
	if err != nil || r.Link.ID != l.ID || r.Owner.Name != "alice" {
		t.Fatalf("resolve: %+v %v", r, err)
	}
	// The database holds the hash of the token, never the token.
	err = db.Links(t.Context(), func(k string, v []byte) error {
		if strings.Contains(k, tok) || strings.Contains(string(v), tok) {
			t.Errorf("token stored in clear: %s %s", k, v)
		}
		if k != keyOf(tok) {
			t.Errorf("key %s, want sha256 of token", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCreateRefuses(t *testing.T) {
	m, _, _ := setup(t)
	for _, s := range []Spec{
		{Owner: "alice", Path: "../etc", Kind: Folder},
		{Owner: "alice", Path: "a/../../b", Kind: File},
		{Owner: "alice", Path: "a\x00b", Kind: File},
		{Owner: "alice", Path: "a", Kind: "x"},
		{Owner: "alice", Path: "a", Kind: File, UploadOnly: true},
		{Owner: "alice", Path: "a", Kind: Folder, UploadOnly: true, MaxDownloads: 2},
		{Owner: "alice", Path: "a", Kind: File, TTL: -time.Second},
	} {
		if _, _, err := m.Create(t.Context(), s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", s, err)
		}
	}
	if _, _, err := m.Create(t.Context(), Spec{Owner: "nobody", Path: "a", Kind: File}); !errors.Is(err, users.ErrNotFound) {
		t.Errorf("unknown owner: %v", err)
	}
}

// Every way a link dies gives the same ErrNotFound.
func TestDeadLinksAllNotFound(t *testing.T) {
	m, db, c := setup(t)
	ctx := t.Context()
	resolve := func(tok, remote string) error { _, err := m.Resolve(ctx, tok, remote); return err }
	dead := func(name string, err error) {
		t.Helper()
		if err != ErrNotFound { // the very same value, no wrapping that could tell reasons apart
			t.Errorf("%s: %v, want exactly ErrNotFound", name, err)
		}
	}

	exp, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File, TTL: time.Hour})
	if err := resolve(exp, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	dead("expired", resolve(exp, "192.0.2.1"))

	capped, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File, MaxDownloads: 2})
	for i := range 2 {
		r, err := m.Resolve(ctx, capped, "192.0.2.1")
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		if err := m.CountDownload(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dead("used up", resolve(capped, "192.0.2.1"))

	rev, l := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File})
	if err := m.Revoke(ctx, "bob", l.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke by another owner: %v", err)
	}
	if err := m.Revoke(ctx, "", l.ID); err != nil {
		t.Fatal(err)
	}
	dead("revoked", resolve(rev, "192.0.2.1"))
	if err := m.Revoke(ctx, "", l.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke twice: %v", err)
	}

	net, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File, AllowFrom: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	if err := resolve(net, "198.51.100.7:5"); err != nil {
		t.Errorf("allowed address: %v", err)
	}
	if err := resolve(net, "[::ffff:198.51.100.7]:5"); err != nil {
		t.Errorf("allowed mapped address: %v", err)
	}
	dead("other address", resolve(net, "192.0.2.1:5"))
	dead("garbage address", resolve(net, "nonsense"))

	up, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "in", Kind: Folder, UploadOnly: true})
	dl, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File})
	setPerms := func(p perm.Perm) {
		if err := db.Update(ctx, "alice", func(u *users.User) error { u.Perms = p; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setPerms(perm.All &^ perm.Download)
	dead("owner lost download", resolve(dl, "192.0.2.1"))
	if err := resolve(up, "192.0.2.1"); err != nil {
		t.Errorf("upload link without download right: %v", err)
	}
	setPerms(perm.All &^ perm.Upload)
	dead("owner lost upload", resolve(up, "192.0.2.1"))
	if err := resolve(dl, "192.0.2.1"); err != nil {
		t.Errorf("download link without upload right: %v", err)
	}
	// A folder link needs list as well: its page lists, its zip walks.
	setPerms(perm.All)
	dir, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "in", Kind: Folder})
	setPerms(perm.All &^ perm.List)
	dead("owner lost list (folder link)", resolve(dir, "192.0.2.1"))
	if err := resolve(dl, "192.0.2.1"); err != nil {
		t.Errorf("file link without list right: %v", err)
	}
	if _, _, err := m.Create(ctx, Spec{Owner: "alice", Path: "in", Kind: Folder}); !errors.Is(err, ErrInvalid) {
		t.Errorf("folder link by an owner without list: %v", err)
	}
	setPerms(perm.All)
	if err := db.Update(ctx, "alice", func(u *users.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	dead("owner disabled", resolve(dl, "192.0.2.1"))
	if err := db.Update(ctx, "alice", func(u *users.User) error { u.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := resolve(dl, "192.0.2.1"); err != nil {
		t.Fatalf("owner enabled again: %v", err)
	}
	if err := db.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	dead("owner deleted", resolve(dl, "192.0.2.1"))
}

// Guessing tokens: malformed and unknown tokens both answer ErrNotFound;
// tokens are unique and carry their full entropy.
func TestGuessing(t *testing.T) {
	m, _, _ := setup(t)
	tok, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File})
	guesses := []string{"", "x", tok[:len(tok)-1], tok + "A", strings.Repeat("A", TokenLen), "../" + tok[3:],
		strings.ToUpper(tok), keyOf(tok)}
	// A token differing in one character.
	b := []byte(tok)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	guesses = append(guesses, string(b))
	for _, g := range guesses {
		if g == tok {
			continue
		}
		if _, err := m.Resolve(t.Context(), g, "192.0.2.1"); err != ErrNotFound {
			t.Errorf("guess %q: %v", g, err)
		}
	}
	seen := map[string]bool{tok: true}
	for range 50 {
		t2, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File})
		if seen[t2] || !ValidToken(t2) {
			t.Fatalf("token %q repeated or malformed", t2)
		}
		seen[t2] = true
	}
	if tokenBytes*8 < 128 {
		t.Fatalf("token has %d bits", tokenBytes*8)
	}
}

// Password guessing goes through the login defender keyed by link and
// address: after the threshold the right password is refused too.
func TestPasswordGuessingBanned(t *testing.T) {
	m, db, c := setup(t)
	ctx := t.Context()
	tok, l := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File, Password: []byte("open sesame")})
	if l.PasswordHash == "" || !strings.HasPrefix(l.PasswordHash, "$argon2id$") {
		t.Fatalf("hash %q", l.PasswordHash)
	}
	pub, _ := json.Marshal(l.Public())
	if strings.Contains(string(pub), "argon2") {
		t.Fatalf("public form leaks the hash: %s", pub)
	}
	r, err := m.Resolve(ctx, tok, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CheckPassword(ctx, r, "links", "192.0.2.1:1", []byte("open sesame")); err != nil {
		t.Fatalf("right password: %v", err)
	}
	// From one address: banned after AddrThreshold (5) failures.
	fails := 0
	for range 10 {
		err := m.CheckPassword(ctx, r, "links", "192.0.2.1:1", []byte("guess"))
		if errors.Is(err, ErrBanned) {
			break
		}
		if !errors.Is(err, ErrPassword) {
			t.Fatalf("wrong password: %v", err)
		}
		fails++
	}
	if fails != 5 {
		t.Fatalf("%d failures before the address ban, want 5", fails)
	}
	if err := m.CheckPassword(ctx, r, "links", "192.0.2.1:1", []byte("open sesame")); !errors.Is(err, ErrBanned) {
		t.Fatalf("right password while banned: %v", err)
	}
	// From many addresses: the link's own key is banned after
	// UserThreshold (8) failures in all.
	addr := 2
	for fails < 8 {
		err := m.CheckPassword(ctx, r, "links", netip.AddrFrom4([4]byte{198, 51, 100, byte(addr)}).String(), []byte("guess"))
		if !errors.Is(err, ErrPassword) {
			t.Fatalf("guess %d: %v", fails, err)
		}
		fails++
		addr++
	}
	if err := m.CheckPassword(ctx, r, "links", "203.0.113.9", []byte("open sesame")); !errors.Is(err, ErrBanned) {
		t.Fatalf("link not banned after spread guessing: %v", err)
	}
	var kinds []string
	for _, b := range db.Bans() {
		kinds = append(kinds, b.Kind+" "+b.Who)
	}
	if !strings.Contains(strings.Join(kinds, ","), "link "+l.ID) {
		t.Errorf("bans %v do not list the link", kinds)
	}
	// Another link of the same owner is not affected; the ban ends.
	tok2, _ := mustCreate(t, m, Spec{Owner: "alice", Path: "f", Kind: File, Password: []byte("pw2")})
	r2, _ := m.Resolve(ctx, tok2, "203.0.113.9")
	if err := m.CheckPassword(ctx, r2, "links", "203.0.113.9", []byte("pw2")); err != nil {
		t.Errorf("other link: %v", err)
	}
	c.Advance(time.Hour)
	if err := m.CheckPassword(ctx, r, "links", "192.0.2.1:1", []byte("open sesame")); err != nil {
		t.Errorf("after the ban: %v", err)
	}
}

func TestListAndPublic(t *testing.T) {
	m, db, c := setup(t)
	ctx := t.Context()
	if err := db.Add(ctx, users.User{Name: "bob", Perms: perm.All}, nil); err != nil {
		t.Fatal(err)
	}
	_, a := mustCreate(t, m, Spec{Owner: "alice", Path: "a", Kind: File})
	c.Advance(time.Second)
	_, b := mustCreate(t, m, Spec{Owner: "bob", Path: "b", Kind: Folder, UploadOnly: true})
	all, err := m.List(ctx, "")
	if err != nil || len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Fatalf("list all: %+v %v", all, err)
	}
	bobs, err := m.List(ctx, "bob")
	if err != nil || len(bobs) != 1 || bobs[0].ID != b.ID {
		t.Fatalf("list bob: %+v %v", bobs, err)
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]time.Duration{"": 0, "0": 0, "7d": 7 * 24 * time.Hour, "90m": 90 * time.Minute} {
		if d, err := ParseTTL(s); err != nil || d != want {
			t.Errorf("ParseTTL(%q) = %v %v", s, d, err)
		}
	}
	for _, s := range []string{"x", "-1h", "0d", "d", "1.5d"} {
		if _, err := ParseTTL(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTTL(%q): %v", s, err)
		}
	}
	p, err := ParseCIDRs("10.0.0.0/8, 192.0.2.7,2001:db8::/32")
	if err != nil || len(p) != 3 || p[1].Bits() != 32 {
		t.Fatalf("ParseCIDRs: %v %v", p, err)
	}
	if _, err := ParseCIDRs("10.0.0.0/99"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad CIDR: %v", err)
	}
}
