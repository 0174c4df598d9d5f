package webui

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	testbrowser "github.com/securefsd/securefsd/internal/testutil/browser"
	"github.com/securefsd/securefsd/internal/users"
)

// newBrowser starts a headless Chromium with a fresh profile and returns a
// tab context. Console errors (CSP violations, script exceptions) are
// collected and fail the test at the end.
// Messages containing one of allow are expected (e.g. a deliberate 409).
func newBrowser(t *testing.T, allow ...string) context.Context {
	t.Helper()
	return testbrowser.New(t, allow...)
}

// testOutDir is where screenshots go: $SECUREFSD_TEST_OUT if set, else a temp dir.
func testOutDir(t *testing.T) string {
	t.Helper()
	return testbrowser.OutDir(t)
}

// checkPNG fails unless b is a PNG of at least w×h with enough distinct
// colours to be a rendered page rather than a blank or error screen.
func checkPNG(t testing.TB, b []byte, w, h int) {
	t.Helper()
	testbrowser.CheckPNG(t, b, w, h)
}

func TestBrowserEndToEnd(t *testing.T) {
	ctx := newBrowser(t)
	f := newFixture(t)
	home := f.addUser("alice", "correct horse battery", users.PermAll, 0)
	if err := home.Mkdir("/Projects", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, home, "/notes.txt", []byte("some notes"))
	writeFile(t, home, "/<img src=x onerror=alert(1)>.html", []byte("<script>alert(1)</script>"))

	// Count the uploads that came through app.js (XHR with the CSRF header).
	var xhrUploads atomic.Int32
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/ui/upload") && r.Header.Get("X-CSRF-Token") != "" && wantsJSON(r) {
			xhrUploads.Add(1)
		}
		inner.ServeHTTP(w, r)
	})

	src := t.TempDir()
	payload := make([]byte, 1<<20+123)
	_, _ = rand.Read(payload)
	up1 := filepath.Join(src, "holiday photo.bin")
	up2 := filepath.Join(src, "second.txt")
	if err := os.WriteFile(up1, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(up2, []byte("second file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(up2, past, past); err != nil {
		t.Fatal(err)
	}
	row := func(name string) chromedp.CSS { return chromedp.CSS(`tr[data-name="` + name + `"]`) }

	// Log in (the root redirects to the login form).
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("upload-form")),
		chromedp.WaitVisible(row("notes.txt")),
	); err != nil {
		t.Fatalf("login: %v", err)
	}

	// Upload two files through the file input; app.js sends them with XHR.
	if err := chromedp.Do(ctx,
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{up1, up2}),
		chromedp.Click(chromedp.ID("upload-submit")),
		chromedp.WaitVisible(row("holiday photo.bin")),
		chromedp.WaitVisible(row("second.txt")),
	); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if got := readAll(t, home, "/holiday photo.bin"); !bytes.Equal(got, payload) {
		t.Fatalf("stored %d bytes, want %d", len(got), len(payload))
	}
	// app.js sends lastModified: the stored file keeps the local date.
	srcInfo, _ := os.Stat(up2)
	if fi, err := home.Stat("/second.txt"); err != nil || !fi.ModTime().Equal(srcInfo.ModTime().Truncate(time.Millisecond)) {
		t.Errorf("second.txt modified %v, want %v (%v)", fi.ModTime(), srcInfo.ModTime(), err)
	}
	if n := xhrUploads.Load(); n != 1 {
		t.Errorf("%d XHR uploads, want 1 (app.js did not run?)", n)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("table.files")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "1.0 MiB") || !strings.Contains(text, "<img src=x onerror=alert(1)>.html") {
		t.Errorf("list text: %q", text)
	}
	flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".flash.ok")))
	if err != nil || !strings.Contains(flash, "Uploaded 2 files.") {
		t.Errorf("flash %q, %v", flash, err)
	}
	alerted, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('script').length`))
	if err != nil || alerted != 1 {
		t.Errorf("page holds %d script elements (%v), want only app.js", alerted, err)
	}

	// Screenshot of the file list.
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	testbrowser.SaveScreenshot(t, shot, "webui-file-list.png", 800, 400)

	// Download it through the link and compare bytes.
	got, err := os.ReadFile(testbrowser.Download(t, ctx, `tr[data-name="holiday photo.bin"] td.name a`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", len(got), len(payload))
	}

	// Rename through the rename page.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-name="second.txt"] a.rename`)),
		chromedp.WaitVisible(chromedp.ID("rename-form")),
		chromedp.SetValue(chromedp.ID("newname"), "renamed.txt"),
		chromedp.Click(chromedp.ID("rename-submit")),
		chromedp.WaitVisible(row("renamed.txt")),
		chromedp.WaitNotPresent(row("second.txt")),
	); err != nil {
		t.Fatalf("rename: %v", err)
	}
	// New folder, then into it via its link and back via the breadcrumb.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("mkdir-name"), "Fresh folder"),
		chromedp.Click(chromedp.ID("mkdir-submit")),
		chromedp.WaitVisible(row("Fresh folder")),
		chromedp.Click(chromedp.CSS(`tr[data-name="Fresh folder"] td.name a`)),
		chromedp.WaitVisible(chromedp.ID("empty")),
		chromedp.Click(chromedp.CSS(`.crumbs a:first-child`)),
		chromedp.WaitVisible(row("renamed.txt")),
	); err != nil {
		t.Fatalf("mkdir/navigate: %v", err)
	}
	// Delete with the confirmation page.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-name="renamed.txt"] a.delete`)),
		chromedp.WaitVisible(chromedp.ID("delete-form")),
		chromedp.Click(chromedp.ID("delete-submit")),
		chromedp.WaitVisible(row("holiday photo.bin")),
		chromedp.WaitNotPresent(row("renamed.txt")),
	); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := home.Stat("/renamed.txt"); err == nil {
		t.Errorf("renamed.txt still stored")
	}
	// Sort by size, largest first, without JavaScript involved (links).
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("sort-size")),
		chromedp.WaitVisible(chromedp.CSS(`th[aria-sort="ascending"] #sort-size`)),
		chromedp.Click(chromedp.ID("sort-size")),
		chromedp.WaitVisible(chromedp.CSS(`th[aria-sort="descending"] #sort-size`)),
	); err != nil {
		t.Fatalf("sort: %v", err)
	}
	first, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`table.files tbody tr.file`), "data-name"))
	if err != nil || first.Value != "holiday photo.bin" {
		t.Errorf("largest file first: %+v %v", first, err)
	}

	// Log out; the list is no longer reachable.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.Navigate(f.srv.URL+"/ui/files/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
	); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if n := f.ui.SessionCount(); n != 0 {
		t.Errorf("%d sessions after logout", n)
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestBrowserWithoutJavaScript: with scripts disabled, the plain forms still
// log in, upload (multipart form post), sort, download, make folders,
// rename, delete (confirmation page) and log out.
func TestBrowserWithoutJavaScript(t *testing.T) {
	ctx := newBrowser(t, "status of 409")
	f := newFixture(t)
	home := f.addUser("bob", "no scripts please", users.PermAll, 0)
	var xhrUploads, formUploads atomic.Int32
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/ui/upload") {
			if wantsJSON(r) {
				xhrUploads.Add(1)
			} else {
				formUploads.Add(1)
			}
		}
		inner.ServeHTTP(w, r)
	})
	src := filepath.Join(t.TempDir(), "plain form.txt")
	payload := bytes.Repeat([]byte("no javascript needed\n"), 5000)
	if err := os.WriteFile(src, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	row := func(name string) chromedp.CSS { return chromedp.CSS(`tr[data-name="` + name + `"]`) }
	if err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}),
		chromedp.Navigate(f.srv.URL+"/ui/login"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), "no scripts please"),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("upload-form")),
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{src}),
		chromedp.Click(chromedp.ID("upload-submit")),
		chromedp.WaitVisible(row("plain form.txt")),
		// Again: refused without "Replace existing", accepted with it.
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{src}),
		chromedp.Click(chromedp.ID("upload-submit")),
		chromedp.WaitVisible(chromedp.ID("error")),
		chromedp.Navigate(f.srv.URL+"/ui/files/"),
		chromedp.WaitVisible(chromedp.ID("upload-form")),
		chromedp.Click(chromedp.ID("upload-overwrite")),
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{src}),
		chromedp.Click(chromedp.ID("upload-submit")),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
		chromedp.SendKeys(chromedp.ID("mkdir-name"), "made without js"),
		chromedp.Click(chromedp.ID("mkdir-submit")),
		chromedp.WaitVisible(row("made without js")),
		chromedp.Click(chromedp.ID("sort-name")),
		chromedp.WaitVisible(chromedp.CSS(`th[aria-sort="descending"] #sort-name`)),
		chromedp.Click(chromedp.CSS(`tr[data-name="plain form.txt"] a.rename`)),
		chromedp.WaitVisible(chromedp.ID("rename-form")),
		chromedp.SetValue(chromedp.ID("newname"), "renamed form.txt"),
		chromedp.Click(chromedp.ID("rename-submit")),
		chromedp.WaitVisible(row("renamed form.txt")),
	); err != nil {
		t.Fatalf("no-JS flow: %v", err)
	}
	if xhrUploads.Load() != 0 || formUploads.Load() != 3 {
		t.Errorf("uploads: %d XHR, %d form; want 0 and 3", xhrUploads.Load(), formUploads.Load())
	}
	if got := readAll(t, home, "/renamed form.txt"); !bytes.Equal(got, payload) {
		t.Errorf("stored %d bytes, want %d", len(got), len(payload))
	}
	dlDir := t.TempDir()
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dlDir, EventsEnabled: ptrTo(true),
		})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	ev, err := chromedp.Run(ctx, chromedp.WaitEvent(browser.DownloadProgress,
		func(e browser.EventDownloadProgress) bool {
			return e.State == browser.DownloadProgressStateCompleted || e.State == browser.DownloadProgressStateCanceled
		},
		chromedp.Click(chromedp.CSS(`tr[data-name="renamed form.txt"] td.name a`))))
	if err != nil || ev.State != browser.DownloadProgressStateCompleted {
		t.Fatalf("download: %v %v", ev.State, err)
	}
	if got, err := os.ReadFile(filepath.Join(dlDir, ev.GUID)); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("downloaded %d bytes (%v), want %d", len(got), err, len(payload))
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-name="made without js"] a.delete`)),
		chromedp.WaitVisible(chromedp.ID("delete-form")),
		chromedp.Click(chromedp.ID("delete-submit")),
		chromedp.WaitVisible(row("renamed form.txt")),
		chromedp.WaitNotPresent(row("made without js")),
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
	); err != nil {
		t.Fatalf("delete/logout: %v", err)
	}
	if _, err := home.Stat("/made without js"); err == nil {
		t.Error("folder not deleted")
	}
}

// gatedBody passes the first n bytes of a request body, then blocks until
// release is closed: the browser's upload stalls part-way, deterministically.
type gatedBody struct {
	io.ReadCloser
	n       int64
	release <-chan struct{}
}

func (g *gatedBody) Read(p []byte) (int, error) {
	if g.n <= 0 {
		<-g.release
		return g.ReadCloser.Read(p)
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	n, err := g.ReadCloser.Read(p)
	g.n -= int64(n)
	return n, err
}

// TestBrowserUploadProgress: while an upload is in flight the page shows a
// progress bar between 0 and 100% (XHR upload progress), then the list.
func TestBrowserUploadProgress(t *testing.T) {
	ctx := newBrowser(t)
	f := newFixture(t)
	home := f.addUser("carol", "progress bar", users.PermAll, 0)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	inner := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/ui/upload") {
			r.Body = &gatedBody{ReadCloser: r.Body, n: 1 << 20, release: release}
		}
		inner.ServeHTTP(w, r)
	})
	src := filepath.Join(t.TempDir(), "large.bin")
	payload := make([]byte, 48<<20) // well beyond the socket buffers
	_, _ = rand.Read(payload[:1<<20])
	if err := os.WriteFile(src, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.srv.URL+"/ui/login"),
		chromedp.SendKeys(chromedp.ID("username"), "carol"),
		chromedp.SendKeys(chromedp.ID("password"), "progress bar"),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("upload-form")),
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{src}),
		chromedp.Click(chromedp.ID("upload-submit")),
	); err != nil {
		t.Fatalf("start upload: %v", err)
	}
	pct, err := chromedp.Run(ctx, chromedp.Poll[int](`(() => {
		const p = document.getElementById('upload-progress');
		return !p.hidden && p.value > 0 && p.value < 100 ? p.value : 0;
	})()`, chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		t.Fatalf("no progress shown: %v", err)
	}
	status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("upload-status")))
	t.Logf("progress %d%%: %q", pct, status)
	if !strings.Contains(status, "% of 48 MiB") {
		t.Errorf("status text %q", status)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(testOutDir(t), "webui-upload-progress.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, shot, 800, 400)
	once.Do(func() { close(release) })
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-name="large.bin"]`))); err != nil {
		t.Fatalf("upload did not finish: %v", err)
	}
	if got := readAll(t, home, "/large.bin"); !bytes.Equal(got, payload) {
		t.Fatalf("stored %d bytes, want %d", len(got), len(payload))
	}
}
