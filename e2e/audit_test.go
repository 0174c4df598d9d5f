package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// auditRecord is the audit trail's JSON schema (docs/AUDIT.md).
type auditRecord struct {
	V       int    `json:"v"`
	User    string `json:"user"`
	Admin   string `json:"admin"`
	Remote  string `json:"remote"`
	Proto   string `json:"proto"`
	Session string `json:"session"`
	Op      string `json:"op"`
	Path    string `json:"path"`
	Path2   string `json:"path2"`
	Bytes   int64  `json:"bytes"`
	Result  string `json:"result"`
	Error   string `json:"error"`
	Link    string `json:"link"`
	Detail  string `json:"detail"`
}

func auditQuery(t *testing.T, s *Server, args ...string) []auditRecord {
	t.Helper()
	out, err := s.CLI(t, append([]string{"audit", "query", "--json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var rs []auditRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit query line %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestAuditEveryProtocol is issue 19's "done when": one operation of every
// kind through every way in finds exactly one matching record with the
// right user, and neither the trail nor the operational log (with
// --log-names hash) holds a file name that was uploaded, renamed and
// downloaded.
func TestAuditEveryProtocol(t *testing.T) {
	NeedTool(t, "curl")
	NeedTool(t, "ssh")
	s := StartServer(t, WithServeArgs("--log-names", "hash"))
	const pw = "nhqvg-pw-1-e2e-pass"
	key := s.AddUser(t, "alice", pw)
	// The secret: a name that must appear nowhere but in the client's view.
	secret := "Zebra-" + RandomName()
	src := RandomFile(t, 70000)
	local := t.TempDir()
	ssh := func(args ...string) string {
		t.Helper()
		full := append(s.SSHOpts(key), "-p", s.SFTPPort, "alice@"+s.SFTPHost)
		out, err := exec.Command("ssh", append(full, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh %v: %v %s", args, err, out)
		}
		return string(out)
	}
	// SFTP (OpenSSH sftp: the fast path serves the transfers).
	up, moved := "/sftp-"+secret+".up", "/sftp-"+secret+".moved"
	batch := fmt.Sprintf("put %s %s\nrename %s %s\nget %s %s\nmkdir /sftp-dir\nrmdir /sftp-dir\n", src, up, up, moved, moved, filepath.Join(local, "g1"))
	if out, err := s.SFTPBatch(t, "alice", key, batch); err != nil {
		t.Fatalf("sftp: %v %s", err, out)
	}
	// The checksum command over SSH exec.
	if out := ssh("md5sum", moved); !strings.Contains(out, "  "+moved) {
		t.Fatalf("md5sum: %s", out)
	}
	// SCP, legacy protocol and SFTP mode.
	for _, m := range []struct{ name, flag, proto string }{{"legacy", "-O", "scp"}, {"sftpmode", "", "sftp"}} {
		p := "/scp-" + m.name + "-" + secret
		args := []string{src, "R:" + p}
		dl := []string{"R:" + p, filepath.Join(local, "scp-"+m.name)}
		if m.flag != "" {
			args = append([]string{m.flag}, args...)
			dl = append([]string{m.flag}, dl...)
		}
		for _, a := range [][]string{args, dl} {
			if out, err := s.scp(t, "alice", key, a...); err != nil {
				t.Fatalf("scp %s: %v %s", m.name, err, out)
			}
		}
	}
	// WebDAV with curl: upload, move, download, delete.
	dav := func(args ...string) {
		t.Helper()
		if out, err := s.Curl(t, "alice", pw, append([]string{"-f", "-o", "/dev/null"}, args...)...); err != nil {
			t.Fatalf("curl %v: %v %s", args, err, out)
		}
	}
	dup, dmv := "/dav-"+secret+".up", "/dav-"+secret+".moved"
	dav("-T", src, s.DAVURL+dup)
	dav("-X", "MOVE", "-H", "Destination: "+s.DAVURL+dmv, s.DAVURL+dup)
	dav(s.DAVURL + dmv)
	// A failed WebDAV login.
	if out, _ := s.Curl(t, "alice", "wrong", "-o", "/dev/null", "-w", "%{http_code}", s.DAVURL+"/"); out != "401" {
		t.Fatalf("wrong password: %s", out)
	}
	// The browser: sign in with a session cookie, download.
	jar := s.CurlBrowserLogin(t, "alice", pw)
	web := filepath.Join(local, "web")
	if out, err := s.Curl(t, "", "", "-f", "-b", jar, "-o", web, s.DAVURL+"/ui/dl"+dmv); err != nil {
		t.Fatalf("browser download: %v %s", err, out)
	}
	SameFile(t, src, web)
	dav("-X", "DELETE", s.DAVURL+dmv)
	// A share link (created by the admin CLI), downloaded by a visitor.
	if out, err := s.Curl(t, "alice", pw, "-f", "-T", src, s.DAVURL+"/shared-"+secret); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	out, err := s.CLI(t, "share", "create", "--public-url", s.DAVURL, "alice", "/shared-"+secret)
	if err != nil {
		t.Fatal(err)
	}
	link := strings.TrimSpace(out)
	if out, err := s.Curl(t, "", "", "-f", "-o", filepath.Join(local, "shared"), link+"/download"); err != nil {
		t.Fatalf("link download: %v %s", err, out)
	}
	// Groups, a shared folder and an invitation through the admin socket,
	// then an upload into the folder.
	for _, args := range [][]string{{"group", "add", "staff"}, {"group", "members", "staff", "--add", "alice"},
		{"folder", "add", "cases"}, {"folder", "grant", "cases", "@staff", "--perms", "all"}, {"invite", "create"}} {
		if _, err := s.CLI(t, args...); err != nil {
			t.Fatal(args, err)
		}
	}
	inFolder := "/Shared/cases/f-" + secret
	dav("-T", src, s.DAVURL+inFolder)
	if _, err := s.CLI(t, "user", "disable", "alice"); err != nil {
		t.Fatal(err)
	}
	s.Stop(t) // a clean stop writes everything

	rs := auditQuery(t, s)
	one := func(proto, op, path string, check func(auditRecord) string) {
		t.Helper()
		var got []auditRecord
		for _, r := range rs {
			if r.Proto == proto && r.Op == op && r.Path == path {
				got = append(got, r)
			}
		}
		if len(got) != 1 {
			t.Errorf("%s %s %s: %d records, want 1: %+v", proto, op, path, len(got), got)
			return
		}
		r := got[0]
		if r.V != 1 || r.Result != "ok" || (r.Remote == "") != (proto == "admin") {
			t.Errorf("%s %s %s: %+v", proto, op, path, r)
		}
		if check != nil {
			if msg := check(r); msg != "" {
				t.Errorf("%s %s %s: %s: %+v", proto, op, path, msg, r)
			}
		}
	}
	alice := func(r auditRecord) string {
		if r.User != "alice" {
			return "user " + r.User
		}
		return ""
	}
	bytesN := func(n int64) func(auditRecord) string {
		return func(r auditRecord) string {
			if m := alice(r); m != "" {
				return m
			}
			if r.Bytes != n {
				return fmt.Sprintf("bytes %d", r.Bytes)
			}
			return ""
		}
	}
	one("sftp", "write", up, bytesN(70000))
	one("sftp", "rename", up, func(r auditRecord) string {
		if r.Path2 != moved {
			return "path2 " + r.Path2
		}
		return alice(r)
	})
	one("sftp", "read", moved, bytesN(70000))
	one("sftp", "mkdir", "/sftp-dir", alice)
	one("sftp", "rmdir", "/sftp-dir", alice)
	one("ssh", "checksum", moved, alice)
	one("scp", "write", "/scp-legacy-"+secret, bytesN(70000))
	one("scp", "read", "/scp-legacy-"+secret, bytesN(70000))
	one("sftp", "write", "/scp-sftpmode-"+secret, bytesN(70000))
	one("sftp", "read", "/scp-sftpmode-"+secret, bytesN(70000))
	one("webdav", "write", dup, bytesN(70000))
	one("webdav", "rename", dup, func(r auditRecord) string {
		if r.Path2 != dmv {
			return "path2 " + r.Path2
		}
		return alice(r)
	})
	one("webdav", "read", dmv, bytesN(70000))
	one("webdav", "remove", dmv, alice)
	one("web", "read", dmv, func(r auditRecord) string {
		if r.Session == "" {
			return "no session"
		}
		return bytesN(70000)(r)
	})
	one("share", "share.get", "/shared-"+secret, func(r auditRecord) string {
		if r.Link == "" || !strings.HasPrefix(r.Remote, "127.0.0.1:") {
			return "link or visitor"
		}
		return bytesN(70000)(r)
	})
	one("admin", "share.create", "/shared-"+secret, func(r auditRecord) string {
		if r.Admin == "" || r.Link == "" {
			return "admin or link missing"
		}
		return alice(r)
	})
	one("webdav", "write", inFolder, bytesN(70000))
	count := func(match func(auditRecord) bool) int {
		n := 0
		for _, r := range rs {
			if match(r) {
				n++
			}
		}
		return n
	}
	if n := count(func(r auditRecord) bool {
		return r.Proto == "admin" && r.Op == "user.add" && r.User == "alice" && r.Admin != ""
	}); n != 1 {
		t.Errorf("user.add records: %d", n)
	}
	for op, detail := range map[string]string{"group.add": "group=staff", "group.mod": "group=staff add=alice del=",
		"folder.add": "folder=cases quota_bytes=0 quota_files=0", "folder.grant": "folder=cases to=@staff perms=all"} {
		if n := count(func(r auditRecord) bool {
			return r.Proto == "admin" && r.Op == op && r.Detail == detail && r.Admin != "" && r.Result == "ok"
		}); n != 1 {
			t.Errorf("%s %q records: %d", op, detail, n)
		}
	}
	if n := count(func(r auditRecord) bool {
		return r.Proto == "admin" && r.Op == "invite.create" && strings.HasPrefix(r.Detail, "id=") && r.Admin != ""
	}); n != 1 {
		t.Errorf("invite.create records: %d", n)
	}
	if n := count(func(r auditRecord) bool { return r.Proto == "admin" && r.Op == "user.mod" && r.User == "alice" }); n != 1 {
		t.Errorf("user.mod (disable) records: %d", n)
	}
	if n := count(func(r auditRecord) bool {
		return r.Proto == "webdav" && r.Op == "login" && r.Result == "fail" && r.User == "alice" && r.Error == "auth"
	}); n != 1 {
		t.Errorf("failed WebDAV logins: %d", n)
	}
	if n := count(func(r auditRecord) bool {
		return r.Proto == "web" && r.Op == "login" && r.Result == "ok" && r.User == "alice"
	}); n != 1 {
		t.Errorf("browser logins: %d", n)
	}
	// Every SSH connection: a login, a session start and an end (with bytes).
	starts := count(func(r auditRecord) bool { return r.Op == "session.start" && r.Proto == "ssh" && r.User == "alice" })
	ends := count(func(r auditRecord) bool { return r.Op == "session.end" && r.Proto == "ssh" && r.User == "alice" })
	logins := count(func(r auditRecord) bool {
		return r.Op == "login" && r.Proto == "ssh" && r.User == "alice" && r.Result == "ok"
	})
	if starts != 6 || ends != 6 || logins != 6 { // sftp, md5sum, 4 scp
		t.Errorf("ssh logins %d, session starts %d, ends %d; want 6 each", logins, starts, ends)
	}
	// Queries filter: alice's reads under / over every protocol.
	// (sftp, scp twice, webdav, browser; the link's is share.get)
	if n := len(auditQuery(t, s, "--user", "alice", "--op", "read", "--under", "/")); n != 5 {
		t.Errorf("alice's reads: %d, want 5", n)
	}
	if n := len(auditQuery(t, s, "--path", moved)); n != 3 { // rename (path2), read, checksum
		t.Errorf("records of %s: %d, want 3", moved, n)
	}
	if out, err := s.CLI(t, "audit", "verify"); err != nil || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("audit verify: %v %s", err, out)
	}
	// No name in the trail's files or in the operational log.
	auditDir := filepath.Join(s.DataDir, "audit")
	ents, err := os.ReadDir(auditDir)
	if err != nil || len(ents) < 3 {
		t.Fatalf("audit dir: %v %v", ents, err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(auditDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("alice")) {
			t.Errorf("audit file %s holds a name in the clear", e.Name())
		}
	}
	if strings.Contains(s.Log(), secret) {
		t.Errorf("the operational log names the file with --log-names hash:\n%s", linesWith(s.Log(), secret))
	}
	if !strings.Contains(s.Log(), "path=h:") {
		t.Error("no hashed names in the log")
	}
	// The access log names the browser's user, not "(ui)", once signed in.
	for _, l := range strings.Split(s.Log(), "\n") {
		if strings.Contains(l, `msg="dav request"`) && strings.Contains(l, "bytes=70000") && !strings.Contains(l, "user=alice") && !strings.Contains(l, "user=(link)") {
			t.Errorf("download logged without its user: %s", l)
		}
	}
}

// TestAuditTamperCLI: key rotation keeps the trail readable and is
// recorded with its admin; `audit verify` exits non-zero and names the segment
// and record of an edited record in a real server's trail.
func TestAuditTamperCLI(t *testing.T) {
	s := StartServer(t, WithServeArgs("--audit-forward", "stdout"))
	s.AddUser(t, "bob", "gnzcre-pw-1-e2e-pass")
	for i := range 3 {
		if out, err := s.Curl(t, "bob", "gnzcre-pw-1-e2e-pass", "-f", "-X", "MKCOL", fmt.Sprintf("%s/d%d", s.DAVURL, i)); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	// Rotating the KEK (through the running server) re-wraps the audit key:
	// the old KEK is retired, the whole trail stays readable.
	if out, err := s.CLI(t, "key", "rotate"); err != nil {
		t.Fatalf("key rotate: %v %s", err, out)
	}
	s.Stop(t)
	if out, err := s.CLI(t, "audit", "verify"); err != nil || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("audit verify after key rotate: %v %s", err, out)
	}
	// --audit-forward stdout: the same records as JSON lines, for a SIEM.
	if n := strings.Count(s.Log(), `"op":"mkdir","path":"/d`); n != 3 {
		t.Fatalf("forwarded mkdir records: %d\n%s", n, s.Log())
	}
	rot := auditQuery(t, s, "--op", "key.rotate")
	if len(rot) != 1 || rot[0].Admin == "" || rot[0].Result != "ok" {
		t.Fatalf("key.rotate records: %+v", rot)
	}
	seg := filepath.Join(s.DataDir, "audit", fmt.Sprintf("%020d.seg", 1))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5] ^= 1 // inside the last record's tag
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := s.CLI(t, "audit", "verify")
	if err == nil || !regexp.MustCompile(`TAMPERED segment 1 record \d+: authentication failed`).MatchString(out) {
		t.Fatalf("audit verify of a tampered trail: %v\n%s", err, out)
	}
}

func linesWith(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
