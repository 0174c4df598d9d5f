// Package browser starts headless Chromium for the web client's tests
// (internal/webui against an in-process server, e2e against the real
// binary). Only _test.go files import it.
package browser

import (
	"bytes"
	"context"
	cdpbrowser "github.com/chromedp/cdproto/browser"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's Chromium; scripts/test.sh installs it. Without
// it, chromium on $PATH is used; with neither the test fails.
const ChromiumPath = "/usr/bin/chromium"

// New starts a headless Chromium with a fresh profile and returns a tab
// context with a 3-minute budget. Console errors, exceptions and CSP
// violations fail the test when it ends, except messages containing one
// of allow (an expected error, e.g. a deliberate 409). Skipped with -short.
func New(t *testing.T, allow ...string) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a browser; skipped with -short")
	}
	exe := ChromiumPath
	if _, err := os.Stat(exe); err != nil {
		p, err := exec.LookPath("chromium")
		if err != nil {
			t.Fatalf("chromium is not installed (scripts/test.sh installs it): %v", err)
		}
		exe = p
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.IgnoreCertErrors, // the servers' self-signed certificates
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 800),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // start the browser without the timeout
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
				if slices.ContainsFunc(allow, func(a string) bool { return strings.Contains(m.Text, a) }) {
					continue
				}
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

// OutDir is where screenshots go: $SECUREFSD_TEST_OUT if set, else a
// temporary directory.
func OutDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SECUREFSD_TEST_OUT"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// CheckPNG fails unless b is a PNG of at least w×h with enough distinct
// colours to be a rendered page rather than a blank or error screen.
func CheckPNG(t testing.TB, b []byte, w, h int) {
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

// Download clicks the element css selects in the tab ctx, waits for the
// download it starts to finish and returns the downloaded file's path (in
// a temporary directory).
func Download(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	dir := t.TempDir()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		yes := true
		_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior:      cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName,
			DownloadPath:  dir,
			EventsEnabled: &yes,
		})
		return err
	})); err != nil {
		t.Fatalf("download behaviour: %v", err)
	}
	ev, err := chromedp.Run(ctx, chromedp.WaitEvent(cdpbrowser.DownloadProgress,
		func(e cdpbrowser.EventDownloadProgress) bool {
			return e.State == cdpbrowser.DownloadProgressStateCompleted || e.State == cdpbrowser.DownloadProgressStateCanceled
		},
		chromedp.Click(chromedp.CSS(css))))
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if ev.State != cdpbrowser.DownloadProgressStateCompleted {
		t.Fatalf("download state %s", ev.State)
	}
	return filepath.Join(dir, ev.GUID)
}

// SaveScreenshot writes shot to OutDir as name, logs where, and checks
// (CheckPNG) that it shows a rendered page of at least w×h.
func SaveScreenshot(t *testing.T, shot []byte, name string, w, h int) {
	t.Helper()
	out := filepath.Join(OutDir(t), name)
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	CheckPNG(t, shot, w, h)
}
