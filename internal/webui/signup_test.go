package webui

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// accountsFixture is a fixture with the sign-up and admin pages on, over an
// admin.Local with the fixture's clock; logs are recorded.
func accountsFixture(t *testing.T, mode SignupMode, fopts ...fixtureOpt) (*fixture, *admin.Local, *testutil.Logs) {
	t.Helper()
	logs := testutil.NewLogs()
	fopts = append(fopts, func(_ *users.Options, o *Options) { o.Logger = logs.Logger() })
	f := newFixture(t, fopts...)
	l := admin.NewLocal(f.db, f.store, admin.KeyFile{}, "", nil)
	l.Now = f.clock.Now
	if err := EnableAccounts(f.ui, AccountsOptions{Accounts: l, Signup: mode, SignupPerms: users.PermReadOnly, SignupQuota: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	return f, l, logs
}

// signupForm fetches the sign-up page (setting the form cookie) and
// returns the form's double-submit token.
func (c *client) signupForm(query string) (resp, string) {
	c.t.Helper()
	r := c.get("/ui/signup" + query)
	m := reToken.FindStringSubmatch(r.body)
	if m == nil {
		return r, ""
	}
	return r, m[1]
}

func (c *client) signup(ft, invite, name, pw string) resp {
	c.t.Helper()
	return c.post("/ui/signup", url.Values{"token": {ft}, "invite": {invite}, "username": {name}, "password": {pw}, "password2": {pw}})
}

func inviteToken(t *testing.T, l *admin.Local, req admin.InviteRequest) string {
	t.Helper()
	res, err := l.CreateInvite(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res.Token
}

// TestSignupOff: without EnableAccounts, and with the default mode, the
// sign-up page does not exist; an invitation does not bring it back.
func TestSignupOff(t *testing.T) {
	plain := newFixture(t).client()
	if r := plain.get("/ui/signup"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("no accounts: %d", r.StatusCode)
	}
	f, l, _ := accountsFixture(t, "")
	c := f.client()
	tok := inviteToken(t, l, admin.InviteRequest{})
	for _, q := range []string{"", "?token=" + tok} {
		if r := c.get("/ui/signup" + q); r.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %q: %d", q, r.StatusCode)
		}
	}
	if r := c.signup("x", tok, "mallory", "a-good-long-password"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("POST: %d", r.StatusCode)
	}
	if _, err := f.db.Get(t.Context(), "mallory"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("account made with sign-up off: %v", err)
	}
}

// TestSignupInvite: the invitation's page, weak passwords refused without
// using it up, the account made with exactly its rights, reuse refused,
// expiry and unknown tokens said, the form's CSRF defences.
func TestSignupInvite(t *testing.T) {
	f, l, _ := accountsFixture(t, SignupInvite)
	ctx := t.Context()
	c := f.client()
	if r := c.get("/ui/signup"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("invite mode without a token: %d", r.StatusCode)
	}
	tok := inviteToken(t, l, admin.InviteRequest{Perms: "list,download,upload", QuotaBytes: 5 << 20, Expires: "7d"})
	page, ft := c.signupForm("?token=" + tok)
	if page.StatusCode != http.StatusOK || ft == "" || !strings.Contains(page.body, "list,download,upload, 5.0 MiB") {
		t.Fatalf("page: %d %q", page.StatusCode, page.body)
	}
	for _, tc := range []struct{ name, pw, want string }{
		{"newbie", "short", "too short"},
		{"newbie", "1qaz2wsx3edc", "most common"},
		{"newbie", "xx-newbie-xx-long", "contains your user name"},
	} {
		r := c.signup(ft, tok, tc.name, tc.pw)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.body, tc.want) {
			t.Errorf("weak %q: %d %q", tc.pw, r.StatusCode, r.body)
		}
	}
	if r := c.post("/ui/signup", url.Values{"token": {ft}, "invite": {tok}, "username": {"newbie"}, "password": {"a-good-long-password"}, "password2": {"another"}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("differing passwords: %d", r.StatusCode)
	}
	if r := c.signup(ft, tok, "Bad Name", "a-good-long-password"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("bad name: %d", r.StatusCode)
	}
	if r := c.signup("wrong", tok, "newbie", "a-good-long-password"); r.StatusCode != http.StatusForbidden {
		t.Errorf("bad form token: %d", r.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/ui/signup", strings.NewReader(url.Values{"token": {ft}, "invite": {tok}, "username": {"newbie"}, "password": {"a-good-long-password"}, "password2": {"a-good-long-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := c.do(req); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", r.StatusCode)
	}
	if _, err := f.db.Get(ctx, "newbie"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("a refused sign-up made the account: %v", err)
	}

	r := c.signup(ft, tok, "newbie", "a-good-long-password")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `id="signup-done"`) {
		t.Fatalf("sign-up: %d %q", r.StatusCode, r.body)
	}
	u, err := f.db.Get(ctx, "newbie")
	if err != nil || u.Perms != users.PermList|users.PermDownload|users.PermUpload || u.QuotaBytes != 5<<20 || u.Admin {
		t.Fatalf("account %+v %v", u, err)
	}
	nc := f.client()
	nc.login("newbie", "a-good-long-password")

	// Reuse, by the page and by a post.
	if r, _ := c.signupForm("?token=" + tok); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "already been used") {
		t.Fatalf("used page: %d %q", r.StatusCode, r.body)
	}
	if r := c.signup(ft, tok, "second", "a-good-long-password"); r.StatusCode != http.StatusGone {
		t.Fatalf("reuse: %d", r.StatusCode)
	}
	if _, err := f.db.Get(ctx, "second"); !errors.Is(err, users.ErrNotFound) {
		t.Fatalf("reused token made an account: %v", err)
	}

	// Expiry by the injected clock.
	exp := inviteToken(t, l, admin.InviteRequest{Expires: "1h"})
	f.clock.Advance(time.Hour)
	if r, _ := c.signupForm("?token=" + exp); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "expired") {
		t.Fatalf("expired page: %d %q", r.StatusCode, r.body)
	}
	if r := c.signup(ft, exp, "late", "a-good-long-password"); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "expired") {
		t.Fatalf("expired post: %d", r.StatusCode)
	}
	// Unknown and revoked tokens.
	if r, _ := c.signupForm("?token=" + strings.Repeat("A", len(tok))); r.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown token: %d", r.StatusCode)
	}
}

