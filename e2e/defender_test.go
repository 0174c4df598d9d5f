package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/testutil"
)

// Tests of issue 14 items 1 and 3 (login defender under attack). Every
// 127/8 address reaches the server on 127.0.0.1, so clients bind a source
// address to come "from" different hosts. The server logs each admitted
// password check ("users: password check admitted") and each Argon2id
// verification ("users: password verified") at debug level: the tests
// count those lines per source address.

// davLogin sends one PROPFIND Depth 0 of / as user:pw from src over its
// own connection and returns the status (-1: transport error or ctx end).
func davLogin(ctx context.Context, srv *Server, src, user, pw string) int {
	d := &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} // self-signed test certificate
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 3 * time.Minute}
	req, err := http.NewRequestWithContext(ctx, "PROPFIND", srv.DAVURL+"/", nil)
	if err != nil {
		return -1
	}
	req.SetBasicAuth(user, pw)
	req.Header.Set("Depth", "0")
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// countLog counts the log records with message msg from remote address
// src (any port).
func countLog(srv *Server, msg, src string) int {
	return len(records(srv, fromSrc(src, msg)))
}

// fromSrc matches the records with message msg whose remote is src (any
// port) and that have every key/value pair of kv. The message is the handle
// here (not an event attribute) because argonChecks also reads the lines of
// older servers.
func fromSrc(src, msg string, kv ...string) func(testutil.Record) bool {
	has := attrs(kv...)
	return func(r testutil.Record) bool {
		return r.Message == msg && strings.HasPrefix(r.Attr("remote"), src+":") && has(r)
	}
}

// argonChecks counts the Argon2id checks the server ran for logins from
// src: its debug line per verification, or (the same number, and the only
// trace older servers leave) its failed password logins plus successes.
func argonChecks(srv *Server, src string) int {
	failed := len(records(srv, fromSrc(src, "users: login failed", "method", "password")))
	ok := len(records(srv, fromSrc(src, "users: login", "method", "password")))
	return max(countLog(srv, "users: password verified", src), failed+ok)
}

// TestParallelGuesses performs issue 14 item 1's attack on a live server:
// 100 parallel password guesses from one address over WebDAV and 100 over
// SSH (x/crypto/ssh clients), the right password among them, sent once
// the address's ten checks are under way. At most 10 Argon2id checks may
// run for the address (AddrThreshold); the right password is refused and
// the address ends banned. The old code checked all of them and accepted
// the right password after the ban.
func TestParallelGuesses(t *testing.T) {
	t.Parallel()
	srv := StartServer(t)
	srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	srv.AddUser(t, "bob", "obo-pw-1-e2e-pass")

	// attack sends 99 wrong guesses at once, waits until the server has
	// admitted 10 checks for src, then sends the right password.
	attack := func(t *testing.T, src string, try func(pw string) string) map[string]int {
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		record := func(pw string) {
			defer wg.Done()
			out := try(pw)
			mu.Lock()
			seen[out]++
			mu.Unlock()
		}
		for i := range 99 {
			wg.Add(1)
			go record(fmt.Sprintf("wrong-%d", i))
		}
		waitFor(t, 2*time.Minute, "10 checks admitted for "+src, func() bool {
			return countLog(srv, "users: password check admitted", src) >= 10 || argonChecks(srv, src) >= 10
		})
		right := try
		var rightOut string
		wg.Add(1)
		go func() { defer wg.Done(); rightOut = right("right") }()
		wg.Wait()
		seen["right password: "+rightOut]++
		return seen
	}

	t.Run("webdav", func(t *testing.T) {
		const src = "127.0.0.40"
		seen := attack(t, src, func(pw string) string {
			if pw == "right" {
				pw = "nyvpr-pw-1-e2e-pass"
			}
			return fmt.Sprint(davLogin(t.Context(), srv, src, "alice", pw))
		})
		checks := argonChecks(srv, src)
		t.Logf("100 parallel WebDAV logins from %s: %v; %d Argon2id checks", src, seen, checks)
		if checks > 10 {
			t.Errorf("%d Argon2id checks for one address, want at most 10", checks)
		}
		if seen["right password: 429"] != 1 {
			t.Errorf("the right password, sent after the budget was taken, was not refused as banned: %v", seen)
		}
		if seen["207"] > 0 || seen["200"] > 0 {
			t.Errorf("a wrong password was accepted: %v", seen)
		}
		if code := davLogin(t.Context(), srv, src, "alice", "nyvpr-pw-1-e2e-pass"); code != http.StatusTooManyRequests {
			t.Errorf("right password after the attack: %d, want 429", code)
		}
	})

	t.Run("ssh", func(t *testing.T) {
		const src = "127.0.0.41"
		seen := attack(t, src, func(pw string) string {
			if pw == "right" {
				pw = "obo-pw-1-e2e-pass"
			}
			c, err := dialSSH(srv, src, sshConfig("bob", ssh.Password(pw)))
			if err != nil {
				return "refused"
			}
			c.Close()
			return "accepted"
		})
		checks := argonChecks(srv, src)
		t.Logf("100 parallel SSH password logins from %s: %v; %d Argon2id checks", src, seen, checks)
		if checks > 10 {
			t.Errorf("%d Argon2id checks for one address, want at most 10", checks)
		}
		if seen["accepted"] > 0 || seen["right password: accepted"] > 0 {
			t.Errorf("a password was accepted after the budget was taken: %v", seen)
		}
		waitRecord(t, srv, 30*time.Second, "ban of 127.0.0.41", banned("address", "127.0.0.41"))
	})
}

