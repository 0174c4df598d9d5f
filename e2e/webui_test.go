package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	testbrowser "github.com/securefsd/securefsd/internal/testutil/browser"
)

// webuiBrowser starts headless Chromium (Debian's /usr/bin/chromium) with a
// fresh profile and returns a tab context with a 3-minute budget. Console
// errors and exceptions (CSP violations included) fail the test.
func webuiBrowser(t *testing.T) context.Context {
	t.Helper()
	return testbrowser.New(t)
}

// webuiOutDir is where screenshots go: $SECUREFSD_TEST_OUT, else a temp dir.
func webuiOutDir(t *testing.T) string {
	t.Helper()
	return testbrowser.OutDir(t)
}

// webuiCheckPNG fails unless b is a PNG of at least w×h with enough
// distinct colours to be a rendered page (not blank, not an error screen).
func webuiCheckPNG(t *testing.T, b []byte, w, h int) {
	t.Helper()
	testbrowser.CheckPNG(t, b, w, h)
}

// TestWebUIBrowser drives the real binary's browser client with Chromium:
// log in, upload through the file input, see the file listed, download it
// and compare bytes, rename, delete, log out.
func TestWebUIBrowser(t *testing.T) {
	ctx := webuiBrowser(t)
	srv := StartServer(t)
	user, pass := "web"+RandomName(), "pw-"+RandomName()
	srv.AddUser(t, user, pass)
	up := RandomFile(t, 2<<20+77)
	upName := filepath.Base(up)
	row := func(name string) chromedp.CSS { return chromedp.CSS(`tr[data-name="` + name + `"]`) }

	// A browser GET of the WebDAV root lands on the login page.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("upload-form")),
	); err != nil {
		t.Fatalf("login: %v\n%s", err, srv.Log())
	}
	if err := chromedp.Do(ctx,
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{up}),
		chromedp.Click(chromedp.ID("upload-submit")),
		chromedp.WaitVisible(row(upName)),
	); err != nil {
		t.Fatalf("upload: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(row(upName)))
	if err != nil || !strings.Contains(text, "2.0 MiB") {
		t.Errorf("row text %q, %v", text, err)
	}
	// The same file over WebDAV, and only ciphertext on disk.
	got := filepath.Join(t.TempDir(), "via-dav")
	if out, err := srv.Curl(t, user, pass, "-f", "-o", got, srv.DAVURL+"/"+upName); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	SameFile(t, up, got)
	AssertNoPlaintext(t, srv.DataDir, up)

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	testbrowser.SaveScreenshot(t, shot, "e2e-webui-file-list.png", 800, 400)

	SameFile(t, up, testbrowser.Download(t, ctx, `tr[data-name="`+upName+`"] td.name a`))

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-name="`+upName+`"] a.rename`)),
		chromedp.WaitVisible(chromedp.ID("rename-form")),
		chromedp.SetValue(chromedp.ID("newname"), "renamed.bin"),
		chromedp.Click(chromedp.ID("rename-submit")),
		chromedp.WaitVisible(row("renamed.bin")),
		chromedp.WaitNotPresent(row(upName)),
	); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-name="renamed.bin"] a.delete`)),
		chromedp.WaitVisible(chromedp.ID("delete-form")),
		chromedp.Click(chromedp.ID("delete-submit")),
		chromedp.WaitVisible(chromedp.ID("empty")),
	); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if out, err := srv.Curl(t, user, pass, "-o", "/dev/null", "-w", "%{http_code}", srv.DAVURL+"/renamed.bin"); err != nil || out != "404" {
		t.Errorf("deleted file over WebDAV: %q %v", out, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.Navigate(srv.DAVURL+"/ui/files/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
	); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

// TestWebUIWebDAVUnaffected: WebDAV clients (no Accept: text/html) still get
// WebDAV at the root, and the UI's pages carry the security headers.
func TestWebUIWebDAVUnaffected(t *testing.T) {
	srv := StartServer(t)
	user, pass := "dav"+RandomName(), "pw-"+RandomName()
	srv.AddUser(t, user, pass)
	out, err := srv.Curl(t, user, pass, "-X", "PROPFIND", "-H", "Depth: 0", "-o", "/dev/null", "-w", "%{http_code}", srv.DAVURL+"/")
	if err != nil || out != "207" {
		t.Errorf("PROPFIND /: %q %v", out, err)
	}
	out, err = srv.Curl(t, "", "", "-D", "-", "-o", "/dev/null", srv.DAVURL+"/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"content-security-policy: default-src 'none'", "x-frame-options: DENY", "referrer-policy: no-referrer"} {
		if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
			t.Errorf("login page headers lack %q:\n%s", want, out)
		}
	}
}
