package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShareLinks drives share links end to end with curl and unzip against
// one real server: links made by the CLI through the admin socket; file
// download with -OJ, Range and `curl -C -` resume; the download cap; a
// folder zip that unzips to identical bytes; an upload-only folder that
// takes files and refuses listing and download; revoke, owner disabled,
// owner deleted, file deleted: each a 404; password guessing banned like
// a login. (Expiry on an injected clock, and the owner losing a right,
// which no command changes yet, are in the shares and webui unit tests.)
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
		out, err := s.CLIInput(t, stdin, append([]string{"share", "create", "--public-url", s.DAVURL}, args...)...)
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

	// File link: -OJ names the file; a partial range, then -C - resumes.
	link := share("", "alice", "/big.bin", "--max-downloads", "2")
	curlIn("-OJ", link+"/download")
	SameFile(t, big, filepath.Join(dir, "big.bin"))
	part := filepath.Join(dir, "part.bin")
	curlIn("-r", "0-999999", "-o", part, link+"/download")
	curlIn("-C", "-", "-o", part, link+"/download")
	SameFile(t, big, part)
	// Two complete downloads (the partial one did not count): used up.
	if st := status(link); st != "404" {
		t.Fatalf("used-up link: %s", st)
	}
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
	if st := status(album + "/file/../big.bin"); st != "404" {
		t.Errorf("escape from folder link: %s", st)
	}
	if st := status("--path-as-is", album+"/file/%2e%2e/big.bin"); st != "404" {
		t.Errorf("encoded escape from folder link: %s", st)
	}

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
		if st := status(inbox + p); st != "404" {
			t.Errorf("upload-only %s: %s", p, st)
		}
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
	if st := status(rev + "/download"); st != "404" {
		t.Errorf("revoked: %s", st)
	}
	if st := status(album); st != "200" {
		t.Fatalf("album: %s", st)
	}
	if _, err := s.CLI(t, "user", "disable", "alice"); err != nil {
		t.Fatal(err)
	}
	if st := status(album); st != "404" {
		t.Errorf("owner disabled: %s", st)
	}
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
	if st := status(oneLink); st != "404" {
		t.Errorf("file deleted: %s", st)
	}
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
	if st := status(bobLink); st != "404" {
		t.Errorf("owner deleted: %s", st)
	}
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
