package webui

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/users"
)

var (
	reSecret   = regexp.MustCompile(`id="enrol-secret">([A-Z2-7 ]+)<`)
	reRecovery = regexp.MustCompile(`<li><code>([a-z2-7-]+)</code></li>`)
	reAppPW    = regexp.MustCompile(`id="new-app-password" type="text" readonly value="([a-z2-7]+)"`)
	reAppID    = regexp.MustCompile(`name="id" value="([0-9a-f]+)"`)
)

func (f *fixture) code(secret string) string {
	f.t.Helper()
	c, err := totp.GenerateCode(secret, f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// enrolBrowser enrols the signed-in client on the account page and returns
// the secret and the recovery codes shown.
func (c *client) enrolBrowser() (string, []string) {
	c.t.Helper()
	page := c.get("/ui/account/")
	m := reSecret.FindStringSubmatch(page.body)
	if page.StatusCode != http.StatusOK || m == nil {
		c.t.Fatalf("account page: %d %q", page.StatusCode, page.body)
	}
	secret := strings.ReplaceAll(m[1], " ", "")
	qr := c.get("/ui/account/qr")
	if qr.StatusCode != http.StatusOK || qr.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(qr.body, "\x89PNG") {
		c.t.Fatalf("QR code: %d %s", qr.StatusCode, qr.Header.Get("Content-Type"))
	}
	if r := c.postCSRF("/ui/account/2fa-enrol", url.Values{"code": {"000000"}}); r.StatusCode != http.StatusForbidden {
		c.t.Fatalf("enrolment with a wrong code: %d", r.StatusCode)
	}
	r := c.postCSRF("/ui/account/2fa-enrol", url.Values{"code": {c.f.code(secret)}})
	codes := reRecovery.FindAllStringSubmatch(r.body, -1)
	if r.StatusCode != http.StatusOK || len(codes) != users.RecoveryCodes {
		c.t.Fatalf("enrolment: %d %q", r.StatusCode, r.body)
	}
	var out []string
	for _, m := range codes {
		out = append(out, m[1])
	}
	return secret, out
}

// secondStep posts a code to the pending login.
func (c *client) secondStep(code string) resp {
	c.t.Helper()
	return c.post("/ui/login/code", url.Values{"code": {code}})
}

// TestTwoFactorBrowserLogin: enrolment on the account page (QR code served
// from our origin, a wrong code refused), then a sign-in needs the code
// after the password: no session before it, replay refused, a recovery code
// works once, wrong codes end the pending login after maxCodeTries, the
// secret never reaches the log.
func TestTwoFactorBrowserLogin(t *testing.T) {
	f, _, logs := accountsFixture(t, SignupOff)
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	c := f.client()
	c.login("alice", "alice-password-1")
	secret, codes := c.enrolBrowser()
	if logs.AnyText(secret) || logs.AnyText(codes[0]) {
		t.Fatal("the TOTP secret or a recovery code was logged")
	}
	if r := c.get("/ui/account/"); !strings.Contains(r.body, `id="twofactor-on"`) || !strings.Contains(r.body, `id="recovery-left">10<`) {
		t.Fatalf("account page after enrolment: %q", r.body)
	}

	b := f.client()
	r := b.loginResp("alice", "alice-password-1")
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login/code" {
		t.Fatalf("password step: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := b.get("/ui/files/"); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
		t.Fatalf("files before the code: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := b.get("/ui/login/code"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, `id="code-form"`) {
		t.Fatalf("code form: %d", r.StatusCode)
	}
	// The enrolment's code is spent: replay refused.
	if r := b.secondStep(f.code(secret)); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed enrolment code: %d", r.StatusCode)
	}
	f.clock.Advance(30 * time.Second)
	good := f.code(secret)
	if r := b.secondStep(good); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/files/" {
		t.Fatalf("good code: %d %q %q", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	b.refreshCSRF()
	// The same code again, in a new sign-in: refused.
	d := f.client()
	d.loginResp("alice", "alice-password-1")
	if r := d.secondStep(good); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed code: %d", r.StatusCode)
	}
	// A recovery code works once.
	if r := d.secondStep(codes[0]); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("recovery code: %d %q", r.StatusCode, r.body)
	}
	e := f.client()
	e.loginResp("alice", "alice-password-1")
	if r := e.secondStep(codes[0]); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("recovery code reused: %d", r.StatusCode)
	}
	// Wrong codes end the pending login (maxCodeTries in all).
	for i := 1; i < maxCodeTries-1; i++ {
		if r := e.secondStep("999999x"); r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, `id="code-form"`) {
			t.Fatalf("wrong code %d: %d", i, r.StatusCode)
		}
	}
	if r := e.secondStep("999999x"); r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, `id="login-form"`) {
		t.Fatalf("last wrong code: %d %q", r.StatusCode, r.body)
	}
	f.clock.Advance(30 * time.Second)
	if r := e.secondStep(f.code(secret)); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
		t.Fatalf("a good code after the pending login ended: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	// A pending login expires.
	g := f.client()
	g.loginResp("alice", "alice-password-1")
	f.clock.Advance(pendingTTL)
	if r := g.secondStep(f.code(secret)); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
		t.Fatalf("code after expiry: %d", r.StatusCode)
	}
	if n := logs.Count(func(r testutil.Record) bool {
		return r.Message == "webui: second factor failed" && r.Attr("user") == "alice"
	}); n < maxCodeTries {
		t.Fatalf("%d failed codes logged as login failures", n)
	}
}

