package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	testbrowser "github.com/securefsd/securefsd/internal/testutil/browser"
)

// Tests of issue 18's two-factor login against the real binary: TOTP
// enrolment and sign-in in headless Chromium with codes computed here with
// github.com/pquerna/otp (the server uses the same library: RFC 6238,
// SHA-1, 6 digits, 30 s), recovery codes, app passwords with curl (WebDAV)
// and OpenSSH sftp (password login through SSH_ASKPASS), revocation, and
// serve --require-2fa. Attack tests: code replay, recovery code reuse, an
// app password for the wrong protocol, code guessing banned by the
// defender.

// totpCode computes the code for secret at t.
func totpCode(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// passwordSFTP holds an OpenSSH sftp session open that logs in with pw
// (SSH_ASKPASS; public keys off).
func passwordSFTP(t *testing.T, srv *Server, user, pw string) *sftpProc {
	t.Helper()
	askpass := filepath.Join(t.TempDir(), "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho \"$TF_PASSWORD\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	opts := []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
		"-o", "NumberOfPasswordPrompts=1"}
	return startSFTP(t, srv, user, opts, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "TF_PASSWORD="+pw, "DISPLAY=:0")
}

// browserLogin signs in with the password and waits for selector.
func browserLogin(ctx context.Context, srv *Server, user, pass, waitFor string) error {
	return chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/login"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID(waitFor)),
	)
}

// browserCode enters a code on the second-step form and waits for selector.
func browserCode(ctx context.Context, code, waitFor string) error {
	return chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.ID("code-submit")),
		chromedp.WaitVisible(chromedp.ID(waitFor)),
	)
}

// browserLogout signs out of the current session.
func browserLogout(ctx context.Context) error {
	return chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
}

// browserEnrol enrols on the account page (already shown) and returns the
// secret and the recovery codes.
func browserEnrol(t *testing.T, ctx context.Context, srv *Server) (string, []string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("enrol-secret"))); err != nil {
		t.Fatalf("enrolment form: %v\n%s", err, srv.Log())
	}
	secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("enrol-secret")))
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.ReplaceAll(secret, " ", "")
	// The QR code is an image from our own origin that the browser decoded.
	w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.getElementById('enrol-qr').naturalWidth`))
	if err != nil || w < 100 {
		t.Fatalf("QR code image width %d: %v", w, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("enrol-code"), totpCode(t, secret, time.Now())),
		chromedp.Click(chromedp.ID("enrol-submit")),
		chromedp.WaitVisible(chromedp.ID("recovery-codes")),
	); err != nil {
		t.Fatalf("enrolment: %v\n%s", err, srv.Log())
	}
	codes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#recovery-codes code')).map(e => e.textContent)`))
	if err != nil || len(codes) != 10 {
		t.Fatalf("recovery codes %q: %v", codes, err)
	}
	return secret, codes
}