// TestBogusLoginFlood performs issue 14 item 1's second attack: 300
// parallel bogus logins (unknown names) from one address.
//   - From an ordinary address the flood is banned after 10 checks, and a
//     login from another address succeeds over WebDAV and SSH meanwhile.
//   - From a safelisted address (never banned, so nothing caps its
//     attempts) the flood queues hundreds of Argon2id checks; a login from
//     another address still gets one of the next turns: it succeeds while
//     the flood is under way, overtaking nearly all of its queue. The old
//     code's first-come semaphore made it wait behind the whole flood.
func TestBogusLoginFlood(t *testing.T) {
	t.Parallel()
	const safe = "127.0.0.44"
	// 300 parallel connections from one address are more than the HTTPS
	// per-source cap (256, issue 14 item 9) lets in: this test is about the
	// Argon2id queue, so it lifts that cap.
	srv := StartServer(t, WithServeArgs("--login-safelist", safe+"/32", "--max-http-conns-per-source", "1000"))
	srv.AddUser(t, "carol", "pneby-pw-1-e2e-pass")

	// flood starts n bogus logins from src and returns a counter of the
	// answered ones and a function that waits for them all (cancelling
	// the rest first if cancelRest).
	flood := func(ctx context.Context, src string, n int) (*atomic.Int64, func(cancelRest bool)) {
		ctx, cancel := context.WithCancel(ctx)
		var answered atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				davLogin(ctx, srv, src, fmt.Sprintf("ghost%d", i), "bogus")
				answered.Add(1)
			}()
		}
		return &answered, func(cancelRest bool) {
			if cancelRest {
				cancel()
			}
			wg.Wait()
			cancel()
		}
	}
	legit := func(t *testing.T, src string) {
		t.Helper()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if code := davLogin(t.Context(), srv, src, "carol", "pneby-pw-1-e2e-pass"); code != http.StatusMultiStatus {
				t.Errorf("carol's WebDAV login from %s during the flood: %d", src, code)
			}
		}()
		go func() {
			defer wg.Done()
			c, err := dialSSH(srv, src, sshConfig("carol", ssh.Password("pneby-pw-1-e2e-pass")))
			if err != nil {
				t.Errorf("carol's SSH password login from %s during the flood: %v", src, err)
				return
			}
			c.Close()
		}()
		wg.Wait()
	}

	t.Run("ordinary-address", func(t *testing.T) {
		const src = "127.0.0.42"
		answered, stop := flood(t.Context(), src, 300)
		waitFor(t, 2*time.Minute, "the flood under way", func() bool {
			return countLog(srv, "users: password check admitted", src) >= 5
		})
		before := answered.Load()
		legit(t, "127.0.0.43")
		t.Logf("flood answers: %d when carol started, %d when she was in", before, answered.Load())
		stop(false)
		if checks := argonChecks(srv, src); checks > 10 {
			t.Errorf("%d Argon2id checks for the flooding address, want at most 10", checks)
		}
		waitRecord(t, srv, 30*time.Second, "ban of "+src, banned("address", src))
	})

	t.Run("safelisted-address", func(t *testing.T) {
		answered, stop := flood(t.Context(), safe, 300)
		defer stop(true)
		// Every flood login has reached the queue (its TLS handshake done),
		// so carol's own handshake competes with none of them.
		waitFor(t, 2*time.Minute, "the flood queued", func() bool {
			return countLog(srv, "users: password check admitted", safe) >= 300
		})
		before := answered.Load()
		legit(t, "127.0.0.45")
		after := answered.Load()
		t.Logf("flood answers: %d when carol started, %d when she was in (of 300); %d checks admitted",
			before, after, countLog(srv, "users: password check admitted", safe))
		// 300-before flood checks were queued ahead of carol; in turn she
		// needs only a few of them to finish.
		if after-before > 20 {
			t.Errorf("carol waited for %d flood checks, want a few (fair turns)", after-before)
		}
		if after >= 300 {
			t.Errorf("carol got in only after the whole flood")
		}
	})
}