// TestSignupOpenRateLimited: an open sign-up gives the default rights, and
// each attempt from one address uses up its defender budget until the
// address is refused (a test clock, no waiting).
func TestSignupOpenRateLimited(t *testing.T) {
	f, _, _ := accountsFixture(t, SignupOpen, func(u *users.Options, _ *Options) { u.Defender.AddrThreshold = 3 })
	c := f.client()
	page, ft := c.signupForm("")
	if page.StatusCode != http.StatusOK || !strings.Contains(page.body, "read only, 1.0 MiB") {
		t.Fatalf("open page: %d %q", page.StatusCode, page.body)
	}
	if r := c.signup(ft, "", "open1", "a-good-long-password"); r.StatusCode != http.StatusOK {
		t.Fatalf("open sign-up: %d %q", r.StatusCode, r.body)
	}
	if u, err := f.db.Get(t.Context(), "open1"); err != nil || u.Perms != users.PermReadOnly || u.QuotaBytes != 1<<20 {
		t.Fatalf("open account %+v %v", u, err)
	}
	if r := c.signup(ft, "", "open1", "a-good-long-password"); r.StatusCode != http.StatusConflict {
		t.Fatalf("taken name: %d", r.StatusCode)
	}
	if r := c.signup(ft, "", "open2", "a-good-long-password"); r.StatusCode != http.StatusOK {
		t.Fatalf("third attempt: %d", r.StatusCode)
	}
	if r := c.signup(ft, "", "open3", "a-good-long-password"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth attempt: %d, want 429", r.StatusCode)
	}
	if _, err := f.db.Get(t.Context(), "open3"); !errors.Is(err, users.ErrNotFound) {
		t.Fatal("a banned address made an account")
	}
	f.clock.Advance(time.Hour) // the ban ends
	if r := c.signup(ft, "", "open3", "a-good-long-password"); r.StatusCode != http.StatusOK {
		t.Fatalf("after the ban: %d", r.StatusCode)
	}
}