// browserAppPassword creates an app password on the account page for the
// protocols given and returns it.
func browserAppPassword(t *testing.T, ctx context.Context, srv *Server, name string, webdav, sftp bool) string {
	t.Helper()
	set := func(id string, on bool) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).checked = %v`, id, on))
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/account/"),
		chromedp.WaitVisible(chromedp.ID("app-add")),
		chromedp.SendKeys(chromedp.ID("app-name"), name),
		set("app-webdav", webdav),
		set("app-sftp", sftp),
		chromedp.Click(chromedp.ID("app-add-submit")),
		chromedp.WaitVisible(chromedp.ID("new-app-password")),
	); err != nil {
		t.Fatalf("app password %s: %v\n%s", name, err, srv.Log())
	}
	pw, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("new-app-password")))
	if err != nil || len(pw) != 32 {
		t.Fatalf("app password %q: %v", pw, err)
	}
	return pw
}

// browserRevoke revokes the app password called name on the account page.
func browserRevoke(t *testing.T, ctx context.Context, srv *Server, name string) {
	t.Helper()
	row := fmt.Sprintf(`tr[data-app=%q]`, name)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/account/"),
		chromedp.Click(chromedp.CSS(row+" .app-revoke")),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
	); err != nil {
		t.Fatalf("revoke %s: %v\n%s", name, err, srv.Log())
	}
}

// TestTwoFactorBrowser (issue 18): TOTP enrolment on the account page and
// sign-in with a code computed here; the code replayed is refused; a
// recovery code works once; app passwords work over WebDAV (curl) and SFTP
// (OpenSSH, password login) only for the protocols chosen, the account
// password no longer does there, an SSH key still does; revoking an app
// password in the browser ends an open sftp session made with it and the
// next WebDAV request with it is refused.
func TestTwoFactorBrowser(t *testing.T) {
	ctx := testbrowser.New(t, "status of 401", "status of 403")
	srv := StartServer(t)
	user, pass := "tf"+RandomName(), "Ember-Quartz-"+RandomName()
	key := srv.AddUser(t, user, pass)
	small := RandomFile(t, 10<<10)

	if err := browserLogin(ctx, srv, user, pass, "account-link"); err != nil {
		t.Fatalf("sign-in: %v\n%s", err, srv.Log())
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("account-link"))); err != nil {
		t.Fatal(err)
	}
	secret, codes := browserEnrol(t, ctx, srv)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	testbrowser.SaveScreenshot(t, shot, "e2e-account-2fa.png", 800, 600)
	if strings.Contains(srv.Log(), secret) {
		t.Fatal("the TOTP secret is in the server log")
	}

	// App passwords: one for WebDAV, one for SFTP.
	davPW := browserAppPassword(t, ctx, srv, "rclone laptop", true, false)
	sftpPW := browserAppPassword(t, ctx, srv, "sftp client", false, true)

	// Sign in again: password, then a code (of the next step: the
	// enrolment used this one).
	if err := browserLogout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := browserLogin(ctx, srv, user, pass, "code-form"); err != nil {
		t.Fatalf("password step: %v\n%s", err, srv.Log())
	}
	code := totpCode(t, secret, time.Now().Add(30*time.Second))
	if err := browserCode(ctx, code, "logout"); err != nil {
		t.Fatalf("code step: %v\n%s", err, srv.Log())
	}
	// Replay of that code in a new sign-in: refused.
	if err := browserLogout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := browserLogin(ctx, srv, user, pass, "code-form"); err != nil {
		t.Fatal(err)
	}
	if err := browserCode(ctx, code, "error"); err != nil {
		t.Fatalf("replayed code: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`)); loc != "/ui/login/code" {
		t.Fatalf("after a replayed code the browser is at %s", loc)
	}
	// A recovery code works once.
	// (The refusal showed a fresh, empty form.)
	if err := browserCode(ctx, codes[0], "logout"); err != nil {
		t.Fatalf("recovery code: %v\n%s", err, srv.Log())
	}
	if left, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".flash.ok"))); err != nil || !strings.Contains(left, "Codes left: 9") {
		t.Fatalf("after a recovery code: %q %v", left, err)
	}
	if err := browserLogout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := browserLogin(ctx, srv, user, pass, "code-form"); err != nil {
		t.Fatal(err)
	}
	if err := browserCode(ctx, codes[0], "error"); err != nil {
		t.Fatalf("recovery code reused: %v", err)
	}
	// (The refusal showed a fresh, empty form.)
	if err := browserCode(ctx, codes[1], "logout"); err != nil {
		t.Fatalf("second recovery code: %v", err)
	}

	// WebDAV with curl: the app password for webdav works; the account
	// password and the sftp-only app password do not.
	if c := httpCode(t, srv, user, davPW, "-T", small, srv.DAVURL+"/dav.bin"); c != "201" {
		t.Fatalf("PUT with the WebDAV app password: %s\n%s", c, srv.Log())
	}
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("PROPFIND with the account password under 2FA: %s", c)
	}
	if c := httpCode(t, srv, user, sftpPW, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("PROPFIND with the SFTP-only app password: %s", c)
	}
	// SFTP with OpenSSH: the sftp app password works, the others do not,
	// the key still does.
	for what, pw := range map[string]string{"account password": pass, "WebDAV-only app password": davPW} {
		p := passwordSFTP(t, srv, user, pw)
		if out, ok := p.run("ls"); ok {
			t.Fatalf("sftp with the %s logged in: %s", what, out)
		}
	}
	if out, err := srv.SFTPBatch(t, user, key, "put "+small+" by-key.bin\n"); err != nil {
		t.Fatalf("sftp with the key under 2FA: %v %s", err, out)
	}
	p := passwordSFTP(t, srv, user, sftpPW)
	if out, ok := p.run("put " + small + " app.bin"); !ok {
		t.Fatalf("sftp with the SFTP app password: %s\n%s", out, srv.Log())
	}
	// The account page lists both with their last use.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+"/ui/account/"), chromedp.WaitVisible(chromedp.ID("app-passwords"))); err != nil {
		t.Fatal(err)
	}
	if used, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-app="sftp client"]`))); err != nil || strings.Contains(used, "never") {
		t.Fatalf("the SFTP app password's last use: %q %v", used, err)
	}

	// Revocation in the browser: the open sftp session ends, WebDAV with
	// the revoked password is refused at the next request.
	browserRevoke(t, ctx, srv, "sftp client")
	waitFor(t, 60*time.Second, "the app-password sftp session to be closed", func() bool {
		return len(records(srv, attrs("event", "access_revoked", "user", user))) >= 1
	})
	if out, ok := p.run("put " + small + " after.bin"); ok {
		t.Fatalf("an upload after the revocation succeeded: %s", out)
	}
	if _, err := os.Stat(storePath(srv, user, "after.bin")); err == nil {
		t.Fatal("the upload after the revocation left a file")
	}
	browserRevoke(t, ctx, srv, "rclone laptop")
	if c := httpCode(t, srv, user, davPW, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("PROPFIND with the revoked app password: %s", c)
	}

	// The admin sees 2FA in the user list, and resets it from the command
	// line (through the running server): the account password works over
	// WebDAV again.
	if out, err := srv.CLI(t, "user", "list", "--json"); err != nil || !strings.Contains(out, `"two_factor": true`) || strings.Contains(out, secret) {
		t.Fatalf("user list: %v %s", err, out)
	}
	if _, err := srv.CLI(t, "user", "2fa", "reset", user); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(t, "user", "2fa", "reset", user); err == nil {
		t.Fatal("a second reset succeeded")
	}
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "207" {
		t.Fatalf("PROPFIND with the account password after the reset: %s", c)
	}
	if strings.Contains(srv.Log(), secret) || strings.Contains(srv.Log(), davPW) || strings.Contains(srv.Log(), codes[2]) {
		t.Fatal("a secret is in the server log")
	}
	// The audit trail has the two-factor life: enrolment, a login with a
	// code, app passwords made and revoked, the admin's reset; no secret.
	srv.Stop(t)
	want := map[string]bool{"user.2fa enrol": false, "login totp": false, "user.apppw add": false, "user.apppw revoke": false, "user.2fa reset": false}
	for _, r := range auditQuery(t, srv, "--user", user, "--op", "login,user.2fa,user.apppw") {
		if r.Result != "ok" {
			continue
		}
		k := r.Op + " " + strings.Fields(r.Detail + " -")[0]
		if _, ok := want[k]; ok {
			want[k] = true
		}
		if strings.Contains(r.Detail, davPW) || strings.Contains(r.Detail, secret) {
			t.Errorf("a secret in the audit record %+v", r)
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no audit record %q", k)
		}
	}
}

// TestRequire2FABrowser (issue 18): under serve --require-2fa a
// password-only WebDAV or SFTP login is refused for an account without
// 2FA, its SSH key still works (documented), and its next browser sign-in
// goes to the enrolment page, which it cannot leave until enrolled; then
// an app password works over WebDAV.
func TestRequire2FABrowser(t *testing.T) {
	ctx := testbrowser.New(t, "status of 401")
	srv := StartServer(t, WithServeArgs("--require-2fa"))
	user, pass := "rq"+RandomName(), "Silver-Harbor-"+RandomName()
	key := srv.AddUser(t, user, pass)
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("password-only WebDAV login under --require-2fa: %s", c)
	}
	if out, ok := passwordSFTP(t, srv, user, pass).run("ls"); ok {
		t.Fatalf("password-only SFTP login under --require-2fa: %s", out)
	}
	if out, err := srv.SFTPBatch(t, user, key, "ls\n"); err != nil {
		t.Fatalf("key login under --require-2fa: %v %s", err, out)
	}
	if err := browserLogin(ctx, srv, user, pass, "enrol-secret"); err != nil {
		t.Fatalf("sign-in under --require-2fa: %v\n%s", err, srv.Log())
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+"/ui/files/"), chromedp.WaitVisible(chromedp.ID("enrol-secret"))); err != nil {
		t.Fatalf("the file list before enrolment: %v", err)
	}
	browserEnrol(t, ctx, srv)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+"/ui/files/"), chromedp.WaitVisible(chromedp.ID("upload-form"))); err != nil {
		t.Fatalf("the file list after enrolment: %v", err)
	}
	pw := browserAppPassword(t, ctx, srv, "rclone", true, false)
	if c := httpCode(t, srv, user, pw, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "207" {
		t.Fatalf("app password under --require-2fa: %s", c)
	}
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("password-only WebDAV login after enrolment: %s", c)
	}
	// `user 2fa reset` offline (no server: the database opened in-process)
	// removes the enrolment and the app passwords; after a restart the
	// account must enrol again.
	srv.Stop(t)
	if out, err := srv.CLI(t, "user", "2fa", "reset", user); err != nil || !strings.Contains(out, "reset") {
		t.Fatalf("offline reset: %v %s", err, out)
	}
	if _, err := srv.CLI(t, "user", "2fa", "reset", user); err == nil || !strings.Contains(err.Error(), "not set up") {
		t.Fatalf("offline reset of a user without 2FA: %v", err)
	}
	srv.Restart(t)
	if c := httpCode(t, srv, user, pw, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("app password after the reset: %s", c)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+"/ui/login")); err != nil {
		t.Fatal(err)
	}
	if err := browserLogin(ctx, srv, user, pass, "enrol-secret"); err != nil {
		t.Fatalf("sign-in after the reset goes to enrolment: %v\n%s", err, srv.Log())
	}
}

// webClient is a cookie-keeping HTTP client of the browser pages from one
// source address (no redirects followed).
type webClient struct {
	t   *testing.T
	srv *Server
	hc  *http.Client
}

func newWebClient(t *testing.T, srv *Server, src string) *webClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &webClient{t: t, srv: srv, hc: &http.Client{
		Transport:     &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // self-signed test certificate
		Jar:           jar,
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (w *webClient) get(path string) (int, string) {
	resp, err := w.hc.Get(w.srv.DAVURL + path)
	if err != nil {
		w.t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (w *webClient) post(path string, form url.Values) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, w.srv.DAVURL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", w.srv.DAVURL)
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location") + "\n" + string(b)
}

var reLoginToken = regexp.MustCompile(`name="token" value="([^"]+)"`)

