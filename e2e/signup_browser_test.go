package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	testbrowser "github.com/securefsd/securefsd/internal/testutil/browser"
)

// httpCode runs curl and returns the status code it saw.
func httpCode(t *testing.T, srv *Server, user, pass string, args ...string) string {
	t.Helper()
	out, _ := srv.Curl(t, user, pass, append([]string{"-o", "/dev/null", "-w", "\n%{http_code}"}, args...)...)
	// The status is the last line. An upload the server refuses part-way
	// (507 over the quota) is answered and the connection closed while
	// curl still sends, and curl may add that it saw the error body cut
	// ("transfer closed with N bytes remaining"): the status is what the
	// tests check.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestSignupInviteBrowser (issue 18): an invitation made with the CLI
// through the running server's admin socket is redeemed in headless
// Chromium; a weak password is refused on the way; the new account then
// works over WebDAV with curl, with exactly the invitation's rights; the
// used link says so; an expired one says so; --group is refused.
func TestSignupInviteBrowser(t *testing.T) {
	ctx := testbrowser.New(t, "status of 400", "status of 410") // the weak password, the used link
	srv := StartServer(t, WithServeArgs("--signup", "invite"))
	// The invitation puts the account in a group, and so in its folder.
	if _, err := srv.CLI(t, "invite", "create", "--group", "staff"); err == nil || !strings.Contains(err.Error(), "group does not exist") {
		t.Fatalf("invite create --group of no group: %v", err)
	}
	for _, args := range [][]string{{"group", "add", "staff"}, {"folder", "add", "cases"}, {"folder", "grant", "cases", "@staff", "--perms", "list,download"}} {
		if _, err := srv.CLI(t, args...); err != nil {
			t.Fatal(args, err)
		}
	}
	out, err := srv.CLI(t, "invite", "create", "--perms", "list,download,upload", "--quota", "10M", "--group", "staff", "--public-url", srv.DAVURL)
	if err != nil {
		t.Fatal(err)
	}
	link := strings.TrimSpace(out)
	if !strings.HasPrefix(link, srv.DAVURL+"/ui/signup?token=") {
		t.Fatalf("link %q", link)
	}
	user, pass := "inv"+RandomName(), "Tidal-Lantern-"+RandomName()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("signup-form")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), "hunter2"),
		chromedp.SendKeys(chromedp.ID("password2"), "hunter2"),
		chromedp.Click(chromedp.ID("signup-submit")),
		chromedp.WaitVisible(chromedp.ID("error")),
	); err != nil {
		t.Fatalf("weak sign-up: %v\n%s", err, srv.Log())
	}
	if msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error"))); err != nil || !strings.Contains(msg, "too short") {
		t.Fatalf("weak password message %q: %v", msg, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("password"), pass),
		chromedp.SetValue(chromedp.ID("password2"), pass),
		chromedp.Click(chromedp.ID("signup-submit")),
		chromedp.WaitVisible(chromedp.ID("signup-done")),
		chromedp.Click(chromedp.ID("signin-link")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("logout")),
	); err != nil {
		t.Fatalf("sign-up and sign-in: %v\n%s", err, srv.Log())
	}

	// The account over WebDAV with a real client: upload allowed, delete
	// not (not among the invitation's rights), the quota applies.
	small := RandomFile(t, 100<<10)
	if c := httpCode(t, srv, user, pass, "-T", small, srv.DAVURL+"/a.bin"); c != "201" {
		t.Fatalf("PUT as the invited user: %s\n%s", c, srv.Log())
	}
	if c := httpCode(t, srv, user, pass, "-X", "DELETE", srv.DAVURL+"/a.bin"); c != "403" {
		t.Fatalf("DELETE without the right: %s", c)
	}
	if c := httpCode(t, srv, user, pass, "-X", "PROPFIND", "-H", "Depth: 1", srv.DAVURL+"/Shared/cases/"); c != "207" {
		t.Fatalf("PROPFIND of the group's folder: %s", c)
	}
	big := RandomFile(t, 11<<20)
	if c := httpCode(t, srv, user, pass, "-T", big, srv.DAVURL+"/big.bin"); c != "507" {
		t.Fatalf("PUT over the invitation's quota: %s", c)
	}

	// Used: the page says so, and no second account comes of it.
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("error"))); err != nil {
		t.Fatal(err)
	}
	if msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error"))); err != nil || !strings.Contains(msg, "already been used") {
		t.Fatalf("used link says %q: %v", msg, err)
	}
	list, err := srv.CLI(t, "invite", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ivs []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		UsedBy string `json:"used_by"`
	}
	if err := json.Unmarshal([]byte(list), &ivs); err != nil || len(ivs) != 1 || ivs[0].State != "used" || ivs[0].UsedBy != user {
		t.Fatalf("invite list: %v %s", err, list)
	}

	// Expired: a one-second invitation, looked at after its second.
	out, err = srv.CLI(t, "invite", "create", "--expires", "1s", "--public-url", srv.DAVURL)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the expiry is the point; nothing races it
	if body, _ := srv.Curl(t, "", "", strings.TrimSpace(out)); !strings.Contains(body, "This invitation has expired") {
		t.Fatalf("expired link page: %s", body)
	}
	if c := httpCode(t, srv, "", "", strings.TrimSpace(out)); c != "410" {
		t.Fatalf("expired link: %s", c)
	}
	// Revoked: the link answers 404.
	out, err = srv.CLI(t, "invite", "create", "--public-url", srv.DAVURL)
	if err != nil {
		t.Fatal(err)
	}
	list, _ = srv.CLI(t, "invite", "list", "--json")
	_ = json.Unmarshal([]byte(list), &ivs)
	if _, err := srv.CLI(t, "invite", "revoke", ivs[len(ivs)-1].ID); err != nil {
		t.Fatal(err)
	}
	if c := httpCode(t, srv, "", "", strings.TrimSpace(out)); c != "404" {
		t.Fatalf("revoked link: %s", c)
	}
}

