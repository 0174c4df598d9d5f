package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShareLinks drives share links end to end with curl and unzip against
// one real server: links made by the CLI through the admin socket; file
// download with -OJ, Range and `curl -C -` resume; the download cap; a
// folder zip that unzips to identical bytes; an upload-only folder that
// takes files and refuses listing and download; revoke, owner disabled,
// owner deleted, file deleted: each a 404 with the page of a token nobody
// made; password guessing banned like a login. (Expiry, the owner losing a
// right and --allow-from: TestShareLinkPublicURLAndDeaths; expiry on an
// injected clock also in the shares and webui unit tests.)
func TestShareLinks(t *testing.T) {
	NeedTool(t, "curl")
	NeedTool(t, "unzip")
	s := StartServer(t)
	s.AddUser(t, "alice", "nyvpr-pass-1-e2e-pass")
	big := RandomFile(t, 3<<20)
	small := RandomFile(t, 70000)
	for _, c := range [][]string{
		{"-f", "-T", big, s.DAVURL + "/big.bin"},
		{"-f", "-X", "MKCOL", s.DAVURL + "/album"},
		{"-f", "-X", "MKCOL", s.DAVURL + "/album/sub"},
		{"-f", "-X", "MKCOL", s.DAVURL + "/inbox"},
		{"-f", "-T", small, s.DAVURL + "/album/one.dat"},
		{"-f", "-T", big, s.DAVURL + "/album/sub/two.dat"},
	} {
		if out, err := s.Curl(t, "alice", "nyvpr-pass-1-e2e-pass", c...); err != nil {
			t.Fatalf("curl %v: %v %s", c, err, out)
		}
	}
	share := func(stdin string, args ...string) string {
		t.Helper()
		// No --public-url on either side: the server's own address.
		out, err := s.CLIInput(t, stdin, append([]string{"share", "create"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		u := strings.TrimSpace(out)
		if !strings.HasPrefix(u, s.DAVURL+"/s/") {
			t.Fatalf("printed link %q", u)
		}
		return u
	}
	status := func(args ...string) string {
		t.Helper()
		out, _ := s.Curl(t, "", "", append([]string{"-o", "/dev/null", "-w", "%{http_code}"}, args...)...)
		return strings.TrimSpace(out)
	}
	dir := t.TempDir()
	curlIn := func(args ...string) {
		t.Helper()
		cmd := exec.Command("curl", append([]string{"-sS", "-k", "-f"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl %v: %v %s", args, err, out)
		}
	}

	// Every dead link answers the page a token nobody made gets.
	_, notFound := linkGet(t, s, s.DAVURL+"/s/"+strings.Repeat("A", 32))
	dead := func(what string, args ...string) {
		t.Helper()
		code, body := linkGet(t, s, args[len(args)-1], args[:len(args)-1]...)
		if code != "404" || body != notFound {
			t.Errorf("%s: %s, want 404 with the unknown token's page", what, code)
		}
	}

	// File link: -OJ names the file; a partial range, then -C - resumes.
	link := share("", "alice", "/big.bin", "--max-downloads", "2")
	curlIn("-OJ", link+"/download")
	SameFile(t, big, filepath.Join(dir, "big.bin"))
	part := filepath.Join(dir, "part.bin")
	curlIn("-r", "0-999999", "-o", part, link+"/download")
	curlIn("-C", "-", "-o", part, link+"/download")
	SameFile(t, big, part)
	// Two complete downloads (the partial one did not count): used up.
	dead("used-up link", link)
	out, err := s.CLI(t, "share", "list", "--user", "alice", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ls []struct {
		ID        string `json:"id"`
		Downloads int64  `json:"downloads"`
	}
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 || ls[0].Downloads != 2 {
		t.Fatalf("share list: %s %v", out, err)
	}
	if strings.Contains(out, strings.TrimPrefix(link, s.DAVURL+"/s/")) {
		t.Fatal("share list shows the token")
	}
	if strings.Contains(s.Log(), strings.TrimPrefix(link, s.DAVURL+"/s/")) {
		t.Fatal("the server log holds a token")
	}

	// Folder link: zip unzips to identical bytes.
	album := share("", "alice", "/album")
	zipFile := filepath.Join(dir, "album.zip")
	curlIn("-o", zipFile, album+"/zip")
	if out, err := exec.Command("unzip", "-t", zipFile).CombinedOutput(); err != nil {
		t.Fatalf("unzip -t: %v %s", err, out)
	}
	ex := filepath.Join(dir, "x")
	if out, err := exec.Command("unzip", "-q", "-d", ex, zipFile).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v %s", err, out)
	}
	SameFile(t, small, filepath.Join(ex, "one.dat"))
	SameFile(t, big, filepath.Join(ex, "sub", "two.dat"))
	curlIn("-o", filepath.Join(dir, "one"), album+"/file/one.dat")
	SameFile(t, small, filepath.Join(dir, "one"))
	dead("escape from folder link", album+"/file/../big.bin")
	dead("encoded escape from folder link", "--path-as-is", album+"/file/%2e%2e/big.bin")

	// Upload-only: files go in (a collision gets a suffix), nothing comes out.
	inbox := share("", "alice", "/inbox", "--upload-only")
	curlIn("-F", "file=@"+small+";filename=doc.dat", inbox+"/upload")
	curlIn("-F", "file=@"+small+";filename=doc.dat", inbox+"/upload")
	for _, name := range []string{"doc.dat", "doc%20(1).dat"} {
		got := filepath.Join(dir, "got")
		if out, err := s.Curl(t, "alice", "nyvpr-pass-1-e2e-pass", "-f", "-o", got, s.DAVURL+"/inbox/"+name); err != nil {
			t.Fatalf("owner reads %s: %v %s", name, err, out)
		}
		SameFile(t, small, got)
	}
	for _, p := range []string{"/zip", "/file/doc.dat", "/download"} {
		dead("upload-only "+p, inbox+p)
	}

	// Revoke; owner disabled; file deleted; owner deleted: 404.
	rev := share("", "alice", "/album/one.dat")
	var id string
	out, _ = s.CLI(t, "share", "list", "--json")
	var all []struct {
		ID   string `json:"id"`
		Path string `json:"path"`
	}
	_ = json.Unmarshal([]byte(out), &all)
	for _, l := range all {
		if l.Path == "/album/one.dat" {
			id = l.ID
		}
	}
	if st := status(rev + "/download"); st != "200" {
		t.Fatalf("fresh link: %s", st)
	}
	if _, err := s.CLI(t, "share", "revoke", id); err != nil {
		t.Fatal(err)
	}
	dead("revoked", rev+"/download")
	if st := status(album); st != "200" {
		t.Fatalf("album: %s", st)
	}
	if _, err := s.CLI(t, "user", "disable", "alice"); err != nil {
		t.Fatal(err)
	}
	dead("owner disabled", album)
	if _, err := s.CLI(t, "user", "enable", "alice"); err != nil {
		t.Fatal(err)
	}
	if st := status(album); st != "200" {
		t.Errorf("owner enabled again: %s", st)
	}
	if out, err := s.Curl(t, "alice", "nyvpr-pass-1-e2e-pass", "-f", "-X", "DELETE", s.DAVURL+"/album/one.dat"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	oneLink := share("", "alice", "/album/sub/two.dat")
	if out, err := s.Curl(t, "alice", "nyvpr-pass-1-e2e-pass", "-f", "-X", "DELETE", s.DAVURL+"/album/sub/two.dat"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	dead("file deleted", oneLink)
	s.AddUser(t, "bob", "obo-pass-1-e2e-pass")
	bobFile := RandomFile(t, 1000)
	if out, err := s.Curl(t, "bob", "obo-pass-1-e2e-pass", "-f", "-T", bobFile, s.DAVURL+"/b.bin"); err != nil {
		t.Fatalf("bob put: %v %s", err, out)
	}
	bobLink := share("", "bob", "/b.bin")
	// The owner deleted: the link dies with the account.
	if _, err := s.CLI(t, "user", "del", "bob"); err != nil {
		t.Fatal(err)
	}
	dead("owner deleted", bobLink)
	// Password: guessing is banned like a login (10 failures per address).
	pw := share("open sesame\n", "alice", "/big.bin", "--password-stdin")
	if st := status(pw + "/download"); st != "401" {
		t.Fatalf("no password: %s", st)
	}
	codes := map[string]int{}
	for range 11 {
		codes[status("-d", "password=wrong", pw)]++
	}
	if codes["401"] != 10 || codes["429"] != 1 {
		t.Fatalf("guesses answered %v, want 10×401 then 429", codes)
	}
	if st := status("-d", "password=open sesame", pw); st != "429" {
		t.Errorf("right password while banned: %s", st)
	}
	if out, _ := s.CLI(t, "ban", "list"); !strings.Contains(out, "127.0.0.1") {
		t.Errorf("ban list: %s", out)
	}
}

// linkGet fetches url with curl (no account) and returns the status code
// and body.
func linkGet(t *testing.T, s *Server, url string, args ...string) (string, string) {
	t.Helper()
	body := filepath.Join(t.TempDir(), "body")
	out, err := s.Curl(t, "", "", append(append([]string{"-o", body, "-w", "%{http_code}"}, args...), url)...)
	if err != nil {
		t.Fatalf("curl %s: %v %s", url, err, out)
	}
	b, err := os.ReadFile(body)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out), string(b)
}

// TestShareLinkPublicURLAndDeaths runs a server with --public-url: the
// links share create and invite create print through the admin socket
// start with it, without the flag on the command; wget names a download
// by Content-Disposition. Then every way a link
// dies that TestShareLinks does not cover (expiry on the real clock, the
// owner's download or list right removed by `user set`, an address outside
// --allow-from) answers 404 with the very page an unknown token gets, so
// a holder cannot tell which.
func TestShareLinkPublicURLAndDeaths(t *testing.T) {
	NeedTool(t, "curl")
	NeedTool(t, "wget")
	const public = "https://files.example.test"
	s := StartServer(t, WithServeArgs("--public-url", public+"/"))
	s.AddUser(t, "alice", "nyvpr-pass-1-e2e-pass")
	file := RandomFile(t, 5000)
	for _, c := range [][]string{
		{"-f", "-T", file, s.DAVURL + "/f.bin"},
		{"-f", "-X", "MKCOL", s.DAVURL + "/d"},
		{"-f", "-T", file, s.DAVURL + "/d/in.bin"},
	} {
		if out, err := s.Curl(t, "alice", "nyvpr-pass-1-e2e-pass", c...); err != nil {
			t.Fatalf("curl %v: %v %s", c, err, out)
		}
	}
	share := func(args ...string) string {
		t.Helper()
		out, err := s.CLI(t, append([]string{"share", "create", "alice"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		u := strings.TrimSpace(out)
		if !strings.HasPrefix(u, public+"/s/") {
			t.Fatalf("printed link %q, want it under the server's --public-url %s", u, public)
		}
		return s.DAVURL + strings.TrimPrefix(u, public) // the test reaches the server directly
	}
	if out, err := s.CLI(t, "invite", "create"); err != nil || !strings.HasPrefix(out, public+"/ui/signup?token=") {
		t.Fatalf("invite create printed %q (%v), want it under %s", out, err, public)
	}
	// The reference: a token nobody made.
	code, notFound := linkGet(t, s, s.DAVURL+"/s/"+strings.Repeat("A", 32))
	if code != "404" || !strings.Contains(notFound, "no longer valid") {
		t.Fatalf("unknown token: %s %q", code, notFound)
	}
	dead := func(what, url string) {
		t.Helper()
		code, body := linkGet(t, s, url)
		if code != "404" || body != notFound {
			t.Errorf("%s: %s, want 404 with the unknown token's page; body %q", what, code, body)
		}
	}
	alive := func(what, url string) {
		t.Helper()
		if code, _ := linkGet(t, s, url); code != "200" {
			t.Fatalf("%s: %s, want 200", what, code)
		}
	}

	// Expiry, on the server's own clock: a link of 2 s works, then dies.
	// The first check counts only if it ran within the 2 s; no timing
	// threshold either way, only a generous deadline for the poll.
	t0 := time.Now()
	exp := share("/f.bin", "--expires", "2s")
	code, _ = linkGet(t, s, exp+"/download")
	switch {
	case code == "200":
	case time.Since(t0) < 2*time.Second:
		t.Fatalf("fresh 2s link: %s", code)
	default:
		t.Logf("the machine took over 2 s to make and fetch the link; only its expiry is checked")
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		if code, _ := linkGet(t, s, exp+"/download"); code == "404" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("2s link still works after 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	dead("expired", exp)
	dead("expired, download", exp+"/download")

	// The owner's rights, changed through the running server by `user set`.
	fl, dl := share("/f.bin"), share("/d")
	alive("file link", fl+"/download")
	// wget takes the name from Content-Disposition, as curl -OJ does.
	wdir := t.TempDir()
	if out, err := exec.Command("wget", "-q", "--no-check-certificate", "--content-disposition", "-P", wdir, fl+"/download").CombinedOutput(); err != nil {
		t.Fatalf("wget: %v %s", err, out)
	}
	SameFile(t, file, filepath.Join(wdir, "f.bin"))
	alive("folder link", dl)
	alive("folder zip", dl+"/zip")
	setPerms := func(p string) {
		t.Helper()
		if _, err := s.CLI(t, "user", "set", "alice", "--perms", p); err != nil {
			t.Fatal(err)
		}
	}
	setPerms("list,upload,overwrite,delete,rename,mkdir,chmod") // download removed
	dead("owner lost download: file", fl+"/download")
	dead("owner lost download: folder", dl)
	dead("owner lost download: folder zip", dl+"/zip")
	dead("owner lost download: folder file", dl+"/file/in.bin")
	setPerms("download,upload,overwrite,delete,rename,mkdir,chmod") // list removed
	alive("owner without list: file link", fl+"/download")
	dead("owner lost list: folder", dl)
	dead("owner lost list: folder zip", dl+"/zip")
	setPerms("list,download,upload,overwrite,delete,rename,mkdir,chmod")
	alive("rights back: folder zip", dl+"/zip")

	// Address ranges: this test's curl comes from 127.0.0.1.
	dead("address outside --allow-from", share("/f.bin", "--allow-from", "192.0.2.0/24,2001:db8::/32")+"/download")
	alive("address inside --allow-from", share("/f.bin", "--allow-from", "192.0.2.0/24,127.0.0.0/8")+"/download")
}
