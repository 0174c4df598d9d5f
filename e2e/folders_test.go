package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	testbrowser "github.com/securefsd/securefsd/internal/testutil/browser"
)

// folderServer starts a server with users alice (all rights and manage on
// folder "case"), bob (all rights, through group @staff) and dave (read
// only), carol (no grant), and folder "other" that only alice may reach.
// It returns their keys by name and their passwords.
func folderServer(t *testing.T) (*Server, map[string]string, map[string]string) {
	t.Helper()
	srv := StartServer(t)
	keys, pws := map[string]string{}, map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		pws[u] = "pw-" + RandomName() + "-e2e-Folders"
		keys[u] = srv.AddUser(t, u, pws[u])
	}
	for _, args := range [][]string{
		{"folder", "add", "case", "--quota-files", "50"},
		{"folder", "add", "other"},
		{"group", "add", "staff"},
		{"group", "members", "staff", "--add", "bob"},
		{"folder", "grant", "case", "@staff", "--perms", "all"},
		{"folder", "grant", "case", "dave", "--perms", "ro"},
		{"folder", "grant", "other", "alice", "--perms", "all"},
	} {
		if out, err := srv.CLI(t, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	return srv, keys, pws
}

// TestSharedFolders (issue 16): alice, whose OpenSSH sftp session was open
// before she was granted the folder, uploads into /Shared/case at her next
// command; bob reads it by WebDAV (curl) and in the browser; a WebDAV lock
// of alice's is seen and respected by bob; two members writing one file at
// once leave one of the versions intact; files move between a home and a
// folder; revoking takes effect in open sessions at their next request.
func TestSharedFolders(t *testing.T) {
	srv, keys, pws := folderServer(t)
	alice := startSFTP(t, srv, "alice", srv.SSHOpts(keys["alice"]))
	if out, ok := alice.run("-ls /Shared"); !ok || strings.Contains(out, "case") {
		t.Fatalf("alice sees case before her grant: %s", out)
	}
	if out, err := srv.CLI(t, "folder", "grant", "case", "alice", "--perms", "all,manage"); err != nil {
		t.Fatal(err, out)
	}
	src := RandomFile(t, 300<<10+3)
	if out, ok := alice.run("put " + src + " /Shared/case/brief.bin"); !ok {
		t.Fatalf("alice's upload into the folder: %s\n%s", out, srv.Log())
	}
	// The file lives in the folder's tree, encrypted, not in alice's home.
	if _, err := os.Stat(filepath.Join(srv.DataDir, "store", ".securefsd-folders", "case", "brief.bin")); err != nil {
		t.Errorf("not in the folder's tree: %v", err)
	}
	AssertNoPlaintext(t, srv.DataDir, src)
	// Every log line of the upload names alice, the member who acted.
	if rs := records(srv, attrs("user", "alice", "path", "/Shared/case/brief.bin", "result", "ok")); len(rs) == 0 {
		t.Errorf("no log record names alice for the upload into the folder")
	}

	// bob reads it over WebDAV with curl.
	got := filepath.Join(t.TempDir(), "bob-dav")
	if out, err := srv.Curl(t, "bob", pws["bob"], "-f", "-o", got, srv.DAVURL+"/Shared/case/brief.bin"); err != nil {
		t.Fatalf("bob's curl: %v %s", err, out)
	}
	SameFile(t, src, got)
	bob := newDAV(t, srv, "bob", pws["bob"], "")
	code, body, _ := bob.do("PROPFIND", "/Shared/", nil, "Depth: 1")
	if code != http.StatusMultiStatus || !bytes.Contains(body, []byte("/Shared/case/")) || bytes.Contains(body, []byte("other")) {
		t.Errorf("bob's PROPFIND /Shared/: %d %s", code, body)
	}

	t.Run("browser", func(t *testing.T) {
		ctx := testbrowser.New(t)
		if err := chromedp.Do(ctx,
			chromedp.Navigate(srv.DAVURL+"/"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "bob"),
			chromedp.SendKeys(chromedp.ID("password"), pws["bob"]),
			chromedp.Click(chromedp.ID("login-submit")),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-name="Shared"]`)),
			chromedp.Navigate(srv.DAVURL+"/ui/files/Shared/case/"),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-name="brief.bin"]`)),
		); err != nil {
			t.Fatalf("bob's browser: %v", err)
		}
		SameFile(t, src, testbrowser.Download(t, ctx, `tr[data-name="brief.bin"] td.name a`))
		// bob sees who has access, but may not change it.
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.ID("access-link")),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-to="@staff"]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-to="alice"]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-to="dave"]`)),
			chromedp.WaitNotPresent(chromedp.ID("grant-form")),
		); err != nil {
			t.Fatalf("bob's access page: %v", err)
		}
		// A group's row names its members.
		if text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-to="@staff"]`))); err != nil || !strings.Contains(text, "bob") {
			t.Errorf("the @staff row: %q %v", text, err)
		}
	})

	t.Run("browser manage", func(t *testing.T) {
		// alice manages the folder: she grants carol read-only access in
		// the browser, carol reads at once; then she revokes it.
		ctx := testbrowser.New(t)
		carolGet := func() string {
			out, _ := srv.Curl(t, "carol", pws["carol"], "-o", "/dev/null", "-w", "%{http_code}", srv.DAVURL+"/Shared/case/brief.bin")
			return out
		}
		if code := carolGet(); code != "404" {
			t.Fatalf("carol before the grant: %s", code)
		}
		if err := chromedp.Do(ctx,
			chromedp.Navigate(srv.DAVURL+"/"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "alice"),
			chromedp.SendKeys(chromedp.ID("password"), pws["alice"]),
			chromedp.Click(chromedp.ID("login-submit")),
			chromedp.WaitVisible(chromedp.ID("upload-form")),
			chromedp.Navigate(srv.DAVURL+"/ui/files/Shared/case/"),
			chromedp.Click(chromedp.ID("access-link")),
			chromedp.WaitVisible(chromedp.ID("grant-form")),
			chromedp.SendKeys(chromedp.ID("grant-to"), "carol"),
			chromedp.SetValue(chromedp.ID("grant-perms"), "ro"),
			chromedp.Click(chromedp.ID("grant-submit")),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-to="carol"]`)),
		); err != nil {
			t.Fatalf("alice grants carol: %v\n%s", err, srv.Log())
		}
		if code := carolGet(); code != "200" {
			t.Errorf("carol after the browser grant: %s", code)
		}
		if rs := records(srv, attrs("event", "folder_grant", "user", "alice", "to", "carol")); len(rs) != 1 {
			t.Errorf("the grant's log line does not name alice: %d records", len(rs))
		}
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`tr[data-to="carol"] button.revoke`)),
			chromedp.WaitNotPresent(chromedp.CSS(`tr[data-to="carol"]`)),
		); err != nil {
			t.Fatalf("alice revokes carol: %v", err)
		}
		if code := carolGet(); code != "404" {
			t.Errorf("carol after the browser revocation: %s", code)
		}
	})

	t.Run("locks", func(t *testing.T) {
		ad := newDAV(t, srv, "alice", pws["alice"], "")
		resp, _, err := ad.doResp("LOCK", "/Shared/case/brief.bin", strings.NewReader(strings.ReplaceAll(lockInfo, "bob-owner-tag", "alice-owner-tag")), "Depth: 0", "Timeout: Second-600")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("alice's LOCK: %v %v", resp, err)
		}
		token := resp.Header.Get("Lock-Token")
		code, body, _ := bob.do("PROPFIND", "/Shared/case/brief.bin", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>`), "Depth: 0")
		if !bytes.Contains(body, []byte("alice-owner-tag")) {
			t.Errorf("bob does not see alice's lock: %d %s", code, body)
		}
		if code, _, _ := bob.do("PUT", "/Shared/case/brief.bin", strings.NewReader("bob's")); code != http.StatusLocked {
			t.Errorf("bob's PUT over alice's lock: %d, want 423", code)
		}
		if code, _, _ := bob.do("UNLOCK", "/Shared/case/brief.bin", nil, "Lock-Token: "+token); code/100 == 2 {
			t.Errorf("bob released alice's lock: %d", code)
		}
		if code, _, _ := ad.do("UNLOCK", "/Shared/case/brief.bin", nil, "Lock-Token: "+token); code/100 != 2 {
			t.Errorf("alice's UNLOCK: %d", code)
		}
	})

	t.Run("concurrent edit", func(t *testing.T) {
		// alice by SFTP, bob by WebDAV, the same file, same size, at once:
		// afterwards it is exactly one of the two.
		va := bytes.Repeat([]byte("A"), 1<<20)
		vb := bytes.Repeat([]byte("B"), 1<<20)
		ac := newSFTP(t, srv, "alice", keys["alice"])
		for round := range 4 {
			var wg sync.WaitGroup
			var errA, errB error
			wg.Add(2)
			go func() { defer wg.Done(); errA = sftpPut(ac, "/Shared/case/edit.bin", va) }()
			go func() { defer wg.Done(); errB = bob.put("/Shared/case/edit.bin", vb) }()
			wg.Wait()
			if errA != nil && errB != nil {
				t.Fatalf("round %d: both writes failed: %v / %v", round, errA, errB)
			}
			got, err := sftpGet(ac, "/Shared/case/edit.bin")
			if err != nil || !(bytes.Equal(got, va) || bytes.Equal(got, vb)) {
				t.Fatalf("round %d: the file is neither version (%d bytes, %v)", round, len(got), err)
			}
		}
	})

	t.Run("moves", func(t *testing.T) {
		ac := newSFTP(t, srv, "alice", keys["alice"])
		if err := sftpPut(ac, "/mine.txt", []byte("from alice's home")); err != nil {
			t.Fatal(err)
		}
		before, err := os.Stat(storePath(srv, "alice", "mine.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := ac.PosixRename("/mine.txt", "/Shared/case/mine.txt"); err != nil {
			t.Fatalf("home to folder: %v", err)
		}
		// The move re-binds the stored file (FORMAT.md 8.4): the same inode
		// now sits in the folder's tree; nothing was re-encrypted.
		if after, err := os.Stat(storePath(srv, ".securefsd-folders/case", "mine.txt")); err != nil || !os.SameFile(before, after) {
			t.Errorf("the move copied the file instead of re-binding it: %v", err)
		}
		if code, b, _ := bob.do("GET", "/Shared/case/mine.txt", nil); code != 200 || string(b) != "from alice's home" {
			t.Errorf("bob reads the moved file: %d %q", code, b)
		}
		if _, err := ac.Stat("/mine.txt"); err == nil {
			t.Error("the source stayed in alice's home")
		}
		// WebDAV MOVE from the folder into bob's home.
		if code, _, _ := bob.do("MOVE", "/Shared/case/mine.txt", nil, "Destination: "+srv.DAVURL+"/bobs.txt"); code/100 != 2 {
			t.Errorf("bob's MOVE out of the folder: %d", code)
		}
		if b, err := bob.get("/bobs.txt"); err != nil || string(b) != "from alice's home" {
			t.Errorf("moved into bob's home: %q %v", b, err)
		}
		// A directory tree: into the folder by SFTP rename, out of it by a
		// WebDAV MOVE of the collection.
		if err := ac.MkdirAll("/tree/sub"); err != nil {
			t.Fatal(err)
		}
		if err := sftpPut(ac, "/tree/sub/deep.txt", []byte("deep")); err != nil {
			t.Fatal(err)
		}
		if err := ac.PosixRename("/tree", "/Shared/case/tree"); err != nil {
			t.Fatalf("directory home to folder: %v", err)
		}
		if code, b, _ := bob.do("GET", "/Shared/case/tree/sub/deep.txt", nil); code != 200 || string(b) != "deep" {
			t.Errorf("bob reads the moved tree: %d %q", code, b)
		}
		if code, _, _ := bob.do("MOVE", "/Shared/case/tree/", nil, "Destination: "+srv.DAVURL+"/bobs-tree/"); code/100 != 2 {
			t.Errorf("bob's MOVE of a collection out of the folder: %d", code)
		}
		if b, err := bob.get("/bobs-tree/sub/deep.txt"); err != nil || string(b) != "deep" {
			t.Errorf("the tree in bob's home: %q %v", b, err)
		}
		if code, _, _ := bob.do("PROPFIND", "/Shared/case/tree/", nil, "Depth: 0"); code != 404 {
			t.Errorf("the moved collection remains in the folder: %d", code)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		// bob loses the folder when he leaves the group; alice when her
		// grant is revoked: at the next request of their open sessions.
		if out, err := srv.CLI(t, "group", "members", "staff", "--del", "bob"); err != nil {
			t.Fatal(err, out)
		}
		if code, _, _ := bob.do("GET", "/Shared/case/brief.bin", nil); code != http.StatusNotFound {
			t.Errorf("bob after leaving the group: %d", code)
		}
		if out, err := srv.CLI(t, "folder", "revoke", "case", "alice"); err != nil {
			t.Fatal(err, out)
		}
		if out, ok := alice.run("get /Shared/case/brief.bin " + filepath.Join(t.TempDir(), "x")); ok {
			t.Errorf("alice's open session still reads the folder: %s", out)
		}
	})

	out, err := srv.CLI(t, "folder", "list", "--json")
	var list []struct {
		Name   string `json:"name"`
		Grants []struct {
			To string `json:"to"`
		} `json:"grants"`
	}
	if err == nil {
		err = json.Unmarshal([]byte(out), &list)
	}
	if err != nil || len(list) != 2 || list[0].Name != "case" || len(list[0].Grants) != 2 || list[0].Grants[0].To != "@staff" || list[0].Grants[1].To != "dave" {
		t.Errorf("folder list --json after the revocations: %v %s", err, out)
	}
	if out, err := srv.CLI(t, "folder", "del", "case", "--purge"); err != nil {
		t.Fatal(err, out)
	}
	if _, err := os.Stat(filepath.Join(srv.DataDir, "store", ".securefsd-folders", "case")); !os.IsNotExist(err) {
		t.Errorf("purged folder's tree: %v", err)
	}
	if out, err := srv.CLI(t, "folder", "del", "case", "--purge"); err == nil {
		t.Errorf("a second purge of a gone folder succeeded: %s", out)
	}
}

// TestIsolationSharedFolders extends the isolation suite to folders: carol
// (no grant) gets nothing of /Shared/case by SFTP, SCP (both modes), an
// exec md5sum, WebDAV or the browser; dave (read-only member) changes
// nothing by any protocol; bob (member of case only) reaches nothing of
// folder "other" by any spelling of its name. The folder's files stay as
// they were.
func TestIsolationSharedFolders(t *testing.T) {
	srv, keys, pws := folderServer(t)
	if out, err := srv.CLI(t, "folder", "grant", "case", "alice", "--perms", "all,manage"); err != nil {
		t.Fatal(err, out)
	}
	secret := []byte("CASE-ONLY-" + RandomName())
	ac := newSFTP(t, srv, "alice", keys["alice"])
	for _, n := range []string{"/Shared/case/s.txt", "/Shared/other/s.txt"} {
		if err := sftpPut(ac, n, secret); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, srv.Log())
		}
	}
	if err := ac.Mkdir("/Shared/case/dir"); err != nil {
		t.Fatal(err)
	}
	folderDir := filepath.Join(srv.DataDir, "store", ".securefsd-folders")
	before := treeState(t, folderDir)

	type who struct {
		user  string
		paths []string
	}
	outsiders := []who{
		{"carol", []string{"/Shared/case/s.txt", "/Shared/case", "/Shared/case/dir", "/Shared/other/s.txt"}},
		{"bob", []string{"/Shared/other/s.txt", "/Shared/case/../other/s.txt", "/Shared/../Shared/other/s.txt",
			"/Shared/OTHER/s.txt", "/shared/other/s.txt", "/Shared/./other/s.txt", "/Shared/case/%2e%2e/other/s.txt"}},
	}
	for _, o := range outsiders {
		c := newSFTP(t, srv, o.user, keys[o.user])
		t.Run(o.user+"/sftp", func(t *testing.T) {
			if o.user == "carol" {
				if fis, err := c.ReadDir("/Shared"); err == nil {
					t.Errorf("carol lists /Shared: %d entries", len(fis))
				}
				if fis, _ := c.ReadDir("/"); len(fis) != 0 {
					t.Errorf("carol's top lists %d entries", len(fis))
				}
			}
			for _, p := range o.paths {
				if _, err := c.Stat(p); err == nil {
					t.Errorf("stat %s", p)
				}
				if fis, err := c.ReadDir(p); err == nil {
					t.Errorf("list %s: %d entries", p, len(fis))
				}
				if got, err := sftpGet(c, p); err == nil || bytes.Contains(got, secret) {
					t.Errorf("read %s: %v", p, err)
				}
				if err := sftpPut(c, p, []byte("x")); err == nil {
					t.Errorf("write %s", p)
				}
				if err := sftpPut(c, p+"-new", []byte("x")); err == nil {
					t.Errorf("create %s-new", p)
				}
				_ = c.Remove(p)
				_ = c.Rename(p, "/taken")
				_ = c.Mkdir(p + "-dir")
				_ = c.Chmod(p, 0o777)
			}
			if got, err := sftpGet(c, "/taken"); err == nil && bytes.Contains(got, secret) {
				t.Error("a rename brought the folder's file into the home")
			}
		})
		t.Run(o.user+"/scp-exec", func(t *testing.T) {
			NeedTool(t, "scp")
			NeedTool(t, "ssh")
			for _, legacy := range []bool{false, true} {
				args := append(srv.SSHOpts(keys[o.user]), "-P", srv.SFTPPort)
				if legacy {
					args = append(args, "-O")
				}
				local := filepath.Join(t.TempDir(), "got")
				out, err := exec.Command("scp", append(args, o.user+"@"+srv.SFTPHost+":"+o.paths[0], local)...).CombinedOutput()
				if b, _ := os.ReadFile(local); err == nil || bytes.Contains(b, secret) {
					t.Errorf("scp (legacy=%v) of %s: %v %s", legacy, o.paths[0], err, out)
				}
				if out, err := exec.Command("scp", append(args, RandomFile(t, 10), o.user+"@"+srv.SFTPHost+":"+o.paths[0]+"-scp")...).CombinedOutput(); err == nil {
					t.Errorf("scp upload (legacy=%v): %s", legacy, out)
				}
			}
			out, err := exec.Command("ssh", append(srv.SSHOpts(keys[o.user]), "-p", srv.SFTPPort, o.user+"@"+srv.SFTPHost, "md5sum "+o.paths[0])...).CombinedOutput()
			if err == nil {
				t.Errorf("md5sum %s: %s", o.paths[0], out)
			}
		})
		t.Run(o.user+"/webdav", func(t *testing.T) {
			d := newDAV(t, srv, o.user, pws[o.user], "")
			for _, p := range append(o.paths, "/Shared/%2e%2e/Shared/other/s.txt", "/Shared/case%2f..%2fother/s.txt") {
				for _, m := range []string{"GET", "PROPFIND", "DELETE", "MKCOL", "PUT", "LOCK", "PROPPATCH"} {
					var body *strings.Reader
					switch m {
					case "PUT":
						body = strings.NewReader("planted")
					case "LOCK":
						body = strings.NewReader(lockInfo)
					default:
						body = strings.NewReader("")
					}
					code, b, _ := d.do(m, p, body, "Depth: 1")
					if code/100 == 2 || bytes.Contains(b, secret) || bytes.Contains(b, []byte("s.txt")) {
						t.Errorf("%s %s: %d %.200s", m, p, code, b)
					}
				}
				code, _, _ := d.do("MOVE", p, nil, "Destination: "+srv.DAVURL+"/taken-dav")
				if code/100 == 2 {
					t.Errorf("MOVE %s: %d", p, code)
				}
			}
			if o.user == "carol" {
				code, b, _ := d.do("PROPFIND", "/", nil, "Depth: 1")
				if bytes.Contains(b, []byte("Shared")) {
					t.Errorf("carol's PROPFIND / shows Shared: %d", code)
				}
			}
		})
	}

	t.Run("browser", func(t *testing.T) {
		ctx := testbrowser.New(t, "status of 404") // the refusals carol meets
		if err := chromedp.Do(ctx,
			chromedp.Navigate(srv.DAVURL+"/"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "carol"),
			chromedp.SendKeys(chromedp.ID("password"), pws["carol"]),
			chromedp.Click(chromedp.ID("login-submit")),
			chromedp.WaitVisible(chromedp.ID("upload-form")),
		); err != nil {
			t.Fatalf("carol's login: %v", err)
		}
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil || strings.Contains(html, `data-name="Shared"`) {
			t.Errorf("carol's top shows Shared: %v", err)
		}
		for _, p := range []string{"/ui/files/Shared/case/", "/ui/files/Shared/case/s.txt", "/ui/files/Shared/"} {
			if err := chromedp.Do(ctx, chromedp.Navigate(srv.DAVURL+p)); err != nil {
				t.Fatal(err)
			}
			html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			if err != nil || strings.Contains(html, "s.txt\"") || strings.Contains(html, string(secret)) {
				t.Errorf("carol's browser at %s: %v", p, err)
			}
		}
	})

	t.Run("read-only member", func(t *testing.T) {
		c := newSFTP(t, srv, "dave", keys["dave"])
		if got, err := sftpGet(c, "/Shared/case/s.txt"); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("dave cannot read: %v", err)
		}
		for name, err := range map[string]error{
			"overwrite": sftpPut(c, "/Shared/case/s.txt", []byte("x")),
			"create":    sftpPut(c, "/Shared/case/new", []byte("x")),
			"remove":    c.Remove("/Shared/case/s.txt"),
			"rename":    c.Rename("/Shared/case/s.txt", "/Shared/case/t.txt"),
			"move out":  c.PosixRename("/Shared/case/s.txt", "/mine.txt"),
			"mkdir":     c.Mkdir("/Shared/case/d2"),
			"rmdir":     c.RemoveDirectory("/Shared/case/dir"),
			"chmod":     c.Chmod("/Shared/case/s.txt", 0o600),
			"truncate":  c.Truncate("/Shared/case/s.txt", 0),
		} {
			if err == nil {
				t.Errorf("dave's %s succeeded", name)
			}
		}
		d := newDAV(t, srv, "dave", pws["dave"], "")
		for _, m := range []string{"PUT", "DELETE", "MKCOL", "LOCK", "PROPPATCH"} {
			p := "/Shared/case/s.txt"
			if m == "MKCOL" {
				p = "/Shared/case/d3"
			}
			body := strings.NewReader("x")
			if m == "LOCK" {
				body = strings.NewReader(lockInfo)
			}
			if code, _, _ := d.do(m, p, body); code/100 == 2 {
				t.Errorf("dave's %s %s: %d", m, p, code)
			}
		}
		if code, _, _ := d.do("MOVE", "/Shared/case/s.txt", nil, "Destination: "+srv.DAVURL+"/s.txt"); code/100 == 2 {
			t.Errorf("dave's MOVE: %d", code)
		}
	})

	if d := treeDiff(before, treeState(t, folderDir)); d != "" {
		t.Errorf("the folders changed on disk:\n%s", d)
	}
	if got, err := sftpGet(ac, "/Shared/case/s.txt"); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("alice's file: %v", err)
	}
}