// password posts the sign-in form and returns the status and Location.
func (w *webClient) password(user, pw string) (int, string) {
	_, page := w.get("/ui/login")
	m := reLoginToken.FindStringSubmatch(page)
	if m == nil {
		w.t.Fatalf("no token on the login page: %s", page)
	}
	code, rest := w.post("/ui/login", url.Values{"token": {m[1]}, "username": {user}, "password": {pw}})
	loc, _, _ := strings.Cut(rest, "\n")
	return code, loc
}

// TestTwoFactorGuessingBanned (issue 18, attack): codes guessed in
// parallel on pending sign-ins (the password is known to the attacker) are
// scored by the login defender like wrong passwords: each pending sign-in
// gets five checks however many requests arrive, the address is banned at
// its threshold (ten), and then even the right password is refused there.
func TestTwoFactorGuessingBanned(t *testing.T) {
	srv := StartServer(t)
	user, pass := "gs"+RandomName(), "Amber-Summit-"+RandomName()
	srv.AddUser(t, user, pass)
	// The owner enrols from 127.0.0.80 (plain HTTP client of the pages).
	owner := newWebClient(t, srv, "127.0.0.80")
	if code, loc := owner.password(user, pass); code != http.StatusSeeOther || loc != "/ui/files/" {
		t.Fatalf("owner sign-in: %d %s", code, loc)
	}
	_, page := owner.get("/ui/account/")
	ms := regexp.MustCompile(`id="enrol-secret">([A-Z2-7 ]+)<`).FindStringSubmatch(page)
	mc := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if ms == nil || mc == nil {
		t.Fatalf("account page: %s", page)
	}
	secret := strings.ReplaceAll(ms[1], " ", "")
	if code, body := owner.post("/ui/account/2fa-enrol", url.Values{"csrf": {html.UnescapeString(mc[1])}, "code": {totpCode(t, secret, time.Now())}}); code != http.StatusOK || !strings.Contains(body, "recovery-codes") {
		t.Fatalf("enrolment: %d %s", code, body)
	}

	const src = "127.0.0.81"
	attacker := newWebClient(t, srv, src)
	wrong := func() string {
		good := totpCode(t, secret, time.Now())
		for _, c := range []string{"000000", "111111", "222222"} {
			if c != good && c != totpCode(t, secret, time.Now().Add(30*time.Second)) && c != totpCode(t, secret, time.Now().Add(-30*time.Second)) {
				return c
			}
		}
		t.Fatal("no wrong code")
		return ""
	}()
	for round := range 2 {
		if code, loc := attacker.password(user, pass); code != http.StatusSeeOther || loc != "/ui/login/code" {
			t.Fatalf("round %d: password step %d %s", round, code, loc)
		}
		var wg sync.WaitGroup
		for range 12 {
			wg.Add(1)
			go func() { defer wg.Done(); attacker.post("/ui/login/code", url.Values{"code": {wrong}}) }()
		}
		wg.Wait()
	}
	waitRecord(t, srv, 30*time.Second, "ban of "+src, banned("address", src))
	checked := len(records(srv, fromSrc(src, "webui: second factor failed")))
	if checked != 10 {
		t.Fatalf("%d codes checked for %s, want 10 (five per pending sign-in, the address's threshold)", checked, src)
	}
	if code, _ := attacker.password(user, pass); code != http.StatusUnauthorized {
		t.Fatalf("the right password from the banned address: %d", code)
	}
	// The owner, elsewhere, is not locked out.
	if code, loc := newWebClient(t, srv, "127.0.0.80").password(user, pass); code != http.StatusSeeOther || loc != "/ui/login/code" {
		t.Fatalf("owner after the attack: %d %s", code, loc)
	}
}

