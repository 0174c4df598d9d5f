package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestShareLinkBrowser makes a link in headless Chromium with the UI's
// "Share" action, fetches it with curl -OJ, and revokes it on the links
// page: the link then answers 404.
func TestShareLinkBrowser(t *testing.T) {
	ctx := webuiBrowser(t)
	srv := StartServer(t)
	user, pass := "web"+RandomName(), "pw-"+RandomName()
	srv.AddUser(t, user, pass)
	up := RandomFile(t, 300000)
	if out, err := srv.Curl(t, user, pass, "-f", "-T", up, srv.DAVURL+"/shared.bin"); err != nil {
		t.Fatalf("put: %v %s", err, out)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/login"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pass),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="shared.bin"] a.share`)),
		chromedp.Click(chromedp.CSS(`tr[data-name="shared.bin"] a.share`)),
		chromedp.WaitVisible(chromedp.ID("share-form")),
		chromedp.Click(chromedp.ID("share-submit")),
		chromedp.WaitVisible(chromedp.ID("share-url")),
	); err != nil {
		t.Fatalf("share in the browser: %v\n%s", err, srv.Log())
	}
	link, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("share-url")))
	if err != nil || !strings.Contains(link, "/s/") {
		t.Fatalf("link %q: %v", link, err)
	}
	dir := t.TempDir()
	if out, err := srv.Curl(t, "", "", "-f", "-OJ", "--output-dir", dir, link+"/download"); err != nil {
		t.Fatalf("curl -OJ: %v %s", err, out)
	}
	SameFile(t, up, filepath.Join(dir, "shared.bin"))
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.DAVURL+"/ui/links"),
		chromedp.WaitVisible(chromedp.CSS(`button.revoke`)),
		chromedp.Click(chromedp.CSS(`button.revoke`)),
		chromedp.WaitVisible(chromedp.ID("no-links")), // the page after the revoke
	); err != nil {
		t.Fatalf("revoke in the browser: %v", err)
	}
	out, _ := srv.Curl(t, "", "", "-o", "/dev/null", "-w", "%{http_code}", link)
	if strings.TrimSpace(out) != "404" {
		t.Fatalf("revoked link answered %s", out)
	}
}