// TestSharedFolderRclone: alice syncs into /Shared/case with rclone over
// SFTP (--checksum: md5sum over SSH verifies each upload), bob syncs it out
// with rclone over WebDAV (owncloud checksums) and checks it; bob uploads
// with scp in both modes and alice reads those back.
func TestSharedFolderRclone(t *testing.T) {
	NeedTool(t, "rclone")
	NeedTool(t, "scp")
	srv, keys, pws := folderServer(t)
	if out, err := srv.CLI(t, "folder", "grant", "case", "alice", "--perms", "all"); err != nil {
		t.Fatal(err, out)
	}
	src := filepath.Join(t.TempDir(), "src")
	for name, n := range map[string]int64{"a.bin": 1<<20 + 1, "empty": 0, "d/e.bin": 70000} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Rename(RandomFile(t, n), p); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(),
		"RCLONE_CONFIG="+filepath.Join(t.TempDir(), "rclone.conf"),
		"RCLONE_CONFIG_X_TYPE=sftp",
		"RCLONE_CONFIG_X_HOST="+srv.SFTPHost,
		"RCLONE_CONFIG_X_PORT="+srv.SFTPPort,
		"RCLONE_CONFIG_X_USER=alice",
		"RCLONE_CONFIG_X_KEY_FILE="+keys["alice"],
	)
	cmd := exec.Command("rclone", "sync", src, "X:Shared/case/sync", "--checksum", "-vv", "--sftp-set-modtime")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "md5 = ") || strings.Count(string(out), "Copied (new)") != 3 {
		t.Fatalf("alice's rclone sync over SFTP: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "back")
	if out, err := rcloneDAV(t, srv, "bob", pws["bob"], "sync", ":webdav:Shared/case/sync", back, "--checksum"); err != nil {
		t.Fatalf("bob's rclone sync over WebDAV: %v\n%s", err, out)
	}
	for _, name := range []string{"a.bin", "empty", "d/e.bin"} {
		SameFile(t, filepath.Join(src, name), filepath.Join(back, name))
	}
	if out, err := rcloneDAV(t, srv, "bob", pws["bob"], "check", src, ":webdav:Shared/case/sync", "--checksum"); err != nil || !strings.Contains(out, "0 differences found") {
		t.Errorf("bob's rclone check over WebDAV: %v\n%s", err, out)
	}

	ac := newSFTP(t, srv, "alice", keys["alice"])
	for _, legacy := range []bool{false, true} {
		args := append(srv.SSHOpts(keys["bob"]), "-P", srv.SFTPPort)
		name := "scp-sftp.bin"
		if legacy {
			args = append(args, "-O")
			name = "scp-legacy.bin"
		}
		up := RandomFile(t, 200<<10+legacyInt(legacy))
		if out, err := exec.Command("scp", append(args, up, "bob@"+srv.SFTPHost+":/Shared/case/"+name)...).CombinedOutput(); err != nil {
			t.Fatalf("bob's scp (legacy=%v): %v %s", legacy, err, out)
		}
		got, err := sftpGet(ac, "/Shared/case/"+name)
		want, _ := os.ReadFile(up)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("alice reads bob's scp upload (legacy=%v): %v", legacy, err)
		}
		down := filepath.Join(t.TempDir(), "down")
		if out, err := exec.Command("scp", append(args, "bob@"+srv.SFTPHost+":/Shared/case/"+name, down)...).CombinedOutput(); err != nil {
			t.Errorf("bob's scp download (legacy=%v): %v %s", legacy, err, out)
		} else {
			SameFile(t, up, down)
		}
	}
}