// TestTwoFactorGuessingBanned: wrong codes count in the login defender
// like wrong passwords: after the address's threshold the right code is
// refused too.
func TestTwoFactorGuessingBanned(t *testing.T) {
	f, _, _ := accountsFixture(t, SignupOff, func(u *users.Options, _ *Options) {
		u.Defender.AddrThreshold = 6
		u.Defender.UserThreshold = 100
	})
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	c := f.client()
	c.login("alice", "alice-password-1")
	secret, _ := c.enrolBrowser()
	// Five wrong codes on one pending login, then the password again
	// and one more wrong code.
	a := f.client()
	a.loginResp("alice", "alice-password-1")
	for range maxCodeTries {
		a.secondStep("000000x")
	}
	a.loginResp("alice", "alice-password-1")
	a.secondStep("000000x")
	if bans := f.db.Bans(); len(bans) != 1 || bans[0].Kind != "address" {
		t.Fatalf("bans after %d wrong codes: %+v", maxCodeTries+1, bans)
	}
	f.clock.Advance(30 * time.Second)
	if r := a.loginResp("alice", "alice-password-1"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("password while banned: %d", r.StatusCode)
	}
	_ = secret
}

// TestRequire2FABrowser: under Require2FA a user without 2FA is sent to
// the account page by every other page, POSTs elsewhere are refused, and
// once enrolled everything works; the admin page's reset puts them back.
func TestRequire2FABrowser(t *testing.T) {
	f, l, _ := accountsFixture(t, SignupOff, func(u *users.Options, _ *Options) { u.Require2FA = true })
	ctx := context.Background()
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	f.addUser("boss", "boss-password-1", users.PermAll, 0)
	if err := l.SetUser(ctx, "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	c := f.client()
	r := c.loginResp("alice", "alice-password-1")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", r.StatusCode)
	}
	for _, p := range []string{"/ui/files/", "/ui/files/docs", "/ui/admin/"} {
		if r := c.get(p); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/account/" {
			t.Fatalf("GET %s before enrolment: %d %q", p, r.StatusCode, r.Header.Get("Location"))
		}
	}
	page := c.get("/ui/account/")
	m := reCSRF.FindStringSubmatch(page.body)
	if m == nil || strings.Contains(page.body, `id="password-form"`) {
		t.Fatalf("account page before enrolment: %q", page.body)
	}
	c.csrf = html.UnescapeString(m[1])
	if r := c.postCSRF("/ui/mkdir/x", nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("mkdir before enrolment: %d", r.StatusCode)
	}
	secret, _ := c.enrolBrowser()
	if r := c.get("/ui/files/"); r.StatusCode != http.StatusOK {
		t.Fatalf("files after enrolment: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/account/2fa-off", url.Values{"code": {f.code(secret)}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("switching off under require: %d", r.StatusCode)
	}

	// The admin resets alice's 2FA; her session is sent to enrol again.
	boss := f.client()
	boss.loginResp("boss", "boss-password-1")
	bp := boss.get("/ui/account/")
	boss.csrf = html.UnescapeString(reCSRF.FindStringSubmatch(bp.body)[1])
	bsecret, _ := boss.enrolBrowser()
	_ = bsecret
	if r := boss.get("/ui/admin/"); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "user-2fa-reset") {
		t.Fatalf("admin page: %d", r.StatusCode)
	}
	if r := boss.postCSRF("/ui/admin/user-2fa-reset", url.Values{"name": {"alice"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("reset: %d %q", r.StatusCode, r.body)
	}
	if u, _ := f.db.Get(ctx, "alice"); u.TwoFactor != nil {
		t.Fatal("2FA still on after the reset")
	}
	if r := c.get("/ui/files/"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/account/" {
		t.Fatalf("after reset: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestAccountSelfService: password change (old password checked, policy
// applied, other sessions end, this one stays), SSH keys added and
// removed, app passwords shown once and revoked.
func TestAccountSelfService(t *testing.T) {
	f, _, logs := accountsFixture(t, SignupOff)
	ctx := context.Background()
	f.addUser("alice", "alice-password-1", users.PermAll, 1<<20)
	c := f.client()
	c.login("alice", "alice-password-1")
	other := f.client()
	other.login("alice", "alice-password-1")
	page := c.get("/ui/account/")
	if !strings.Contains(page.body, "0 B used of 1.0 MiB") || !strings.Contains(page.body, `id="logins"`) {
		t.Fatalf("account page: %q", page.body)
	}
	if r := c.postCSRF("/ui/account/password", url.Values{"old": {"wrong-password-1"}, "new": {"Copper-Lantern-77"}, "new2": {"Copper-Lantern-77"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong old password: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/account/password", url.Values{"old": {"alice-password-1"}, "new": {"short"}, "new2": {"short"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("weak new password: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/account/password", url.Values{"old": {"alice-password-1"}, "new": {"alice-Copper-77x"}, "new2": {"alice-Copper-77x"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("password with the user name: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/account/password", url.Values{"old": {"alice-password-1"}, "new": {"Copper-Lantern-77"}, "new2": {"Copper-Lantern-78"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("differing new passwords: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/account/password", url.Values{"old": {"alice-password-1"}, "new": {"Copper-Lantern-77"}, "new2": {"Copper-Lantern-77"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("change: %d %q", r.StatusCode, r.body)
	}
	if r := c.get("/ui/files/"); r.StatusCode != http.StatusOK {
		t.Fatalf("own session after the change: %d", r.StatusCode)
	}
	if r := other.get("/ui/files/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("other session after the change: %d", r.StatusCode)
	}
	if _, err := f.db.AuthPassword(ctx, "dav", "10.1.1.1", "alice", []byte("Copper-Lantern-77")); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if logs.AnyText("Copper-Lantern-77") {
		t.Fatal("the new password was logged")
	}

	// SSH keys.
	_, line := newSSHKey(t)
	if r := c.postCSRF("/ui/account/key-add", url.Values{"key": {"ssh-rsa AAAA nonsense"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad key: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/account/key-add", url.Values{"key": {line}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("key add: %d %q", r.StatusCode, r.body)
	}
	u, _ := f.db.Get(ctx, "alice")
	if len(u.Keys) != 1 {
		t.Fatalf("keys %+v", u.Keys)
	}
	if r := c.get("/ui/account/"); !strings.Contains(html.UnescapeString(r.body), u.Keys[0].Fingerprint) {
		t.Fatal("key not listed")
	}
	if r := c.postCSRF("/ui/account/key-del", url.Values{"fingerprint": {u.Keys[0].Fingerprint}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("key del: %d", r.StatusCode)
	}
	if u, _ := f.db.Get(ctx, "alice"); len(u.Keys) != 0 {
		t.Fatal("key not removed")
	}

	// App passwords need 2FA; then they are shown once, listed, revoked.
	if r := c.postCSRF("/ui/account/app-add", url.Values{"name": {"laptop"}, "webdav": {"1"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("app password without 2FA: %d", r.StatusCode)
	}
	secret, _ := c.enrolBrowser()
	if r := c.postCSRF("/ui/account/app-add", url.Values{"name": {"laptop"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("app password without a protocol: %d", r.StatusCode)
	}
	r := c.postCSRF("/ui/account/app-add", url.Values{"name": {"laptop"}, "webdav": {"1"}})
	m := reAppPW.FindStringSubmatch(r.body)
	if r.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("app add: %d %q", r.StatusCode, r.body)
	}
	pw := m[1]
	if logs.AnyText(pw) {
		t.Fatal("the app password was logged")
	}
	if _, err := f.db.AuthPassword(ctx, "dav", "10.1.1.1", "alice", []byte(pw)); err != nil {
		t.Fatalf("app password over WebDAV: %v", err)
	}
	if _, err := f.db.AuthPassword(ctx, "ssh", "10.1.1.1", "alice", []byte(pw)); err == nil {
		t.Fatal("webdav app password took an SFTP login")
	}
	page = c.get("/ui/account/")
	if strings.Contains(page.body, pw) || !strings.Contains(page.body, `data-app="laptop"`) {
		t.Fatal("app password shown again, or not listed")
	}
	id := reAppID.FindStringSubmatch(page.body)[1]
	if r := c.postCSRF("/ui/account/app-revoke", url.Values{"id": {id}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	if _, err := f.db.AuthPassword(ctx, "dav", "10.1.1.1", "alice", []byte(pw)); err == nil {
		t.Fatal("revoked app password still works")
	}
	// Another user's app password id is not found for alice.
	if r := c.postCSRF("/ui/account/app-revoke", url.Values{"id": {id}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("second revoke: %d", r.StatusCode)
	}
	// A POST without the CSRF token does nothing.
	if r := c.post("/ui/account/app-add", url.Values{"name": {"evil"}, "webdav": {"1"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("app add without CSRF: %d", r.StatusCode)
	}
	// New recovery codes replace the old ones; switching 2FA off needs a
	// current code and removes the app passwords.
	if r := c.postCSRF("/ui/account/recovery-new", nil); r.StatusCode != http.StatusOK || len(reRecovery.FindAllStringSubmatch(r.body, -1)) != users.RecoveryCodes {
		t.Fatalf("new recovery codes: %d", r.StatusCode)
	}
	if _, _, err := f.db.AddAppPassword(ctx, "alice", "tablet", []string{users.ProtoSFTP}); err != nil {
		t.Fatal(err)
	}
	if r := c.postCSRF("/ui/account/2fa-off", url.Values{"code": {"123456x"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("2FA off with a wrong code: %d", r.StatusCode)
	}
	f.clock.Advance(30 * time.Second)
	if r := c.postCSRF("/ui/account/2fa-off", url.Values{"code": {f.code(secret)}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("2FA off: %d %q", r.StatusCode, r.body)
	}
	if u, _ := f.db.Get(ctx, "alice"); u.TwoFactor != nil || len(u.AppPasswords) != 0 {
		t.Fatalf("after 2FA off: %+v", u)
	}
}

// newSSHKey makes an ed25519 public key and its authorized_keys line.
func newSSHKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pk, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " laptop"
}

// TestTwoFactorParallelGuesses: parallel wrong codes on one pending login
// get maxCodeTries checks in all, not one per request.
func TestTwoFactorParallelGuesses(t *testing.T) {
	f, _, logs := accountsFixture(t, SignupOff)
	f.addUser("alice", "alice-password-1", users.PermAll, 0)
	c := f.client()
	c.login("alice", "alice-password-1")
	c.enrolBrowser()
	a := f.client()
	a.loginResp("alice", "alice-password-1")
	var wg sync.WaitGroup
	for range 3 * maxCodeTries {
		wg.Add(1)
		go func() { defer wg.Done(); a.secondStep("123456x") }()
	}
	wg.Wait()
	if n := logs.Count(func(r testutil.Record) bool { return r.Message == "webui: second factor failed" }); n != maxCodeTries {
		t.Fatalf("%d codes checked on one pending login, want %d", n, maxCodeTries)
	}
}