// adminFetch POSTs a form to the admin page from the page's own origin, as
// a script would, with or without the session's CSRF token, and returns
// the status.
func adminFetch(ctx context.Context, action, form string, withCSRF bool) (int, error) {
	csrf := `''`
	if withCSRF {
		csrf = `'csrf=' + encodeURIComponent(document.querySelector('input[name=csrf]').value) + '&'`
	}
	js := fmt.Sprintf(`fetch('/ui/admin/%s', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: %s + %q}).then(r => r.status)`, action, csrf, form)
	return chromedp.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
}

// TestAdminPageBrowser (issue 18): an admin drives a user through add,
// set (read-only), disable, enable and delete on /ui/admin/ in headless
// Chromium, each effect checked with curl over WebDAV; a POST without the
// CSRF token is refused; a non-admin gets 404 for the page and its
// actions; sign-up is off by default; actions are logged with admin=NAME.
func TestAdminPageBrowser(t *testing.T) {
	ctx := testbrowser.New(t, "status of 40") // the deliberate 403/404s below
	srv := StartServer(t)
	for _, p := range []string{"/ui/signup", "/ui/signup?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if c := httpCode(t, srv, "", "", srv.DAVURL+p); c != "404" {
			t.Fatalf("sign-up by default: GET %s: %s", p, c)
		}
	}
	if c := httpCode(t, srv, "", "", "-d", "username=x&password=y", srv.DAVURL+"/ui/signup"); c != "404" {
		t.Fatalf("sign-up by default: POST: %s", c)
	}
	boss, bossPW := "boss"+RandomName(), "Amber-Kettle-"+RandomName()
	srv.AddUser(t, boss, bossPW, "--admin")
	pleb, plebPW := "pleb"+RandomName(), "Cobalt-Meadow-"+RandomName()
	srv.AddUser(t, pleb, plebPW)
	carl, carlPW := "carl"+RandomName(), "Velvet-Rocket-"+RandomName()
	row := fmt.Sprintf(`tr[data-user=%q]`, carl)
	small := RandomFile(t, 10<<10)

	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/login"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), boss),
		chromedp.SendKeys(chromedp.ID("password"), bossPW),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("admin-link")),
		chromedp.Click(chromedp.ID("admin-link")),
		chromedp.WaitVisible(chromedp.ID("user-add")),
		chromedp.SendKeys(chromedp.ID("add-name"), carl),
		chromedp.SendKeys(chromedp.ID("add-password"), carlPW),
		chromedp.Click(chromedp.ID("user-add-submit")),
		chromedp.WaitVisible(chromedp.CSS(row)),
	); err != nil {
		t.Fatalf("add in the browser: %v\n%s", err, srv.Log())
	}
	if c := httpCode(t, srv, carl, carlPW, "-T", small, srv.DAVURL+"/one.bin"); c != "201" {
		t.Fatalf("PUT as the added user: %s", c)
	}
	// A shared folder made and granted on the page reaches carl at once.
	frow := `tr[data-folder="team"]`
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("folder-name"), "team"),
		chromedp.Click(chromedp.ID("folder-add-submit")),
		chromedp.WaitVisible(chromedp.CSS(frow)),
		chromedp.Click(chromedp.CSS(frow+" details.grant summary")),
		chromedp.SendKeys(chromedp.CSS(frow+" form.folder-grant input[name=to]"), carl),
		chromedp.Click(chromedp.CSS(frow+" form.folder-grant button")),
		chromedp.WaitVisible(chromedp.CSS(frow+fmt.Sprintf(` li[data-to=%q]`, carl))),
	); err != nil {
		t.Fatalf("folder in the browser: %v\n%s", err, srv.Log())
	}
	if c := httpCode(t, srv, carl, carlPW, "-X", "PROPFIND", "-H", "Depth: 1", srv.DAVURL+"/Shared/team/"); c != "207" {
		t.Fatalf("PROPFIND of the granted folder: %s", c)
	}
	// The trail, filtered to carl, shows the upload.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/admin/audit?op=write&user="+carl),
		chromedp.WaitVisible(chromedp.CSS(`tr.audit-row[data-op="write"]`)),
		chromedp.Navigate(srv.DAVURL+"/ui/admin/"),
		chromedp.WaitVisible(chromedp.ID("user-add")),
	); err != nil {
		t.Fatalf("audit view in the browser: %v\n%s", err, srv.Log())
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	testbrowser.SaveScreenshot(t, shot, "e2e-admin-page.png", 800, 600)
	// An OpenSSH sftp session open before the changes (the key from the CLI).
	key := GenerateKey(t)
	if _, err := srv.CLI(t, "user", "key", "add", carl, key+".pub"); err != nil {
		t.Fatal(err)
	}
	sess := startSFTP(t, srv, carl, srv.SSHOpts(key))
	if out, ok := sess.run("put " + small + " sftp1.bin"); !ok {
		t.Fatalf("sftp put before the changes: %s", out)
	}
	if _, err := os.Stat(storePath(srv, carl, "sftp1.bin")); err != nil {
		t.Fatalf("the upload is not in the store: %v", err)
	}

	// Set: read-only.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+" details.set summary")),
		chromedp.Click(chromedp.CSS(row+" form.user-set input[name=read_only]")),
		chromedp.Click(chromedp.CSS(row+" form.user-set button")),
		chromedp.WaitVisible(chromedp.CSS(row+`[data-perms="list,download"]`)),
	); err != nil {
		t.Fatalf("set in the browser: %v\n%s", err, srv.Log())
	}
	if c := httpCode(t, srv, carl, carlPW, "-T", small, srv.DAVURL+"/two.bin"); c != "403" {
		t.Fatalf("PUT after read-only: %s", c)
	}
	if c := httpCode(t, srv, carl, carlPW, srv.DAVURL+"/one.bin"); c != "200" {
		t.Fatalf("GET after read-only: %s", c)
	}
	if out, ok := sess.run("-put " + small + " sftp2.bin"); !ok {
		t.Fatalf("the open sftp session ended on a rights change: %s", out)
	}
	if _, err := os.Stat(storePath(srv, carl, "sftp2.bin")); err == nil {
		t.Fatal("the open sftp session still uploads after read-only")
	}

	// Disable, then enable.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+" button.user-disable")),
		chromedp.WaitVisible(chromedp.CSS(row+`[data-status="disabled"]`)),
	); err != nil {
		t.Fatalf("disable in the browser: %v", err)
	}
	if c := httpCode(t, srv, carl, carlPW, srv.DAVURL+"/one.bin"); c != "401" {
		t.Fatalf("GET while disabled: %s", c)
	}
	if out, ok := sess.run("ls"); ok {
		t.Fatalf("the open sftp session survived the disable: %s", out)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+" button.user-enable")),
		chromedp.WaitVisible(chromedp.CSS(row+`[data-status="active"]`)),
	); err != nil {
		t.Fatalf("enable in the browser: %v", err)
	}
	if c := httpCode(t, srv, carl, carlPW, srv.DAVURL+"/one.bin"); c != "200" {
		t.Fatalf("GET after enable: %s", c)
	}

	// A POST without the CSRF token, from the admin's own page: refused.
	if st, err := adminFetch(ctx, "user-delete", "name="+carl, false); err != nil || st != 403 {
		t.Fatalf("delete without CSRF: %d %v", st, err)
	}
	if c := httpCode(t, srv, carl, carlPW, srv.DAVURL+"/one.bin"); c != "200" {
		t.Fatalf("the refused delete took effect: %s", c)
	}

	// Delete.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(row+" details.delete summary")),
		chromedp.Click(chromedp.CSS(row+" form.user-delete button")),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
	); err != nil {
		t.Fatalf("delete in the browser: %v", err)
	}
	if c := httpCode(t, srv, carl, carlPW, srv.DAVURL+"/one.bin"); c != "401" {
		t.Fatalf("GET after delete: %s", c)
	}

	// A non-admin: the page and its actions are not there.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), pleb),
		chromedp.SendKeys(chromedp.ID("password"), plebPW),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("logout")),
	); err != nil {
		t.Fatalf("non-admin login: %v", err)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#admin-link').length`)); err != nil || n != 0 {
		t.Fatalf("non-admin sees the admin link: %d %v", n, err)
	}
	if st, err := adminFetch(ctx, "user-add", "name=evil&password=Evil-Long-Password-1&admin=1", true); err != nil || st != 404 {
		t.Fatalf("non-admin POST: %d %v", st, err)
	}
	if st, err := adminFetch(ctx, "user-set", "name="+pleb+"&role=give", true); err != nil || st != 404 {
		t.Fatalf("non-admin self-promotion: %d %v", st, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+"/ui/admin/"), chromedp.WaitVisible(chromedp.ID("error"))); err != nil {
		t.Fatal(err)
	}
	if c, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#users').length`)); err != nil || c != 0 {
		t.Fatalf("non-admin sees the admin page: %d %v", c, err)
	}
	out, err := srv.CLI(t, "user", "list", "--json")
	var us []struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin"`
	}
	if err != nil || json.Unmarshal([]byte(out), &us) != nil {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	for _, u := range us {
		if u.Name == "evil" || (u.Admin && u.Name != boss) {
			t.Fatalf("after the non-admin's attempts: %s", out)
		}
	}

	// Every admin action logged with admin=NAME.
	log := srv.Log()
	for _, a := range []string{"user-add", "user-set", "user-disable", "user-enable", "user-delete"} {
		if !strings.Contains(log, `msg="webui: admin `+a+`" admin=`+boss) {
			t.Errorf("no log line of %s with admin=%s", a, boss)
		}
	}
	if !strings.Contains(log, `msg="webui: admin page refused" user=`+pleb) {
		t.Error("the non-admin's attempts were not logged")
	}
}