// TestAccountPageBrowser (issue 18, self-service): on /ui/account/ a user
// adds an SSH public key (then OpenSSH sftp logs in with it) and removes it
// (then it does not), sees the quota, and changes the password: the old
// one is asked for, a weak new one is refused, the user's other browser
// session ends, and WebDAV refuses the old password at once although a
// client had just used it (the verified-password cache dies with the hash).
func TestAccountPageBrowser(t *testing.T) {
	ctx := testbrowser.New(t, "status of 400", "status of 403")
	srv := StartServer(t)
	user, pass := "sv"+RandomName(), "Marble-Falcon-"+RandomName()
	if _, err := srv.CLIInput(t, pass+"\n", "user", "add", user, "--password-stdin", "--quota", "5M"); err != nil {
		t.Fatal(err)
	}
	other := newWebClient(t, srv, "127.0.0.90")
	if code, loc := other.password(user, pass); code != http.StatusSeeOther || loc != "/ui/files/" {
		t.Fatalf("other session: %d %s", code, loc)
	}
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "207" {
		t.Fatalf("WebDAV with the password: %s", c)
	}
	if err := browserLogin(ctx, srv, user, pass, "account-link"); err != nil {
		t.Fatal(err)
	}
	key := GenerateKey(t)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("account-link")),
		chromedp.WaitVisible(chromedp.ID("key-add")),
		chromedp.SetValue(chromedp.ID("key-line"), strings.TrimSpace(string(pub))),
		chromedp.Click(chromedp.ID("key-add-submit")),
		chromedp.WaitVisible(chromedp.ID("keys")),
	); err != nil {
		t.Fatalf("add key: %v\n%s", err, srv.Log())
	}
	if usage, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("usage"))); err != nil || !strings.Contains(usage, "of 5.0 MiB") {
		t.Fatalf("usage %q: %v", usage, err)
	}
	if out, err := srv.SFTPBatch(t, user, key, "ls\n"); err != nil {
		t.Fatalf("sftp with the key added in the browser: %v %s", err, out)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#keys .key-del")),
		chromedp.WaitVisible(chromedp.ID("no-keys")),
	); err != nil {
		t.Fatalf("remove key: %v", err)
	}
	if out, err := srv.SFTPBatch(t, user, key, "ls\n"); err == nil {
		t.Fatalf("sftp with the removed key: %s", out)
	}

	newPW := "Granite-Orchid-" + RandomName()
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("pw-old"), pass),
		chromedp.SendKeys(chromedp.ID("pw-new"), "password1"),
		chromedp.SendKeys(chromedp.ID("pw-new2"), "password1"),
		chromedp.Click(chromedp.ID("password-submit")),
		chromedp.WaitVisible(chromedp.ID("error")),
	); err != nil {
		t.Fatalf("weak new password: %v", err)
	}
	if msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error"))); !strings.Contains(msg, "too short") && !strings.Contains(msg, "common") {
		t.Fatalf("weak password message %q", msg)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("pw-old"), pass),
		chromedp.SendKeys(chromedp.ID("pw-new"), newPW),
		chromedp.SendKeys(chromedp.ID("pw-new2"), newPW),
		chromedp.Click(chromedp.ID("password-submit")),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	); err != nil {
		t.Fatalf("change password: %v\n%s", err, srv.Log())
	}
	if code, _ := other.get("/ui/files/"); code != http.StatusSeeOther {
		t.Fatalf("the other browser session after the change: %d", code)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+"/ui/files/"), chromedp.WaitVisible(chromedp.ID("logout"))); err != nil {
		t.Fatalf("this session after the change: %v", err)
	}
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "401" {
		t.Fatalf("WebDAV with the old password: %s", c)
	}
	if c := httpCode(t, srv, user, newPW, "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); c != "207" {
		t.Fatalf("WebDAV with the new password: %s", c)
	}
	if strings.Contains(srv.Log(), newPW) {
		t.Fatal("the new password is in the server log")
	}
}
