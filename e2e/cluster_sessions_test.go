package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	testbrowser "github.com/securefsd/securefsd/internal/testutil/browser"
)

// clusterSession is a row of `session list --json`.
type clusterSession struct {
	ID, User, Proto, Remote, Node string
}

func clusterSessions(t *testing.T, n *Server) []clusterSession {
	t.Helper()
	out, err := n.CLI(t, "session", "list", "--json")
	if err != nil {
		t.Fatalf("session list: %v\n%s", err, out)
	}
	var ss []clusterSession
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		t.Fatalf("session list: %v\n%s", err, out)
	}
	return ss
}

// jarCookie is the browser session cookie's value in a curl cookie jar.
func jarCookie(t *testing.T, jar string) string {
	t.Helper()
	b, err := os.ReadFile(jar)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 7 && f[5] == "sfsd_session" {
			return f[6]
		}
	}
	t.Fatalf("no session cookie in %s", b)
	return ""
}

// signedIn reports whether node n serves the file list to the session
// cookie value (anything else: the sign-in page, or a redirect to it).
func signedIn(t *testing.T, n *Server, cookie string) bool {
	t.Helper()
	out, _ := n.Curl(t, "", "", "-H", "Cookie: sfsd_session="+cookie, "-w", "\n%{http_code}", n.DAVURL+"/ui/files/")
	return strings.HasSuffix(strings.TrimSpace(out), "\n200") && strings.Contains(out, `id="upload-form"`)
}