// TestSignupOpenCurl: `serve --signup open` with its default rights from
// the flags, driven with curl against the real binary: the account gets
// --signup-perms and --signup-quota and works over WebDAV; a bad --signup
// value stops the server from starting.
func TestSignupOpenCurl(t *testing.T) {
	srv := StartServer(t, WithServeArgs("--signup", "open", "--signup-perms", "list,download,upload", "--signup-quota", "1M"))
	jar := filepath.Join(t.TempDir(), "jar")
	page, err := srv.Curl(t, "", "", "-c", jar, srv.DAVURL+"/ui/signup")
	if err != nil || !strings.Contains(page, "list,download,upload, 1.0 MiB") {
		t.Fatalf("open sign-up page: %v\n%s", err, page)
	}
	m := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form token in %s", page)
	}
	user, pass := "open"+RandomName(), "Saffron-Glacier-"+RandomName()
	form := url.Values{"token": {m[1]}, "username": {user}, "password": {pass}, "password2": {pass}}.Encode()
	if c := httpCode(t, srv, "", "", "-b", jar, "--data", form, srv.DAVURL+"/ui/signup"); c != "200" {
		t.Fatalf("open sign-up: %s\n%s", c, srv.Log())
	}
	if c := httpCode(t, srv, user, pass, "-T", RandomFile(t, 10<<10), srv.DAVURL+"/small.bin"); c != "201" {
		t.Fatalf("PUT as the signed-up user: %s", c)
	}
	if c := httpCode(t, srv, user, pass, "-X", "DELETE", srv.DAVURL+"/small.bin"); c != "403" {
		t.Fatalf("DELETE without the right: %s", c)
	}
	if c := httpCode(t, srv, user, pass, "-T", RandomFile(t, 2<<20), srv.DAVURL+"/big.bin"); c != "507" {
		t.Fatalf("PUT over --signup-quota: %s", c)
	}
	// The trail names the account a sign-up made and the visitor's address.
	srv.Stop(t)
	signups := 0
	for _, r := range auditQuery(t, srv, "--op", "user.signup") {
		if r.User == user && r.Detail == "via=open" && r.Result == "ok" && strings.HasPrefix(r.Remote, "127.0.0.1:") {
			signups++
		}
	}
	if signups != 1 {
		t.Errorf("user.signup records for %s: %d", user, signups)
	}
	out, err := exec.Command(binPath, "--data-dir", filepath.Join(t.TempDir(), "d"), "serve", "--sftp-addr", "",
		"--dav-addr", "127.0.0.1:0", "--signup", "sometimes").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--signup: webui: sign-up mode \"sometimes\"") {
		t.Fatalf("serve --signup sometimes: %v\n%s", err, out)
	}
}