// TestBanCommands performs issue 14 item 3's lockout and checks its cures
// on a live server: wrong passwords from anywhere ban carol's name, but
// her key logins and her password logins from an address she used before
// (or a safelisted one, here set through SECUREFSD_LOGIN_SAFELIST) still
// work; `ban list [--json]` shows the bans and `ban del` lifts them through
// the admin socket.
func TestBanCommands(t *testing.T) {
	t.Parallel()
	srv := StartServer(t, WithEnv("SECUREFSD_LOGIN_SAFELIST=127.0.0.68"))
	carolKey := srv.AddUser(t, "carol", "pneby-pw-1-e2e-pass")

	if out, err := srv.CLI(t, "ban", "list", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("ban list --json before any ban: %q, %v", out, err)
	}
	// carol logs in from her usual address before the attack.
	if code := davLogin(t.Context(), srv, "127.0.0.60", "carol", "pneby-pw-1-e2e-pass"); code != http.StatusMultiStatus {
		t.Fatalf("carol before the attack: %d", code)
	}
	// 32 wrong passwords from 4 addresses (8 each, under the address
	// threshold) ban the name.
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			davLogin(t.Context(), srv, fmt.Sprintf("127.0.0.%d", 61+i%4), "carol", fmt.Sprintf("guess-%d", i))
		}()
	}
	wg.Wait()
	waitRecord(t, srv, 30*time.Second, "ban of carol", banned("user", "carol"))

	out, err := srv.CLI(t, "ban", "list")
	if err != nil || !strings.Contains(out, "user:carol") {
		t.Fatalf("ban list: %q, %v", out, err)
	}
	out, err = srv.CLI(t, "ban", "list", "--json")
	var bans []struct{ Kind, Who string }
	if err != nil || json.Unmarshal([]byte(out), &bans) != nil || len(bans) != 1 || bans[0].Kind != "user" || bans[0].Who != "carol" {
		t.Fatalf("ban list --json: %q, %v", out, err)
	}

	if code := davLogin(t.Context(), srv, "127.0.0.66", "carol", "pneby-pw-1-e2e-pass"); code != http.StatusTooManyRequests {
		t.Errorf("carol's password from a new address during the name ban: %d, want 429", code)
	}
	if err := sshLogin(srv, "127.0.0.65", "carol", keyAuth(t, carolKey)); err != nil {
		t.Errorf("carol's key login during the name ban: %v", err)
	}
	if code := davLogin(t.Context(), srv, "127.0.0.60", "carol", "pneby-pw-1-e2e-pass"); code != http.StatusMultiStatus {
		t.Errorf("carol's password from her known address during the name ban: %d", code)
	}
	if code := davLogin(t.Context(), srv, "127.0.0.68", "carol", "pneby-pw-1-e2e-pass"); code != http.StatusMultiStatus {
		t.Errorf("carol's password from the safelisted address during the name ban: %d", code)
	}
	if out, err := srv.CLI(t, "ban", "del", "user:carol"); err != nil || !strings.Contains(out, "lifted") {
		t.Fatalf("ban del user:carol: %q, %v", out, err)
	}
	if code := davLogin(t.Context(), srv, "127.0.0.66", "carol", "pneby-pw-1-e2e-pass"); code != http.StatusMultiStatus {
		t.Errorf("carol after ban del: %d", code)
	}

	// An address ban, listed and lifted; the safelisted address is never banned.
	for _, src := range []string{"127.0.0.67", "127.0.0.68"} {
		for i := range 12 {
			wg.Add(1)
			go func() { defer wg.Done(); davLogin(t.Context(), srv, src, "nobody", fmt.Sprintf("x%d", i)) }()
		}
	}
	wg.Wait()
	out, err = srv.CLI(t, "ban", "list")
	if err != nil || !strings.Contains(out, "127.0.0.67") || strings.Contains(out, "127.0.0.68") {
		t.Fatalf("ban list after the address attack: %q, %v", out, err)
	}
	if _, err := srv.CLI(t, "ban", "del", "127.0.0.67"); err != nil {
		t.Fatalf("ban del 127.0.0.67: %v", err)
	}
	if code := davLogin(t.Context(), srv, "127.0.0.67", "carol", "pneby-pw-1-e2e-pass"); code != http.StatusMultiStatus {
		t.Errorf("carol from the unbanned address: %d", code)
	}
	if _, err := srv.CLI(t, "ban", "del", "127.0.0.67"); err == nil || !strings.Contains(err.Error(), "no active ban") {
		t.Errorf("ban del of an address not banned: %v", err)
	}
	if _, err := srv.CLI(t, "ban", "del", "carol"); err == nil {
		t.Errorf("ban del of a bare name succeeded (names are user:NAME)")
	}
	srv.Stop(t)
	if out, err := srv.CLI(t, "ban", "list", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("ban list without a server: %q, %v", out, err)
	}
	if _, err := srv.CLI(t, "ban", "del", "127.0.0.67"); err == nil {
		t.Errorf("ban del without a server succeeded")
	}
}