// TestAdminPageAccess: only admins reach the page and its actions; the
// CSRF token is required; actions are logged with admin=NAME; taking the
// role away takes effect at the next request of an open session.
func TestAdminPageAccess(t *testing.T) {
	f, l, logs := accountsFixture(t, SignupOff)
	ctx := context.Background()
	f.addUser("boss", "boss-password-1", users.PermAll, 0)
	f.addUser("pleb", "pleb-password-1", users.PermAll, 0)
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	pleb := f.client()
	pleb.login("pleb", "pleb-password-1")
	if r := pleb.get("/ui/admin/"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("non-admin GET: %d", r.StatusCode)
	}
	if r := pleb.get("/ui/files/"); strings.Contains(r.body, `id="admin-link"`) {
		t.Fatal("non-admin sees the admin link")
	}
	if r := pleb.postCSRF("/ui/admin/user-add", url.Values{"name": {"evil"}, "password": {"an-evil-long-password"}, "admin": {"1"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("non-admin POST: %d", r.StatusCode)
	}
	if r := pleb.postCSRF("/ui/admin/user-set", url.Values{"name": {"pleb"}, "role": {"give"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("non-admin self-promotion: %d", r.StatusCode)
	}
	if u, _ := f.db.Get(ctx, "pleb"); u.Admin {
		t.Fatal("a non-admin made themselves admin")
	}

	boss := f.client()
	boss.login("boss", "boss-password-1")
	if r := boss.get("/ui/files/"); !strings.Contains(r.body, `id="admin-link"`) {
		t.Fatal("admin does not see the admin link")
	}
	if r := boss.get("/ui/admin/"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, `data-user="pleb"`) {
		t.Fatalf("admin GET: %d %q", r.StatusCode, r.body)
	}
	if r := boss.post("/ui/admin/user-add", url.Values{"name": {"evil"}, "password": {"an-evil-long-password"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("admin POST without CSRF: %d", r.StatusCode)
	}
	if _, err := f.db.Get(ctx, "evil"); !errors.Is(err, users.ErrNotFound) {
		t.Fatal("an action without CSRF token ran")
	}
	if r := boss.postCSRF("/ui/admin/user-add", url.Values{"name": {"fresh"}, "password": {"short"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("weak password for a new user: %d", r.StatusCode)
	}
	if r := boss.postCSRF("/ui/admin/user-add", url.Values{"name": {"fresh"}, "password": {"Quiet-Harbor-2026"}, "read_only": {"1"}, "quota": {"10M"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("add: %d %q", r.StatusCode, r.body)
	}
	if u, err := f.db.Get(ctx, "fresh"); err != nil || u.Perms != users.PermReadOnly || u.QuotaBytes != 10<<20 {
		t.Fatalf("added %+v %v", u, err)
	}
	if r := boss.postCSRF("/ui/admin/user-delete", url.Values{"name": {"boss"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("self-delete: %d", r.StatusCode)
	}
	if n := logs.Count(func(r testutil.Record) bool {
		return r.Message == "webui: admin user-add" && r.Attr("admin") == "boss" && r.Attr("user") == "fresh"
	}); n != 1 {
		t.Fatalf("%d log records of the add with admin=boss:\n%s", n, logs.Dump())
	}
	if n := logs.Count(func(r testutil.Record) bool {
		return r.Message == "webui: admin page refused" && r.Attr("user") == "pleb"
	}); n < 3 {
		t.Fatalf("%d refusals logged, want 3", n)
	}

	// The role taken away (from the command line) ends admin access at once.
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if r := boss.get("/ui/admin/"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("after the role was taken: %d", r.StatusCode)
	}
}

func ptr[T any](v T) *T { return &v }

// TestAdminPageInvitesBansLinks: invitations made and revoked on the page
// (the link shown once, then working), a ban lifted, anyone's share link
// revoked; each logged with admin=NAME.
func TestAdminPageInvitesBansLinks(t *testing.T) {
	f, l, logs := accountsFixture(t, SignupInvite)
	ctx := context.Background()
	home := f.addUser("boss", "boss-password-1", users.PermAll, 0)
	f.addUser("other", "other-password-1", users.PermAll, 0)
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	boss := f.client()
	boss.login("boss", "boss-password-1")

	r := boss.postCSRF("/ui/admin/invite-create", url.Values{"expires": {"2d"}, "read_only": {"1"}, "quota": {"1G"}})
	m := regexp.MustCompile(`id="invite-url" type="text" readonly value="([^"]+)"`).FindStringSubmatch(r.body)
	if r.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("invite-create: %d %q", r.StatusCode, r.body)
	}
	link := html.UnescapeString(m[1])
	u, err := url.Parse(link)
	if err != nil || u.Path != "/ui/signup" {
		t.Fatalf("link %q", link)
	}
	ivs, _ := l.ListInvites(ctx)
	if len(ivs) != 1 || ivs[0].Perms != users.PermReadOnly || ivs[0].QuotaBytes != 1<<30 || ivs[0].CreatedBy != "boss" {
		t.Fatalf("invitation %+v", ivs)
	}
	if p, _ := f.client().signupForm("?" + u.RawQuery); p.StatusCode != http.StatusOK {
		t.Fatalf("the page's link: %d", p.StatusCode)
	}
	if r := boss.postCSRF("/ui/admin/invite-revoke", url.Values{"id": {ivs[0].ID}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("invite-revoke: %d", r.StatusCode)
	}
	if p, _ := f.client().signupForm("?" + u.RawQuery); p.StatusCode != http.StatusNotFound {
		t.Fatalf("revoked link: %d", p.StatusCode)
	}

	// A ban (sign-up attempts with unknown tokens), lifted on the page.
	for range 10 {
		_ = f.db.ChargeSignup("198.51.100.9:4000")
	}
	if !f.db.Banned("198.51.100.9") {
		t.Fatal("no ban to lift")
	}
	if r := boss.get("/ui/admin/"); !strings.Contains(r.body, `data-ban="198.51.100.9"`) {
		t.Fatalf("ban not listed: %q", r.body)
	}
	if r := boss.postCSRF("/ui/admin/ban-lift", url.Values{"who": {"198.51.100.9"}}); r.StatusCode != http.StatusSeeOther || f.db.Banned("198.51.100.9") {
		t.Fatalf("ban-lift: %d", r.StatusCode)
	}

	// Another user's share link, revoked by the admin.
	writeFile(t, home, "/x.txt", []byte("x"))
	oh, err := f.store.Home("other", vfs.HomeOptions{Perm: vfs.PermAll})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, oh, "/o.txt", []byte("o"))
	sc, err := l.CreateShare(ctx, admin.ShareRequest{User: "other", Path: "/o.txt"})
	if err != nil {
		t.Fatal(err)
	}
	if r := boss.get("/ui/admin/"); !strings.Contains(r.body, `data-link="`+sc.Link.ID+`"`) {
		t.Fatal("another user's link not listed")
	}
	if r := boss.postCSRF("/ui/admin/share-revoke", url.Values{"id": {sc.Link.ID}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("share-revoke: %d", r.StatusCode)
	}
	if ls, _ := l.ListShares(ctx, ""); len(ls) != 0 {
		t.Fatalf("links after revoke: %+v", ls)
	}
	for _, a := range []string{"invite-create", "invite-revoke", "ban-lift", "share-revoke"} {
		if logs.Count(func(r testutil.Record) bool { return r.Message == "webui: admin "+a && r.Attr("admin") == "boss" }) != 1 {
			t.Errorf("%s not logged with admin=boss", a)
		}
	}
}

// TestAdminPageFoldersGroups: the admin page adds a group and a shared
// folder, grants the group, changes members and revokes, each through the
// same operations as the command line (the member's access follows at
// once) and logged with admin=NAME; a non-admin's POST of the same actions
// is a 404 with no effect.
func TestAdminPageFoldersGroups(t *testing.T) {
	f, l, logs := accountsFixture(t, SignupOff)
	ctx := context.Background()
	f.addUser("boss", "boss-password-1", users.PermAll, 0)
	f.addUser("carol", "carol-password-1", users.PermAll, 0)
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	boss := f.client()
	boss.login("boss", "boss-password-1")
	carol := f.client()
	carol.login("carol", "carol-password-1")
	if r := carol.postCSRF("/ui/admin/group-add", url.Values{"name": {"staff"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("a non-admin's group-add: %d", r.StatusCode)
	}
	access := func() int {
		acc, err := f.db.Access(ctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		return len(acc)
	}
	steps := []struct {
		action string
		form   url.Values
		after  func() string
	}{
		{"group-add", url.Values{"name": {"staff"}}, nil},
		{"folder-add", url.Values{"name": {"cases"}, "quota": {"1G"}}, nil},
		{"folder-grant", url.Values{"name": {"cases"}, "to": {"@staff"}, "perms": {"list,download"}}, func() string {
			if access() != 0 {
				return "carol has access before joining"
			}
			return ""
		}},
		{"group-members", url.Values{"name": {"staff"}, "add": {"carol, boss"}}, func() string {
			if access() != 1 {
				return "carol has no access after joining"
			}
			return ""
		}},
		{"folder-revoke", url.Values{"name": {"cases"}, "to": {"@staff"}}, func() string {
			if access() != 0 {
				return "carol keeps access after the revoke"
			}
			return ""
		}},
		{"group-delete", url.Values{"name": {"staff"}}, nil},
		{"folder-delete", url.Values{"name": {"cases"}, "purge": {"1"}}, nil},
	}
	for _, st := range steps {
		if r := boss.postCSRF("/ui/admin/"+st.action, st.form); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", st.action, r.StatusCode, r.body)
		}
		if st.after != nil {
			if msg := st.after(); msg != "" {
				t.Fatalf("after %s: %s", st.action, msg)
			}
		}
		if st.action == "folder-grant" {
			if r := boss.get("/ui/admin/"); !strings.Contains(r.body, `data-folder="cases"`) || !strings.Contains(r.body, `data-to="@staff"`) || !strings.Contains(r.body, `data-group="staff"`) {
				t.Fatalf("the page lacks the folder, its grant or the group: %s", r.body)
			}
		}
		if logs.Count(func(r testutil.Record) bool {
			return r.Message == "webui: admin "+st.action && r.Attr("admin") == "boss"
		}) != 1 {
			t.Errorf("%s not logged with admin=boss", st.action)
		}
	}
	if fs, _ := l.ListFolders(ctx); len(fs) != 0 {
		t.Fatalf("folders left: %+v", fs)
	}
	// Errors: an unknown group's members, a grant to nobody.
	if r := boss.postCSRF("/ui/admin/group-members", url.Values{"name": {"nosuch"}, "add": {"carol"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("members of no group: %d", r.StatusCode)
	}
	if r := boss.postCSRF("/ui/admin/folder-add", url.Values{"name": {"../x"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad folder name: %d", r.StatusCode)
	}
}

// uiSessions offers a UI's browser sessions as an admin.SessionSource.
type uiSessions struct{ ui *UI }

func (u uiSessions) Sessions(ctx context.Context) ([]admin.SessionInfo, error) {
	ss, err := u.ui.Sessions(ctx)
	var out []admin.SessionInfo
	for _, s := range ss {
		out = append(out, admin.SessionInfo{ID: s.ID, User: s.User, Proto: "web", Remote: s.Remote, Start: s.Start})
	}
	return out, err
}
func (u uiSessions) KillSession(ctx context.Context, id string) (bool, error) {
	return u.ui.KillSession(ctx, id)
}
func (u uiSessions) KillUserSessions(ctx context.Context, name string) (int, error) {
	return u.ui.KillUserSessions(ctx, name)
}

// TestAdminPageSessions: the admin page lists live sessions (its own
// without an End button) and ends another user's; a non-admin cannot.
func TestAdminPageSessions(t *testing.T) {
	f, l, logs := accountsFixture(t, SignupOff)
	l.Sessions = []admin.SessionSource{uiSessions{f.ui}}
	ctx := context.Background()
	f.addUser("boss", "boss-password-1", users.PermAll, 0)
	f.addUser("carol", "carol-password-1", users.PermAll, 0)
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	boss := f.client()
	boss.login("boss", "boss-password-1")
	carol := f.client()
	carol.login("carol", "carol-password-1")
	var carolID string
	ss, err := f.ui.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.User == "carol" {
			carolID = s.ID
		}
	}
	if r := carol.postCSRF("/ui/admin/session-kill", url.Values{"id": {carolID}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("a non-admin's session-kill: %d", r.StatusCode)
	}
	r := boss.get("/ui/admin/")
	if !strings.Contains(r.body, `data-session="`+carolID+`"`) || strings.Count(r.body, `class="link session-kill"`) != 1 {
		t.Fatalf("sessions table: %s", r.body)
	}
	if r := boss.postCSRF("/ui/admin/session-kill", url.Values{"id": {carolID}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("session-kill: %d %s", r.StatusCode, r.body)
	}
	if r := carol.get("/ui/files/"); r.StatusCode == http.StatusOK {
		t.Fatal("carol's session survived")
	}
	if logs.Count(func(r testutil.Record) bool {
		return r.Message == "webui: admin session-kill" && r.Attr("admin") == "boss"
	}) != 1 {
		t.Error("session-kill not logged with admin=boss")
	}
}