// browserSignedOut waits until node n's file list sends the browser to
// the sign-in page.
func browserSignedOut(t *testing.T, ctx context.Context, n *Server, what string) {
	t.Helper()
	waitFor(t, 30*time.Second, what, func() bool {
		var login bool
		err := chromedp.Do(ctx, chromedp.Navigate(n.DAVURL+"/ui/files/"), chromedp.WaitReady("body"))
		if err == nil {
			login, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("login-form") !== null`))
		}
		return err == nil && login
	})
}

// TestClusterSessions (issue 21): three nodes on one etcd and one bucket.
// A file uploaded through node 1 by OpenSSH sftp reads through node 2 by
// WebDAV and through node 3 in Chromium, whose session node 1 signed in
// (one host: the browser sends the cookie to every node, as behind a
// load balancer). `session list` on node 2 shows node 1's SSH session
// and the browser session, each with its node; `session kill` on node 3
// ends both on node 1. A cookie replayed after its sign-out is refused
// on every node, and so are a forged cookie and cookies made from what
// etcd holds of a live session; `user disable` through node 2 ends a
// session node 3 signed in on every node. etcd holds no cookie, user name,
// address or session id. A node killed: its SSH sessions leave the list
// with its lease, the browser session it signed in lives on.
func TestClusterSessions(t *testing.T) {
	t.Parallel() // mostly waiting on other processes: beside the flood tests
	ctx := testbrowser.New(t)
	c := startClusterEnv(t)
	n1 := c.node(t, nil, WithServeArgs("--node-name", "node1"))
	n2 := c.node(t, n1, WithServeArgs("--node-name", "node2"))
	n3 := c.node(t, n1, WithServeArgs("--node-name", "node3"))
	nodes := []*Server{n1, n2, n3}
	const pass = "cluster-sessions-pass-3b9a"
	key := n1.AddUser(t, "dora", pass)
	local := RandomFile(t, 300<<10)
	row := chromedp.CSS(`tr[data-name="shared.bin"]`)

	t.Run("sftp on node 1, webdav on node 2, browser on node 3", func(t *testing.T) {
		if out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" shared.bin\n"); err != nil {
			t.Fatalf("sftp put through node 1: %v\n%s", err, out)
		}
		got := filepath.Join(t.TempDir(), "got")
		if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/shared.bin"); err != nil {
			t.Fatalf("webdav get through node 2: %v\n%s", err, out)
		}
		SameFile(t, local, got)
		if err := chromedp.Do(ctx,
			chromedp.Navigate(n1.DAVURL+"/ui/login"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "dora"),
			chromedp.SendKeys(chromedp.ID("password"), pass),
			chromedp.Click(chromedp.ID("login-submit")),
			chromedp.WaitVisible(row),
			// Node 3 serves the session node 1 signed in.
			chromedp.Navigate(n3.DAVURL+"/ui/files/"),
			chromedp.WaitVisible(row),
		); err != nil {
			t.Fatalf("browser: sign in on node 1, list on node 3: %v", err)
		}
		SameFile(t, local, testbrowser.Download(t, ctx, `tr[data-name="shared.bin"] td.name a`))
	})

	t.Run("kill on node 3 ends sessions on node 1", func(t *testing.T) {
		p := startSFTP(t, n1, "dora", n1.SSHOpts(key))
		if out, ok := p.run("ls"); !ok {
			t.Fatalf("sftp session on node 1: %s", out)
		}
		var sshID, webID string
		waitFor(t, 30*time.Second, "node 2 to list node 1's SSH session and the browser session", func() bool {
			sshID, webID = "", ""
			for _, s := range clusterSessions(t, n2) {
				switch {
				case s.User == "dora" && s.Proto == "ssh" && s.Node == "node1":
					sshID = s.ID
				case s.User == "dora" && s.Proto == "web" && s.Node == "node1":
					webID = s.ID
				}
			}
			return sshID != "" && webID != ""
		})
		// The registry is sealed: no user name, session id or address in etcd.
		dump := c.etcdDump(t)
		for _, s := range []string{"dora", sshID, webID, "127.0.0.1:"} {
			if bytes.Contains(dump, []byte(s)) {
				t.Errorf("etcd holds %q", s)
			}
		}
		if out, err := n2.CLI(t, "session", "list"); err != nil || !strings.Contains(out, "NODE") || !regexp.MustCompile(sshID+`\s.*node1`).MatchString(out) {
			t.Fatalf("session list on node 2 does not name the node: %v\n%s", err, out)
		}
		if out, err := n3.CLI(t, "session", "kill", sshID); err != nil {
			t.Fatalf("session kill through node 3: %v\n%s", err, out)
		}
		if out, ok := p.run("ls"); ok {
			t.Fatalf("node 1's sftp session answers after a kill through node 3: %s", out)
		}
		if out, err := n3.CLI(t, "session", "kill", webID); err != nil {
			t.Fatalf("session kill of the browser session through node 3: %v\n%s", err, out)
		}
		browserSignedOut(t, ctx, n1, "node 1 to end the browser session killed through node 3")
		waitFor(t, 30*time.Second, "the killed sessions to leave the list", func() bool {
			for _, s := range clusterSessions(t, n1) {
				if s.ID == sshID || s.ID == webID {
					return false
				}
			}
			return true
		})
		if out, err := n3.CLI(t, "session", "kill", sshID); err == nil {
			t.Fatalf("killing a session that ended succeeded: %s", out)
		}
	})

	t.Run("attacks on the cookie", func(t *testing.T) {
		jar := n2.CurlBrowserLogin(t, "dora", pass)
		cookie := jarCookie(t, jar)
		for i, n := range nodes {
			if !signedIn(t, n, cookie) {
				t.Fatalf("node %d does not serve the session node 2 signed in", i+1)
			}
		}
		// What etcd holds of the live session: no cookie, no user name,
		// no session id; and nothing there makes a cookie.
		dump := c.etcdDump(t)
		raw, err := base64.RawURLEncoding.DecodeString(cookie)
		if err != nil {
			t.Fatal(err)
		}
		var webID string
		for _, s := range clusterSessions(t, n1) {
			if s.Proto == "web" {
				webID = s.ID
			}
		}
		if webID == "" {
			t.Fatal("no browser session listed")
		}
		for _, s := range [][]byte{[]byte(cookie), raw, []byte(hex.EncodeToString(raw)), []byte("dora"), []byte(webID), []byte(strings.TrimPrefix(webID, "web-"))} {
			if bytes.Contains(dump, s) {
				t.Errorf("etcd holds %q", s)
			}
		}
		forged := forgedCookies(t, c, webID)
		if len(forged) < 4 {
			t.Fatalf("no stored session in etcd to forge from: %v", forged)
		}
		for _, f := range forged {
			for i, n := range nodes {
				if signedIn(t, n, f) {
					t.Errorf("node %d signs in the forged cookie %q", i+1, f)
				}
			}
		}

		// Sign out on node 2: the cookie replayed is refused on every node.
		page, err := n2.Curl(t, "", "", "-b", jar, n2.DAVURL+"/ui/files/")
		if err != nil {
			t.Fatal(err)
		}
		csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
		if csrf == nil {
			t.Fatalf("no csrf token on the file list:\n%s", page)
		}
		if out, err := n2.Curl(t, "", "", "-f", "-b", jar, "-H", "Origin: "+n2.DAVURL, "-o", os.DevNull,
			"--data-urlencode", "csrf="+csrf[1], n2.DAVURL+"/ui/logout"); err != nil {
			t.Fatalf("logout on node 2: %v\n%s", err, out)
		}
		out := time.Now()
		if signedIn(t, n2, cookie) {
			t.Fatal("node 2 serves the cookie it signed out")
		}
		for i, n := range nodes {
			waitFor(t, 30*time.Second, "the signed-out cookie refused", func() bool { return !signedIn(t, n, cookie) })
			t.Logf("node %d refuses the signed-out cookie %v after the sign-out", i+1, time.Since(out).Round(time.Millisecond))
			// And stays refused: replayed again, a second time.
			if signedIn(t, n, cookie) {
				t.Errorf("node %d serves the cookie replayed after its sign-out", i+1)
			}
		}
	})

	t.Run("a node's death", func(t *testing.T) {
		// Its live sessions leave the list with its lease; a browser
		// session it signed in is the user's and lives on.
		p := startSFTP(t, n1, "dora", n1.SSHOpts(key))
		if out, ok := p.run("ls"); !ok {
			t.Fatalf("sftp session on node 1: %s", out)
		}
		cookie := jarCookie(t, n1.CurlBrowserLogin(t, "dora", pass))
		node1SSH := func() bool {
			for _, s := range clusterSessions(t, n2) {
				if s.Proto == "ssh" && s.Node == "node1" {
					return true
				}
			}
			return false
		}
		waitFor(t, 30*time.Second, "node 2 to list node 1's SSH session", node1SSH)
		n1.Kill(t)
		waitFor(t, 60*time.Second, "node 1's SSH session to leave the list with its lease", func() bool { return !node1SSH() })
		for i, n := range []*Server{n2, n3} {
			if !signedIn(t, n, cookie) {
				t.Fatalf("node %d does not serve the browser session the dead node 1 signed in", i+2)
			}
		}
	})

	t.Run("disable on node 2 ends a session node 3 serves", func(t *testing.T) {
		nodes := []*Server{n2, n3} // node 1 is dead
		cookie := jarCookie(t, n3.CurlBrowserLogin(t, "dora", pass))
		if !signedIn(t, n2, cookie) {
			t.Fatal("node 2 does not serve node 3's session")
		}
		if out, err := n2.CLI(t, "user", "disable", "dora"); err != nil {
			t.Fatalf("user disable through node 2: %v\n%s", err, out)
		}
		for _, n := range nodes {
			waitFor(t, 30*time.Second, "the disabled user's session refused", func() bool { return !signedIn(t, n, cookie) })
		}
	})
}

// forgedCookies makes cookie values out of what etcd holds of browser
// sessions (their keys' names, their sealed values, the session id): an
// attacker who reads etcd, without the cookie.
func forgedCookies(t *testing.T, c *clusterEnv, webID string) []string {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := cl.Get(t.Context(), "securefsd/sessions/w/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	pad := func(b []byte) string {
		p := make([]byte, 32)
		copy(p, b)
		return base64.RawURLEncoding.EncodeToString(p)
	}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), "securefsd/sessions/w/")
		h, err := hex.DecodeString(name)
		if err != nil {
			t.Fatalf("a session key's name is not hex: %q", kv.Key)
		}
		out = append(out, name, pad(h), base64.RawURLEncoding.EncodeToString(append(h, h...)), pad(kv.Value))
	}
	id, _ := hex.DecodeString(strings.TrimPrefix(webID, "web-"))
	out = append(out, webID, pad(id))
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	return append(out, base64.RawURLEncoding.EncodeToString(random))
}