// TestBannedBrowserLogin performs issue 14 item 12's probe of the sign-in
// form: once the address is banned, a sign-in (even with the right
// password) must answer exactly like a wrong password (status, page,
// cookies) and be paced like one, so the ban is visible neither in the
// answer nor in its timing. The pacing is checked by the server's log line
// for the code path, never by a clock.
func TestBannedBrowserLogin(t *testing.T) {
	t.Parallel()
	srv := StartServer(t)
	srv.AddUser(t, "dora", "qben-pw-1-e2e-pass")
	const src = "127.0.0.70"
	d := &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{
		Transport:     &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // self-signed test certificate
		Jar:           jar,
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	reToken := regexp.MustCompile(`name="token" value="([^"]+)"`)
	signIn := func(pw string) (int, string) {
		t.Helper()
		resp, err := hc.Get(srv.DAVURL + "/ui/login")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := reToken.FindSubmatch(page)
		if m == nil {
			t.Fatalf("no token on the login page: %s", page)
		}
		form := url.Values{"token": {string(m[1])}, "username": {"dora"}, "password": {pw}}
		req, _ := http.NewRequest(http.MethodPost, srv.DAVURL+"/ui/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", srv.DAVURL)
		resp, err = hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, fmt.Sprint(resp.Header.Values("Set-Cookie")) + "\n" + string(body)
	}
	// 10 wrong passwords, in parallel (no delays), ban the address.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); davLogin(t.Context(), srv, src, "dora", fmt.Sprintf("wrong-%d", i)) }()
	}
	wg.Wait()
	waitRecord(t, srv, 30*time.Second, "ban of "+src, banned("address", src))
	// A real failure, from an address that is not banned, for comparison.
	srcFail := "127.0.0.71"
	d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(srcFail)}
	failCode, failPage := signIn("wrong")
	d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	hc.Transport.(*http.Transport).CloseIdleConnections()
	bannedCode, bannedPage := signIn("qben-pw-1-e2e-pass")
	if bannedCode != failCode || failCode != http.StatusUnauthorized {
		t.Errorf("banned sign-in %d, failed sign-in %d, want 401 both", bannedCode, failCode)
	}
	if bannedPage != failPage {
		t.Errorf("banned sign-in answer differs from a failure's:\n%s\n---\n%s", bannedPage, failPage)
	}
	if n := len(records(srv, func(r testutil.Record) bool { return r.Message == "users: refusal paced like a failure" })); n != 1 {
		t.Errorf("%d paced refusals logged, want 1", n)
	}
}
