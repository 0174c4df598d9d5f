package e2e

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// webuiBrowser starts headless Chromium (Debian's /usr/bin/chromium) with a
// fresh profile and returns a tab context with a 3-minute budget. Console
// errors and exceptions (CSP violations included) fail the test.
func webuiBrowser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a browser; skipped with -short")
	}
	exe := "/usr/bin/chromium"
	if _, err := os.Stat(exe); err != nil {
		exe = NeedTool(t, "chromium")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.IgnoreCertErrors, // the server's self-signed certificate
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 800),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	var mu sync.Mutex
	var problems []string
	done := make(chan struct{})
	console := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("browser console: %s", p)
		}
	})
	return tctx
}

// webuiOutDir is where screenshots go: $SECUREFSD_TEST_OUT, else a temp dir.
func webuiOutDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SECUREFSD_TEST_OUT"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// webuiCheckPNG fails unless b is a PNG of at least w×h with enough
// distinct colours to be a rendered page (not blank, not an error screen).
func webuiCheckPNG(t *testing.T, b []byte, w, h int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	r := img.Bounds()
	if r.Dx() < w || r.Dy() < h {
		t.Fatalf("screenshot is %dx%d, want at least %dx%d", r.Dx(), r.Dy(), w, h)
	}
	colours := map[[4]uint32]bool{}
	for y := r.Min.Y; y < r.Max.Y; y += 3 {
		for x := r.Min.X; x < r.Max.X; x += 3 {
			cr, cg, cb, ca := img.At(x, y).RGBA()
			colours[[4]uint32{cr >> 8, cg >> 8, cb >> 8, ca >> 8}] = true
		}
	}
	if len(colours) < 20 {
		t.Fatalf("screenshot has only %d colours: nothing rendered?", len(colours))
	}
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
	out := filepath.Join(webuiOutDir(t), "e2e-webui-file-list.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	webuiCheckPNG(t, shot, 800, 400)

	dlDir := t.TempDir()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		yes := true
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior:      browser.SetDownloadBehaviorBehaviorAllowAndName,
			DownloadPath:  dlDir,
			EventsEnabled: &yes,
		})
		return err
	})); err != nil {
		t.Fatalf("download behaviour: %v", err)
	}
	ev, err := chromedp.Run(ctx, chromedp.WaitEvent(browser.DownloadProgress,
		func(e browser.EventDownloadProgress) bool {
			return e.State == browser.DownloadProgressStateCompleted || e.State == browser.DownloadProgressStateCanceled
		},
		chromedp.Click(chromedp.CSS(`tr[data-name="`+upName+`"] td.name a`))))
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if ev.State != browser.DownloadProgressStateCompleted {
		t.Fatalf("download state %s", ev.State)
	}
	SameFile(t, up, filepath.Join(dlDir, ev.GUID))

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