// TestSharedFolderKeys: key rotate re-wraps the folders' files (they still
// read after the old key is retired), verify checks them, and a folder file
// moved on disk into a home is reported damaged.
func TestSharedFolderKeys(t *testing.T) {
	srv, keys, _ := folderServer(t)
	ac := newSFTP(t, srv, "alice", keys["alice"])
	data := []byte("folder data " + RandomName())
	for _, n := range []string{"/Shared/other/a", "/Shared/other/b"} {
		if err := sftpPut(ac, n, data); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := srv.CLI(t, "key", "rotate"); err != nil {
		t.Fatalf("key rotate: %v\n%s", err, out)
	}
	if got, err := sftpGet(ac, "/Shared/other/a"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a folder file after the rotation: %v", err)
	}
	out, err := srv.CLI(t, "verify")
	if err != nil || !strings.Contains(out, " 0 damaged") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	folderFile := filepath.Join(srv.DataDir, "store", ".securefsd-folders", "other", "b")
	if err := os.Rename(folderFile, storePath(srv, "alice", "b")); err != nil {
		t.Fatal(err)
	}
	out, err = srv.CLI(t, "verify")
	if err == nil || !strings.Contains(out, "alice/b") {
		t.Errorf("verify after a folder file was moved into a home: %v\n%s", err, out)
	}
	if got, err := sftpGet(ac, "/b"); err == nil || bytes.Equal(got, data) {
		t.Errorf("the moved file reads in the home: %v", err)
	}
}

func legacyInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
