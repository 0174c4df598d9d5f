package webui

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/etcdsess"
	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/users"
)

// sharedStore is one node's session store on the etcd cluster c.
func sharedStore(t *testing.T, c *testutil.EtcdCluster, node string) *etcdsess.Store {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	s, err := etcdsess.New(etcdsess.Config{Client: cl, Prefix: "w/sessions/", Key: bytes.Repeat([]byte{3}, 32), Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// secondNode is another UI over f's store and users, with its own
// session store, served by its own server: a second node of a cluster.
// The returned client shares c's cookie jar (one host: the cookie goes to
// both, as behind a load balancer).
func secondNode(t *testing.T, f *fixture, shared SharedSessions, c *client) (*UI, *client) {
	t.Helper()
	ui, err := New(Options{Store: f.store, Users: f.db, Logger: testLogger(t), Secure: true, Now: f.clock.Now, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	if f.ui.accounts != nil { // the account pages too
		if err := EnableAccounts(ui, f.ui.accounts.opts); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix(), ui)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	fb := *f
	fb.ui, fb.srv = ui, srv
	return ui, &client{t: t, f: &fb, c: c.c}
}

// signedOut waits until the file list sends c to the sign-in page.
func signedOut(t *testing.T, c *client, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.get("/ui/files/").StatusCode == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still signed in after 20 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedSessions (issue 21): two UIs sharing sessions in etcd. A
// sign-in on A is served by B with the same CSRF token; both list it once,
// with A's name; a sign-out on B ends A's copy; a kill on B ends A's; a
// disabled user's session ends on both; an unknown cookie is no session.
func TestSharedSessions(t *testing.T) {
	c := testutil.StartEtcd(t, 1)
	sa, sb := sharedStore(t, c, "node-a"), sharedStore(t, c, "node-b")
	f := newFixture(t, func(_ *users.Options, o *Options) { o.Shared = sa })
	f.addUser("alice", "alice-password", users.PermAll, 0)
	ctx := context.Background()

	a := f.client()
	a.login("alice", "alice-password")
	uiB, b := secondNode(t, f, sb, a)
	b.refreshCSRF()
	if b.csrf != a.csrf {
		t.Fatal("node B serves the session with another CSRF token")
	}
	if r := b.postCSRF("/ui/mkdir", nil); r.StatusCode == http.StatusForbidden {
		t.Fatalf("node B refuses the session's CSRF token: %d", r.StatusCode)
	}
	for _, ui := range []*UI{f.ui, uiB} {
		ss, err := ui.Sessions(ctx)
		if err != nil || len(ss) != 1 || ss[0].User != "alice" || ss[0].Node != "node-a" {
			t.Fatalf("sessions: %+v, %v", ss, err)
		}
	}
	// Signed out on B: A's copy goes too.
	if r := b.postCSRF("/ui/logout", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on B: %d", r.StatusCode)
	}
	signedOut(t, a, "A after a sign-out on B")

	// Killed through B.
	a.login("alice", "alice-password")
	b.refreshCSRF()
	if n, err := uiB.KillUserSessions(ctx, "alice"); err != nil || n != 1 {
		t.Fatalf("kill through B: %d, %v", n, err)
	}
	signedOut(t, a, "A after a kill through B")
	signedOut(t, b, "B after its kill")

	// The user disabled: each node ends it at its next request.
	a.login("alice", "alice-password")
	b.refreshCSRF()
	if err := f.db.Update(ctx, "alice", func(u *users.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	signedOut(t, b, "B after the disable")
	signedOut(t, a, "A after the disable")
	if ss, err := f.ui.Sessions(ctx); err != nil || len(ss) != 0 {
		t.Fatalf("sessions after the disable: %+v, %v", ss, err)
	}
}

// TestSharedSessionsPasswordChange: a password changed on A's account
// page keeps the session that changed it on both nodes (its record
// follows the new hash) and ends the user's other session on both.
func TestSharedSessionsPasswordChange(t *testing.T) {
	c := testutil.StartEtcd(t, 1)
	sa, sb := sharedStore(t, c, "node-a"), sharedStore(t, c, "node-b")
	f, _, _ := accountsFixture(t, SignupOff, func(_ *users.Options, o *Options) { o.Shared = sa })
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	self := f.client()
	self.login("alice", "alice-password-1")
	other := f.client()
	other.login("alice", "alice-password-1")
	_, selfB := secondNode(t, f, sb, self)
	_, otherB := secondNode(t, f, sb, other)
	selfB.refreshCSRF()
	otherB.refreshCSRF()
	if r := self.postCSRF("/ui/account/password", url.Values{"old": {"alice-password-1"}, "new": {"Copper-Lantern-77"}, "new2": {"Copper-Lantern-77"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("change on A: %d %q", r.StatusCode, r.body)
	}
	signedOut(t, otherB, "the other session on B")
	signedOut(t, other, "the other session on A")
	for _, cl := range []*client{self, selfB} {
		if r := cl.get("/ui/files/"); r.StatusCode != http.StatusOK {
			t.Fatalf("the session that changed the password, on %s: %d", cl.f.srv.URL, r.StatusCode)
		}
	}
}

// TestSharedSecondStep: a TOTP key shown by A is confirmed through B;
// with 2FA then, the password given to A and the code to B sign in (the pending login is the cluster's); a wrong code on
// each counts against the same tries; the session serves on both.
func TestSharedSecondStep(t *testing.T) {
	c := testutil.StartEtcd(t, 1)
	sa, sb := sharedStore(t, c, "node-a"), sharedStore(t, c, "node-b")
	f, _, _ := accountsFixture(t, SignupOff, func(_ *users.Options, o *Options) { o.Shared = sa })
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	// Enrolment: the key shown by A is confirmed through B.
	enrol := f.client()
	enrol.login("alice", "alice-password-1")
	page := enrol.get("/ui/account/")
	m := reSecret.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("account page on A: %d %q", page.StatusCode, page.body)
	}
	secret := strings.ReplaceAll(m[1], " ", "")
	_, enrolB := secondNode(t, f, sb, enrol)
	enrolB.refreshCSRF()
	if qr := enrolB.get("/ui/account/qr"); qr.StatusCode != http.StatusOK || !strings.HasPrefix(qr.body, "\x89PNG") {
		t.Fatalf("QR code of A's key on B: %d", qr.StatusCode)
	}
	if r := enrolB.postCSRF("/ui/account/2fa-enrol", url.Values{"code": {f.code(secret)}}); r.StatusCode != http.StatusOK || len(reRecovery.FindAllString(r.body, -1)) != users.RecoveryCodes {
		t.Fatalf("enrolment confirmed on B: %d %q", r.StatusCode, r.body)
	}
	f.clock.Advance(30 * time.Second) // the enrolment's code is used

	a := f.client()
	_, b := secondNode(t, f, sb, a)
	if r := a.loginResp("alice", "alice-password-1"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login/code" {
		t.Fatalf("password on A: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	pend := keyOf(cookieOf(t, a, pendingCookie))
	if cookieOf(t, a, pendingCookie) == "" {
		t.Fatal("no pending login cookie")
	}
	if r := b.get("/ui/login/code"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, `id="code-form"`) {
		t.Fatalf("code form on B: %d", r.StatusCode)
	}
	for _, cl := range []*client{a, b} {
		if r := cl.secondStep("000000"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a wrong code on %s: %d", cl.f.srv.URL, r.StatusCode)
		}
	}
	sp, _, err := sa.TakePendingTry(context.Background(), pend, maxCodeTries)
	if err != nil || sp.Tries != 3 {
		t.Fatalf("tries after a wrong code on each node and this one: %d, %v", sp.Tries, err)
	}
	f.clock.Advance(30 * time.Second) // a code of the next step: the wrong ones took no step
	if r := b.secondStep(f.code(secret)); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/" {
		t.Fatalf("the right code on B: %d %s %q", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	for _, cl := range []*client{a, b} {
		if r := cl.get("/ui/files/"); r.StatusCode != http.StatusOK {
			t.Fatalf("the session on %s: %d", cl.f.srv.URL, r.StatusCode)
		}
	}
	if _, err := sa.GetPending(context.Background(), pend); err == nil {
		t.Fatal("the pending login outlived the sign-in")
	}
}

// cookieOf is the value of c's cookie name ("" if none).
func cookieOf(t *testing.T, c *client, name string) string {
	t.Helper()
	u, _ := url.Parse(c.f.srv.URL + "/ui/")
	for _, ck := range c.c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}
