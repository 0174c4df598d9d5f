package webui

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/httpx"
	"github.com/securefsd/securefsd/internal/perm"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// linkFixture serves the UI and the link pages; alice owns a file, a
// folder tree and an inbox.
func linkFixture(t testing.TB, extra ...fixtureOpt) (*fixture, *shares.Manager, *vfs.FS) {
	f := newFixture(t, append([]fixtureOpt{func(u *users.Options, _ *Options) {
		u.Defender.AddrThreshold = 4
		u.Defender.UserThreshold = 100
	}}, extra...)...)
	m := shares.New(f.db, shares.Options{Now: f.clock.Now})
	mux := http.NewServeMux()
	mux.Handle(f.ui.Prefix(), f.ui)
	links, err := NewLinks(f.ui, m)
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(LinkPrefix, links)
	f.srv.Close()
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	fsys := f.addUser("alice", "alice-password-1", users.PermAll, 0)
	writeFile(t, fsys, "/report.pdf", bytes.Repeat([]byte("0123456789"), 1000))
	if err := fsys.Mkdir("/album", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir("/album/sub", 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fsys, "/album/a.jpg", []byte("picture a"))
	writeFile(t, fsys, "/album/sub/b.txt", []byte("text b"))
	writeFile(t, fsys, "/secret.txt", []byte("not shared"))
	if err := fsys.Mkdir("/inbox", 0o700); err != nil {
		t.Fatal(err)
	}
	return f, m, fsys
}

func mkLink(t testing.TB, m *shares.Manager, s shares.Spec) string {
	t.Helper()
	s.Owner = "alice"
	tok, _, err := m.Create(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return "/s/" + tok
}

func want404(t *testing.T, r resp, what string) {
	t.Helper()
	if r.StatusCode != http.StatusNotFound || !strings.Contains(r.body, "no longer valid") {
		t.Errorf("%s: %d, want the one 404 page", what, r.StatusCode)
	}
}

func TestLinkFileDownload(t *testing.T) {
	f, m, fsys := linkFixture(t)
	c := f.client()
	base := mkLink(t, m, shares.Spec{Path: "/report.pdf", Kind: shares.File, MaxDownloads: 2})
	page := c.get(base)
	if page.StatusCode != 200 || !strings.Contains(page.body, "report.pdf") || !strings.Contains(page.body, "/download") {
		t.Fatalf("page %d %s", page.StatusCode, page.body)
	}
	for k, v := range map[string]string{"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow", "X-Frame-Options": "DENY"} {
		if got := page.Header.Get(k); got != v {
			t.Errorf("%s: %q", k, got)
		}
	}
	if !strings.Contains(page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("CSP %q", page.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(page.body, "secret") || strings.Contains(page.body, "alice") {
		t.Errorf("page names other paths or the owner: %s", page.body)
	}
	// A partial range (the first half) does not count; the rest (resume) does.
	r1 := c.get(base+"/download", "Range", "bytes=0-4999")
	if r1.StatusCode != http.StatusPartialContent || len(r1.body) != 5000 {
		t.Fatalf("range: %d %d", r1.StatusCode, len(r1.body))
	}
	if !strings.Contains(r1.Header.Get("Content-Disposition"), `filename="report.pdf"`) {
		t.Errorf("disposition %q", r1.Header.Get("Content-Disposition"))
	}
	// An empty suffix range is unsatisfiable (RFC 9110 14.1.2), as on WebDAV.
	if r := c.get(base+"/download", "Range", "bytes=-0"); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("bytes=-0: %d, want 416", r.StatusCode)
	}
	ls, _ := m.List(context.Background(), "alice")
	if ls[0].Downloads != 0 {
		t.Fatalf("half a file counted: %d", ls[0].Downloads)
	}
	r2 := c.get(base+"/download", "Range", "bytes=5000-")
	if r2.StatusCode != http.StatusPartialContent || r1.body+r2.body != string(readAll(t, fsys, "/report.pdf")) {
		t.Fatal("resumed bytes differ")
	}
	ls, _ = m.List(context.Background(), "alice")
	if ls[0].Downloads != 1 {
		t.Fatalf("complete download counted %d", ls[0].Downloads)
	}
	if full := c.get(base + "/download"); full.StatusCode != 200 || len(full.body) != 10000 {
		t.Fatalf("full: %d", full.StatusCode)
	}
	want404(t, c.get(base), "used up")
	want404(t, c.get(base+"/download"), "used up download")

	// Deleted file, owner losing the right, owner disabled: 404.
	l2 := mkLink(t, m, shares.Spec{Path: "/secret.txt", Kind: shares.File})
	if r := c.get(l2 + "/download"); r.StatusCode != 200 || r.body != "not shared" {
		t.Fatalf("second link %d", r.StatusCode)
	}
	if err := f.db.Update(context.Background(), "alice", func(u *users.User) error { u.Perms = perm.All &^ perm.Download; return nil }); err != nil {
		t.Fatal(err)
	}
	want404(t, c.get(l2+"/download"), "owner without download")
	if err := f.db.Update(context.Background(), "alice", func(u *users.User) error { u.Perms = perm.All; u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	want404(t, c.get(l2), "owner disabled")
	if err := f.db.Update(context.Background(), "alice", func(u *users.User) error { u.Disabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove("/secret.txt"); err != nil {
		t.Fatal(err)
	}
	want404(t, c.get(l2), "file deleted")
	l3 := mkLink(t, m, shares.Spec{Path: "/report.pdf", Kind: shares.File, TTL: time.Hour})
	f.clock.Advance(time.Hour)
	want404(t, c.get(l3), "expired")
	want404(t, c.get("/s/"+strings.Repeat("A", shares.TokenLen)), "unknown token")
	want404(t, c.get("/s/nonsense/download"), "garbage token")
}

func TestLinkFolderAndZip(t *testing.T) {
	f, m, _ := linkFixture(t)
	c := f.client()
	base := mkLink(t, m, shares.Spec{Path: "/album", Kind: shares.Folder})
	page := c.get(base)
	if page.StatusCode != 200 || !strings.Contains(page.body, "a.jpg") || !strings.Contains(page.body, "sub/") || strings.Contains(page.body, "secret") {
		t.Fatalf("listing %d %s", page.StatusCode, page.body)
	}
	if r := c.get(base + "/file/a.jpg"); r.StatusCode != 200 || r.body != "picture a" {
		t.Fatalf("file: %d %q", r.StatusCode, r.body)
	}
	if r := c.get(base + "/file/sub/b.txt"); r.StatusCode != 200 || r.body != "text b" {
		t.Fatalf("nested file: %d %q", r.StatusCode, r.body)
	}
	// Confinement: ".." in every spelling stays inside the link's root.
	for _, p := range []string{"/file/../secret.txt", "/file/%2e%2e/secret.txt", "/file/sub/..%2f..%2fsecret.txt", "/file/%2E%2E%2Fsecret.txt", "/file//../../secret.txt"} {
		// (The test's ServeMux answers a raw ".." with a cleaning redirect,
		// which stays under /s/; davd hands the path over as is.)
		r := c.getRaw(base + p)
		if r.StatusCode == http.StatusTemporaryRedirect {
			r = c.get(r.Header.Get("Location"))
		}
		if r.StatusCode != http.StatusNotFound || strings.Contains(r.body, "not shared") {
			t.Errorf("%s escaped: %d %q", p, r.StatusCode, r.body)
		}
	}
	z := c.get(base + "/zip")
	if z.StatusCode != 200 || z.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("zip %d", z.StatusCode)
	}
	zr, err := zip.NewReader(strings.NewReader(z.body), int64(len(z.body)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, zf := range zr.File {
		if strings.HasSuffix(zf.Name, "/") {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		got[zf.Name] = b.String()
	}
	if len(got) != 2 || got["a.jpg"] != "picture a" || got["sub/b.txt"] != "text b" {
		t.Fatalf("zip holds %v", got)
	}
	ls, _ := m.List(context.Background(), "alice")
	if ls[0].Downloads != 3 { // two files and the zip
		t.Errorf("downloads %d", ls[0].Downloads)
	}
	if r := c.get(base + "/download"); r.StatusCode != 404 {
		t.Errorf("folder link /download: %d", r.StatusCode)
	}
}

func TestLinkUploadOnly(t *testing.T) {
	f, m, fsys := linkFixture(t)
	writeFile(t, fsys, "/inbox/old.txt", []byte("already there"))
	c := f.client()
	base := mkLink(t, m, shares.Spec{Path: "/inbox", Kind: shares.Folder, UploadOnly: true})
	page := c.get(base)
	if page.StatusCode != 200 || !strings.Contains(page.body, "Send files") || strings.Contains(page.body, "old.txt") {
		t.Fatalf("upload page %d %s", page.StatusCode, page.body)
	}
	send := func(files ...uploadFile) resp {
		ct, body := multipartBody(t, "", false, files...)
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+base+"/upload", body)
		req.Header.Set("Content-Type", ct)
		return c.do(req)
	}
	if r := send(uploadFile{"doc.pdf", []byte("one")}, uploadFile{"doc.pdf", []byte("two")}, uploadFile{"old.txt", []byte("new")}); r.StatusCode != 200 {
		t.Fatalf("upload: %d %s", r.StatusCode, r.body)
	}
	for name, want := range map[string]string{"/inbox/doc.pdf": "one", "/inbox/doc (1).pdf": "two", "/inbox/old.txt": "already there", "/inbox/old (1).txt": "new"} {
		if got := string(readAll(t, fsys, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if r := send(uploadFile{"../escape.txt", []byte("x")}); r.StatusCode != 200 {
		t.Fatalf("path in file name: %d", r.StatusCode)
	}
	if _, err := fsys.Stat("/escape.txt"); err == nil {
		t.Fatal("upload escaped the folder")
	}
	if got := string(readAll(t, fsys, "/inbox/escape.txt")); got != "x" {
		t.Fatalf("escape.txt kept as %q", got)
	}
	// The owner's quota applies: a drop past it is refused and nothing stays.
	if err := f.db.Update(context.Background(), "alice", func(u *users.User) error { u.QuotaBytes = 40000; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := send(uploadFile{"huge.bin", bytes.Repeat([]byte("z"), 100000)}); r.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("upload past the quota: %d", r.StatusCode)
	}
	if _, err := fsys.Stat("/inbox/huge.bin"); err == nil {
		t.Fatal("a refused upload left a file")
	}
	for _, p := range []string{"/zip", "/file/old.txt", "/download", "/file/doc.pdf"} {
		want404(t, c.get(base+p), "upload-only "+p)
	}
	if err := f.db.Update(context.Background(), "alice", func(u *users.User) error { u.Perms = perm.All &^ perm.Upload; return nil }); err != nil {
		t.Fatal(err)
	}
	want404(t, c.get(base), "owner without upload")
}

func TestLinkPasswordBanned(t *testing.T) {
	f, m, _ := linkFixture(t)
	c := f.client()
	base := mkLink(t, m, shares.Spec{Path: "/report.pdf", Kind: shares.File, Password: []byte("open sesame")})
	if r := c.get(base + "/download"); r.StatusCode != http.StatusUnauthorized || strings.Contains(r.body, "0123456789") {
		t.Fatalf("download without password: %d", r.StatusCode)
	}
	for i := range 4 {
		if r := c.post(base, url.Values{"password": {"guess"}}); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, r.StatusCode)
		}
	}
	if r := c.post(base, url.Values{"password": {"open sesame"}}); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password while banned: %d", r.StatusCode)
	}
	c2 := f.client()
	f.clock.Advance(time.Hour)
	r := c2.post(base, url.Values{"password": {"open sesame"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("right password: %d %s", r.StatusCode, r.body)
	}
	if d := c2.get(base + "/download"); d.StatusCode != 200 || len(d.body) != 10000 {
		t.Fatalf("download with grant: %d", d.StatusCode)
	}
	// The grant is for this link only.
	other := mkLink(t, m, shares.Spec{Path: "/report.pdf", Kind: shares.File, Password: []byte("other")})
	if d := c2.get(other + "/download"); d.StatusCode != http.StatusUnauthorized {
		t.Fatalf("grant reused on another link: %d", d.StatusCode)
	}
}

// The signed-in owner shares from the listing, sees the link once, lists
// and revokes it; the same CSRF rule as every form applies.
func TestLinkShareFromUI(t *testing.T) {
	f, m, _ := linkFixture(t)
	c := f.client()
	c.login("alice", "alice-password-1")
	list := c.get("/ui/files/")
	if !strings.Contains(list.body, `href="/ui/share/report.pdf"`) || !strings.Contains(list.body, `href="/ui/links"`) {
		t.Fatalf("no Share action: %s", list.body)
	}
	if r := c.get("/ui/share/report.pdf"); r.StatusCode != 200 || !strings.Contains(r.body, "share-form") {
		t.Fatalf("share form %d", r.StatusCode)
	}
	if r := c.post("/ui/share/report.pdf", url.Values{"csrf": {"forged"}, "expires": {"1d"}}); r.StatusCode == 200 {
		t.Fatalf("share without a valid CSRF token: %d", r.StatusCode)
	}
	r := c.postCSRF("/ui/share/report.pdf", url.Values{"expires": {"1d"}, "max_downloads": {"5"}})
	if r.StatusCode != 200 {
		t.Fatalf("share: %d %s", r.StatusCode, r.body)
	}
	i := strings.Index(r.body, f.srv.URL+"/s/") // no --public-url: the browser's own address
	if i < 0 {
		t.Fatalf("no link to %s/s/ in %s", f.srv.URL, r.body)
	}
	i += len(f.srv.URL)
	tok := r.body[i+3 : i+3+shares.TokenLen]
	anon := f.client()
	if d := anon.get("/s/" + tok + "/download"); d.StatusCode != 200 || len(d.body) != 10000 {
		t.Fatalf("link from the UI: %d", d.StatusCode)
	}
	ls, _ := m.List(context.Background(), "alice")
	if len(ls) != 1 || ls[0].MaxDownloads != 5 || ls[0].Expires.IsZero() {
		t.Fatalf("stored %+v", ls)
	}
	page := c.get("/ui/links")
	if page.StatusCode != 200 || !strings.Contains(page.body, ls[0].ID) || strings.Contains(page.body, tok) {
		t.Fatalf("links page %d (token shown: %v)", page.StatusCode, strings.Contains(page.body, tok))
	}
	// Another user cannot revoke alice's link.
	f.addUser("bob", "bob-password-12", users.PermAll, 0)
	b := f.client()
	b.login("bob", "bob-password-12")
	if r := b.postCSRF("/ui/revoke/"+ls[0].ID, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("bob revokes alice's link: %d", r.StatusCode)
	}
	if r := c.postCSRF("/ui/revoke/"+ls[0].ID, nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
	}
	want404(t, anon.get("/s/"+tok), "revoked from the UI")
	// A folder offers upload-only.
	if r := c.get("/ui/share/inbox"); !strings.Contains(r.body, "upload-only") {
		t.Fatal("folder form without upload-only")
	}
	r = c.postCSRF("/ui/share/inbox", url.Values{"upload_only": {"1"}})
	i = strings.Index(r.body, "/s/")
	if r.StatusCode != 200 || i < 0 {
		t.Fatalf("upload link: %d", r.StatusCode)
	}
	if p := anon.get(r.body[i : i+3+shares.TokenLen]); !strings.Contains(p.body, "Send files") {
		t.Fatalf("upload page: %s", p.body)
	}
}

// TestLinkPublicURL: with Options.PublicURL (serve --public-url) the link
// shown after sharing starts with it, not with the Host the request came
// with (a proxy's inside name).
func TestLinkPublicURL(t *testing.T) {
	f, _, _ := linkFixture(t, func(_ *users.Options, o *Options) { o.PublicURL = "https://files.example.org/" })
	c := f.client()
	c.login("alice", "alice-password-1")
	r := c.postCSRF("/ui/share/report.pdf", url.Values{"expires": {"1d"}})
	const base = "https://files.example.org/s/"
	i := strings.Index(r.body, base)
	if r.StatusCode != 200 || i < 0 || strings.Contains(r.body, f.srv.URL+"/s/") {
		t.Fatalf("share: %d, want a link starting %s: %s", r.StatusCode, base, r.body)
	}
	tok := r.body[i+len(base) : i+len(base)+shares.TokenLen]
	if d := f.client().get("/s/" + tok + "/download"); d.StatusCode != 200 {
		t.Fatalf("the shown link: %d", d.StatusCode)
	}
}

// TestAdminInvitePublicURL: an invitation made on the admin page is shown
// under Options.PublicURL too.
func TestAdminInvitePublicURL(t *testing.T) {
	f, l, _ := accountsFixture(t, SignupInvite, func(_ *users.Options, o *Options) { o.PublicURL = "https://files.example.org" })
	f.addUser("boss", "boss-password-1", users.PermAll, 0)
	if err := l.SetUser(context.Background(), "boss", admin.SetUserRequest{Admin: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	boss := f.client()
	boss.login("boss", "boss-password-1")
	r := boss.postCSRF("/ui/admin/invite-create", url.Values{"expires": {"2d"}})
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `value="https://files.example.org/ui/signup?token=`) {
		t.Fatalf("invite-create: %d, want the link under the public URL: %s", r.StatusCode, r.body)
	}
}

// TestLinkDamagedFile: a stored file damaged past its first chunk sends
// its good bytes, then stops (no plaintext from a chunk that fails
// authentication); the failure is logged at error level and the download
// is not counted. Both paths: read ahead (a whole large file) and in place
// (a small one).
func TestLinkDamagedFile(t *testing.T) {
	logs := testutil.NewLogs()
	f, m, fsys := linkFixture(t, func(_ *users.Options, o *Options) { o.Logger = logs.Logger() })
	for _, size := range []int{httpx.AheadMin + 100<<10, 300 << 10} {
		name := fmt.Sprintf("/damaged-%d.bin", size)
		data := make([]byte, size)
		rand.Read(data)
		writeFile(t, fsys, name, data)
		p := filepath.Join(f.storeDir, "alice", name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(b) / 2; i < len(b)/2+16; i++ {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(logs.Msg("webui: link download: read failed"))
		link := mkLink(t, m, shares.Spec{Path: name, Kind: shares.File})
		resp, err := f.client().c.Get(f.srv.URL + link + "/download")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || len(got) >= size || !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("%d bytes: got %d, err %v (want a cut body of correct bytes)", size, len(got), err)
		}
		recs := logs.Msg("webui: link download: read failed")
		if len(recs) != before+1 || recs[len(recs)-1].Level != slog.LevelError {
			t.Errorf("%d bytes: no error log line: %v", size, recs)
		}
		ls, _ := m.List(context.Background(), "alice")
		if ls[len(ls)-1].Downloads != 0 {
			t.Errorf("%d bytes: a cut download counted", size)
		}
	}
}
