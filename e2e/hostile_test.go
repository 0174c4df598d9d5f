package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// ---- path traversal and planted symlinks ----

// TestHostilePaths tries to leave the home over SFTP and WebDAV: "..",
// encoded dots and slashes, NUL bytes, and symlinks planted in the store
// (by someone with the disk, or a restored backup) that point to another
// user's home, to /etc and to /. Nothing outside the home may be read,
// listed, written, renamed, deleted or locked; the server keeps serving.
func TestHostilePaths(t *testing.T) {
	srv := StartServer(t)
	aliceKey := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	bobKey := srv.AddUser(t, "bob", "obo-pw-1-e2e-pass")
	bob := newSFTP(t, srv, "bob", bobKey)
	secret := []byte("BOB-SECRET-" + RandomName())
	if err := sftpPut(bob, "secret.txt", secret); err != nil {
		t.Fatal(err)
	}
	if err := bob.Mkdir("bdir"); err != nil {
		t.Fatal(err)
	}
	if err := sftpPut(bob, "bdir/x", secret); err != nil {
		t.Fatal(err)
	}
	bobBefore := treeState(t, filepath.Join(srv.DataDir, "store", "bob"))
	passwdBefore := fileDigest(t, "/etc/passwd")

	// Plant symlinks in alice's home on disk.
	aliceDir := filepath.Join(srv.DataDir, "store", "alice")
	bobDir := filepath.Join(srv.DataDir, "store", "bob")
	if err := os.MkdirAll(filepath.Join(aliceDir, "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"to-etc":        "/etc",
		"to-passwd":     "/etc/passwd",
		"to-root":       "/",
		"to-bob":        "../bob",
		"to-bob-abs":    bobDir,
		"to-bob-secret": "../bob/secret.txt",
		"dir/up":        "../../bob",
		"loop":          "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(aliceDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	alice := newSFTP(t, srv, "alice", aliceKey)
	if err := sftpPut(alice, "mine", []byte("alice's own")); err != nil {
		t.Fatal(err)
	}
	leaked := func(b []byte) bool {
		return bytes.Contains(b, secret) || bytes.Contains(b, []byte("root:x:0:0")) || bytes.Contains(b, []byte("root:*:"))
	}

	reads := []string{
		"../bob/secret.txt", "/../bob/secret.txt", "../../etc/passwd", "/../../../../etc/passwd",
		"./../bob/secret.txt", "dir/../../bob/secret.txt", "bob/../../bob/secret.txt",
		"to-etc/passwd", "to-passwd", "to-root/etc/passwd", "to-bob/secret.txt", "to-bob-abs/secret.txt",
		"to-bob-secret", "dir/up/secret.txt", "dir/up/bdir/x", "loop", "loop/x",
		"..\\bob\\secret.txt", "/etc/passwd", filepath.Join(bobDir, "secret.txt"),
	}
	t.Run("sftp-read", func(t *testing.T) {
		for _, p := range reads {
			got, err := sftpGet(alice, p)
			if leaked(got) {
				t.Errorf("read %q leaked another user's or the system's file", p)
			}
			if err == nil {
				t.Errorf("read %q succeeded (%d bytes)", p, len(got))
			}
			if fi, err := alice.Stat(p); err == nil && !fi.IsDir() && fi.Size() > 0 && strings.HasPrefix(p, "to-") {
				t.Logf("stat %q follows a planted symlink: size %d", p, fi.Size())
			}
		}
		for _, p := range []string{"..", "/..", "../bob", "../..", "to-etc", "to-bob", "to-bob-abs", "to-root", "dir/up", "/../bob/bdir"} {
			fis, err := alice.ReadDir(p)
			for _, fi := range fis {
				if n := fi.Name(); n == "secret.txt" || n == "bdir" || n == "passwd" || n == "shadow" || n == "etc" {
					t.Errorf("list %q shows %q from outside the home", p, n)
				}
			}
			_ = err
		}
		if rp, err := alice.RealPath("../../.."); err == nil && rp != "/" {
			t.Errorf("realpath ../../.. = %q, want /", rp)
		}
		if target, err := alice.ReadLink("to-etc"); err == nil {
			t.Errorf("readlink of a planted symlink revealed %q", target)
		}
		if err := alice.Symlink("/etc/passwd", "my-link"); err == nil {
			t.Errorf("client created a symlink")
		}
		if err := alice.Link("mine", "hard-link"); err == nil {
			if _, err := os.Lstat(filepath.Join(aliceDir, "hard-link")); err == nil {
				t.Logf("hard link created inside the home (allowed, stays inside)")
			}
		}
	})

	t.Run("openssh-get", func(t *testing.T) {
		for _, p := range []string{"../../etc/passwd", "to-etc/passwd", "to-bob/secret.txt", "../bob/secret.txt"} {
			local := filepath.Join(t.TempDir(), "out")
			out, err := srv.SFTPBatch(t, "alice", aliceKey, "get "+p+" "+local+"\n")
			got, _ := os.ReadFile(local)
			if err == nil || leaked(got) {
				t.Errorf("sftp get %s: err=%v leaked=%v\n%s", p, err, leaked(got), out)
			}
		}
	})

	t.Run("sftp-write", func(t *testing.T) {
		for _, p := range []string{"../bob/planted", "/../bob/planted", "to-bob/planted", "to-bob-abs/planted",
			"to-etc/planted", "to-root/tmp/planted", "dir/up/planted", "to-bob-secret", "to-passwd"} {
			if err := sftpPut(alice, p, []byte("planted")); err == nil {
				t.Errorf("write %q succeeded", p)
			}
		}
		for _, p := range []string{"to-bob/newdir", "../bob/newdir", "to-etc/newdir"} {
			if err := alice.Mkdir(p); err == nil {
				t.Errorf("mkdir %q succeeded", p)
			}
		}
		for _, p := range []string{"to-bob/stolen", "../bob/stolen", "to-bob-abs/stolen", "to-etc/stolen"} {
			if err := alice.Rename("mine", p); err == nil {
				t.Errorf("rename mine -> %q succeeded", p)
			}
			if err := alice.PosixRename("mine", p); err == nil {
				t.Errorf("posix-rename mine -> %q succeeded", p)
			}
		}
		for _, p := range []string{"to-bob/secret.txt", "../bob/secret.txt", "dir/up/secret.txt", "to-bob-abs/bdir"} {
			if err := alice.Rename(p, "taken"); err == nil {
				t.Errorf("rename %q -> taken succeeded", p)
			}
		}
		for _, p := range []string{"to-bob-secret", "to-passwd"} {
			_ = alice.Chmod(p, 0o777)
			_ = alice.Truncate(p, 0)
			_ = alice.Chtimes(p, time.Unix(0, 0), time.Unix(0, 0))
		}
		for _, p := range []string{"to-bob/secret.txt", "../bob/secret.txt", "dir/up/bdir/x", "to-bob/bdir"} {
			if err := alice.Remove(p); err == nil {
				t.Errorf("remove %q succeeded", p)
			}
		}
		_ = alice.RemoveAll("to-bob")
		_ = alice.RemoveAll("dir")
	})

	dav := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	davReads := []string{
		"/../bob/secret.txt", "/%2e%2e/bob/secret.txt", "/%2E%2E/bob/secret.txt", "/..%2fbob%2fsecret.txt",
		"/%2e%2e%2fbob%2fsecret.txt", "/..%5cbob%5csecret.txt", "/../../../../etc/passwd",
		"/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/to-etc/passwd", "/to-passwd", "/to-root/etc/passwd",
		"/to-bob-abs/secret.txt", "/to-bob-secret", "/loop", "/mine%00.txt", "/%00", "/mine%2500",
	}
	t.Run("webdav-read", func(t *testing.T) {
		for _, p := range davReads {
			for _, m := range []string{"GET", "HEAD", "PROPFIND"} {
				code, body, err := dav.do(m, p, nil, "Depth: 1")
				if err != nil {
					t.Errorf("%s %s: %v", m, p, err)
					continue
				}
				if leaked(body) || bytes.Contains(body, []byte("secret.txt")) || bytes.Contains(body, []byte(">passwd<")) {
					t.Errorf("%s %s leaked a file from outside the home: %d %.200s", m, p, code, body)
				}
				if code < 400 || code >= 500 {
					t.Errorf("%s %s: status %d, want a 4xx refusal", m, p, code)
				}
			}
		}
		// Raw request lines that Go's client would not send.
		for _, target := range []string{"/../bob/secret.txt", "/..%2f..%2f..%2fetc%2fpasswd", "..%2fbob%2fsecret.txt",
			"/to-etc/../../bob/secret.txt", "https://127.0.0.1/../bob/secret.txt", "//bob/secret.txt", "/./../bob/secret.txt"} {
			r, err := rawHTTP(t, srv, "GET "+target+" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "+basic("alice", "nyvpr-pw-1-e2e-pass")+"\r\nConnection: close\r\n\r\n")
			if err != nil {
				t.Errorf("raw GET %s: %v", target, err)
				continue
			}
			if leaked(r.Body) || r.Status == http.StatusOK {
				t.Errorf("raw GET %s: %d leaked=%v", target, r.Status, leaked(r.Body))
			}
		}
	})

	t.Run("webdav-write", func(t *testing.T) {
		for _, p := range []string{"/../bob/planted", "/%2e%2e/bob/planted", "/to-bob-abs/planted", "/to-etc/planted",
			"/to-root/tmp/planted", "/to-bob-secret", "/to-passwd", "/x%00y"} {
			code, _, err := dav.do("PUT", p, strings.NewReader("planted"))
			if err == nil && code/100 == 2 {
				t.Errorf("PUT %s: %d", p, code)
			}
			code, _, err = dav.do("MKCOL", p+"/sub", nil)
			if err == nil && code/100 == 2 {
				t.Errorf("MKCOL %s/sub: %d", p, code)
			}
		}
		for _, dst := range []string{"/../bob/stolen", "/%2e%2e/bob/stolen", "/to-bob-abs/stolen", "/to-etc/stolen"} {
			for _, m := range []string{"MOVE", "COPY"} {
				code, _, err := dav.do(m, "/mine", nil, "Destination: "+srv.DAVURL+dst, "Overwrite: T")
				if err == nil && code/100 == 2 {
					t.Errorf("%s /mine -> %s: %d", m, dst, code)
				}
			}
		}
		for _, src := range []string{"/to-bob-secret", "/to-passwd", "/../bob/secret.txt", "/to-bob-abs"} {
			code, _, err := dav.do("COPY", src, nil, "Destination: "+srv.DAVURL+"/copied", "Overwrite: T")
			if err == nil && code/100 == 2 {
				got, _ := dav.get("/copied")
				if leaked(got) {
					t.Errorf("COPY %s leaked its target into the home", src)
				}
			}
		}
		lockBody := `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`
		for _, p := range []string{"/../bob/secret.txt", "/to-bob-abs/secret.txt", "/to-etc/passwd"} {
			code, _, err := dav.do("LOCK", p, strings.NewReader(lockBody), "Depth: 0")
			if err == nil && code/100 == 2 {
				t.Errorf("LOCK %s: %d", p, code)
			}
			code, _, err = dav.do("PROPPATCH", p, strings.NewReader(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x:y xmlns:x="urn:x">z</x:y></D:prop></D:set></D:propertyupdate>`))
			if err == nil && code/100 == 2 {
				t.Errorf("PROPPATCH %s: %d", p, code)
			}
		}
		for _, p := range []string{"/../bob/secret.txt", "/%2e%2e/bob", "/to-bob-abs/secret.txt", "/to-etc/passwd", "/to-bob-abs", "/to-root"} {
			code, _, err := dav.do("DELETE", p, nil)
			if err == nil && code/100 == 2 && !strings.HasPrefix(p, "/to-") {
				t.Errorf("DELETE %s: %d", p, code)
			}
		}
	})

	if d := treeDiff(bobBefore, treeState(t, bobDir)); d != "" {
		t.Errorf("bob's home changed on disk:\n%s", d)
	}
	if got := fileDigest(t, "/etc/passwd"); got != passwdBefore {
		t.Errorf("/etc/passwd changed")
	}
	for _, p := range []string{"/etc/planted", "/etc/newdir", "/etc/stolen", "/tmp/planted"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	b := newSFTP(t, srv, "bob", bobKey)
	if got, err := sftpGet(b, "secret.txt"); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("bob's secret.txt after the attacks: %v", err)
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", aliceKey)
}

// treeDigest hashes the names, modes and contents of a directory tree.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	st := treeState(t, dir)
	for _, k := range slices.Sorted(maps.Keys(st)) {
		fmt.Fprintf(h, "%s %s\n", k, st[k])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// treeState maps every path under dir to its mode, size and content hash.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		v := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + sum(b)[:16]
		}
		st[strings.TrimPrefix(p, dir)] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// treeDiff describes how two treeStates differ.
func treeDiff(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "removed "+k)
		} else if w != v {
			out = append(out, fmt.Sprintf("changed %s: %s -> %s", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "added "+k+" "+b[k])
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sum(b)
}

// ---- malformed and oversized SFTP and SSH packets ----

func sftpPacket(typ byte, payload ...[]byte) []byte {
	body := bytes.Join(payload, nil)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)+1))
	b = append(b, typ)
	return append(b, body...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func sshString(s string) []byte {
	return append(u32(uint32(len(s))), s...)
}

var sftpInit = sftpPacket(1, u32(3))

// sftpOutcome sends payload on a fresh sftp subsystem channel and reports
// whether the server closed the channel ("closed") or still answers a
// REALPATH afterwards ("answered"). It fails the test if neither happens
// within the deadline (the server hangs on the input).
func sftpOutcome(t *testing.T, conn *ssh.Client, init bool, payload []byte) string {
	t.Helper()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer sess.Close()
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}
	result := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		for {
			var l [4]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				result <- "closed"
				return
			}
			n := binary.BigEndian.Uint32(l[:])
			if n == 0 || n > 1<<20 {
				result <- "bad reply"
				return
			}
			p := make([]byte, n)
			if _, err := io.ReadFull(br, p); err != nil {
				result <- "closed"
				return
			}
			if p[0] == 104 && binary.BigEndian.Uint32(p[1:5]) == 0x7777 { // SSH_FXP_NAME for our probe
				result <- "answered"
				return
			}
		}
	}()
	go func() {
		if init {
			_, _ = stdin.Write(sftpInit)
		}
		_, _ = stdin.Write(payload)
		_, _ = stdin.Write(sftpPacket(16, u32(0x7777), sshString("."))) // REALPATH "."
	}()
	select {
	case r := <-result:
		return r
	case <-time.After(60 * time.Second):
		t.Fatalf("server neither closed the channel nor answered within 60s")
		return ""
	}
}

// TestHostileSFTPPackets sends malformed and oversized SFTP packets on the
// sftp subsystem, and garbage at the SSH layer. The server must close the
// offending channel (or answer with an error and go on), never hang or
// crash, and keep serving the same connection's other channels and other
// clients.
func TestHostileSFTPPackets(t *testing.T) {
	srv, pprofAddr := startWithPprof(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	conn, err := dialSSH(srv, "", sshConfig("alice", keyAuth(t, key)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	alloc0 := allocated(t, pprofAddr)

	cases := []struct {
		name      string
		init      bool
		payload   []byte
		mustClose bool // framing is broken: the channel cannot go on
	}{
		{"huge-length", true, append(u32(0xFFFFFFFF), bytes.Repeat([]byte{0xAA}, 64)...), true},
		{"1GiB-length", true, append(u32(1<<30), 3, 0, 0, 0, 1), true},
		{"just-over-256KiB", true, append(u32(256<<10+1), bytes.Repeat([]byte{0}, 1000)...), true},
		{"zero-length", true, u32(0), true},
		{"huge-length-before-init", false, append(u32(0xFFFFFFF0), 1, 2, 3), true},
		{"garbage-before-init", false, randBytes(4096), false},
		{"unknown-type", true, sftpPacket(0xEE, u32(1), randBytes(32)), false},
		{"open-string-overflow", true, sftpPacket(3, u32(2), u32(0x7FFFFFFF), []byte("abc")), false},
		{"open-no-fields", true, sftpPacket(3), false},
		{"write-bad-handle", true, sftpPacket(6, u32(3), sshString("no-such-handle"), make([]byte, 8), sshString("data")), false},
		{"read-huge-length", true, sftpPacket(5, u32(4), sshString("h"), make([]byte, 8), u32(0xFFFFFFFF)), false},
		{"extended-garbage", true, sftpPacket(200, u32(5), sshString("posix-rename@openssh.com"), u32(0xFFFFFFFF)), false},
		{"setstat-bad-attrs", true, sftpPacket(9, u32(6), sshString("x"), u32(0xFFFFFFFF), randBytes(8)), false},
		{"many-opendir", true, bytes.Repeat(sftpPacket(11, u32(7), sshString(".")), 2000), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sftpOutcome(t, conn, tc.init, tc.payload)
			if got == "bad reply" || (tc.mustClose && got != "closed") {
				t.Errorf("outcome %q (want the channel closed)", got)
			}
			// The same connection still opens a working SFTP channel.
			c, err := sftp.NewClient(conn)
			if err != nil {
				t.Fatalf("a new sftp channel on the same connection: %v", err)
			}
			if _, err := c.ReadDir("."); err != nil {
				t.Errorf("list on a new channel: %v", err)
			}
			c.Close()
		})
	}

	// SSH layer: a binary packet with an absurd length after the version
	// exchange, and an endless version line, are dropped.
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"ssh-huge-packet", append([]byte("SSH-2.0-hostile\r\n"), append(u32(0xFFFFFFF0), randBytes(1024)...)...)},
		{"ssh-endless-banner", bytes.Repeat([]byte("A"), 300<<10)},
		{"ssh-garbage", randBytes(64 << 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", srv.SFTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			go func() { _, _ = nc.Write(tc.send) }()
			_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
			_, err = io.Copy(io.Discard, nc)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("server kept the connection open for 60s after %s", tc.name)
			}
		})
	}
	alloc1 := allocated(t, pprofAddr)
	t.Logf("hostile packets: server allocated %d KiB", (alloc1-alloc0)>>10)
	if alloc1-alloc0 > 256<<20 {
		t.Errorf("the server allocated %d MiB on hostile packets (length prefixes trusted?)", (alloc1-alloc0)>>20)
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
}

// ---- malformed and huge WebDAV bodies, Depth abuse ----

// patternReader yields n bytes of a repeated pattern.
type patternReader struct {
	pattern []byte
	n, off  int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	k := 0
	for k < len(b) {
		c := copy(b[k:], p.pattern[p.off%int64(len(p.pattern)):])
		k += c
		p.off += int64(c)
	}
	return k, nil
}

// hugeRequest sends method with a body of size bytes (or chunked when
// chunked is set) made of pattern over a raw connection while reading the
// response, and returns the status (0 if the server closed without one).
func hugeRequest(t *testing.T, srv *Server, method string, size int64, chunked bool, prefix, pattern string) int {
	t.Helper()
	nc, err := dialDAV(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Minute))
	head := method + " / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + basic("alice", "nyvpr-pw-1-e2e-pass") +
		"\r\nContent-Type: application/xml\r\nDepth: 0\r\n"
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := bufio.NewWriterSize(nc, 64<<10)
		defer w.Flush()
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		body := io.MultiReader(strings.NewReader(prefix), &patternReader{pattern: []byte(pattern), n: size - int64(len(prefix))})
		if !chunked {
			_, _ = io.Copy(w, body)
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if _, werr := fmt.Fprintf(w, "%x\r\n%s\r\n", n, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_, _ = io.WriteString(w, "0\r\n\r\n")
				return
			}
		}
	}()
	r, err := readRawResponse(bufio.NewReader(nc))
	nc.Close()
	wg.Wait()
	if err != nil || r == nil {
		t.Logf("%s with a %d MiB body: no response (%v)", method, size>>20, err)
		return 0
	}
	return r.Status
}

// TestHostileWebDAVBodies sends malformed XML, XML bombs, deep nesting,
// 100 MiB bodies (with Content-Length and chunked) to PROPFIND, PROPPATCH
// and LOCK, and abusive Depth headers: every one is refused with a 4xx, the
// server's memory stays bounded, and it keeps serving.
func TestHostileWebDAVBodies(t *testing.T) {
	srv, pprofAddr := startWithPprof(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	dav := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	if err := dav.put("/f.txt", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := dav.do("MKCOL", "/d", nil); code != http.StatusCreated {
		t.Fatalf("MKCOL: %d", code)
	}

	bomb := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]><D:propfind xmlns:D="DAV:"><D:prop><D:x>&lol4;</D:x></D:prop></D:propfind>`
	external := `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x:y xmlns:x="urn:x">&xxe;</x:y></D:prop></D:set></D:propertyupdate>`
	deep := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>` + strings.Repeat("<a>", 200000) + strings.Repeat("</a>", 200000) + `</D:prop></D:propfind>`
	deepSmall := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>` + strings.Repeat("<a>", 60000) + strings.Repeat("</a>", 60000) + `</D:prop></D:propfind>`
	manyProps := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>` + strings.Repeat(`<x:p xmlns:x="urn:x">v</x:p>`, 50000) + `</D:prop></D:set></D:propertyupdate>`
	// Each case must be refused with a 4xx, except the deeply nested bodies
	// under the 1 MiB limit, which may also be answered normally: what
	// matters there is no 5xx, no crash, no blow-up.
	cases := []struct {
		method, path, body string
		hdr                []string
	}{
		{"PROPFIND", "/", `<D:propfind xmlns:D="DAV:"><D:prop>`, []string{"Depth: 0"}},
		{"PROPFIND", "/", `not xml at all`, []string{"Depth: 0"}},
		{"PROPFIND", "/", `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>`, []string{"Depth: 0"}},
		{"PROPFIND", "/", bomb, []string{"Depth: 0"}},
		{"PROPFIND", "/", deep, []string{"Depth: 0"}},
		{"PROPFIND", "/", deepSmall, []string{"Depth: 0"}},
		{"PROPPATCH", "/f.txt", strings.Replace(deepSmall, "propfind", "propertyupdate", 2), nil},
		{"LOCK", "/f.txt", strings.Replace(deepSmall, "propfind", "lockinfo", 2), []string{"Depth: 0"}},
		{"PROPFIND", "/", "\x00\x01\x02\xff\xfe", []string{"Depth: 0"}},
		{"PROPPATCH", "/f.txt", `<D:propertyupdate xmlns:D="DAV:"><D:set>`, nil},
		{"PROPPATCH", "/f.txt", external, nil},
		{"PROPPATCH", "/f.txt", manyProps, nil},
		{"LOCK", "/f.txt", `<D:lockinfo xmlns:D="DAV:"><D:lockscope>`, []string{"Depth: 0"}},
		{"LOCK", "/f.txt", `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope></D:lockinfo>`, []string{"Depth: 0"}},
		{"LOCK", "/f.txt", bomb, []string{"Depth: 0"}},
		{"LOCK", "/f.txt", `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`, []string{"Depth: 7"}},
		{"PROPFIND", "/d", "", []string{"Depth: infinity"}},
		{"PROPFIND", "/d", "", nil}, // no Depth means infinity
		{"PROPFIND", "/d", "", []string{"Depth: 2"}},
		{"PROPFIND", "/d", "", []string{"Depth: -1"}},
		{"PROPFIND", "/d", "", []string{"Depth: 1, 1"}},
		{"PROPFIND", "/d", "", []string{"Depth: infinity2"}},
		{"MKCOL", "/newcol", "<x/>", nil},
		{"COPY", "/d", "", []string{"Destination: /d2", "Depth: 5"}},
	}
	for _, tc := range cases {
		name := tc.method + " " + tc.path + " " + strings.Join(tc.hdr, ",")
		code, body, err := dav.do(tc.method, tc.path, strings.NewReader(tc.body), tc.hdr...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if tc.body == deepSmall || strings.Contains(tc.body, strings.Repeat("<a>", 100)) && len(tc.body) < 1<<20 {
			if code >= 500 {
				t.Errorf("%s (deeply nested body): status %d", name, code)
			}
		} else if code < 400 || code >= 500 {
			t.Errorf("%s (body %.40q): status %d, want 4xx\n%.300s", name, tc.body, code, body)
		}
		if bytes.Contains(body, []byte("root:x:0:0")) {
			t.Errorf("%s: external entity expanded", name)
		}
	}

	// 100 MiB bodies are refused or streamed, never buffered.
	resetPeakRSS(t, srv.Pid())
	hwm0, alloc0 := procKB(t, srv.Pid(), "VmHWM"), allocated(t, pprofAddr)
	const huge = 100 << 20
	propPrefix := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>`
	patchPrefix := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>`
	lockPrefix := `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:owner>`
	for _, tc := range []struct {
		method, prefix, pattern string
	}{
		{"PROPFIND", propPrefix, `<D:getetag/>`},
		{"PROPPATCH", patchPrefix, `<x:p xmlns:x="urn:x">vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv</x:p>`},
		{"LOCK", lockPrefix, `owner-text `},
	} {
		for _, chunked := range []bool{false, true} {
			code := hugeRequest(t, srv, tc.method, huge, chunked, tc.prefix, tc.pattern)
			if code != 0 && (code < 400 || code >= 500) {
				t.Errorf("%s with a 100 MiB body (chunked=%v): status %d, want 400/413", tc.method, chunked, code)
			}
		}
	}
	hwm1, alloc1 := procKB(t, srv.Pid(), "VmHWM"), allocated(t, pprofAddr)
	t.Logf("six 100 MiB XML bodies: server allocated %d KiB; peak RSS %d KiB before, %d KiB after", (alloc1-alloc0)>>10, hwm0, hwm1)
	if alloc1-alloc0 > 64<<20 {
		t.Errorf("the server allocated %d MiB for six 100 MiB XML bodies: they are buffered", (alloc1-alloc0)>>20)
	}

	// Oversized request head.
	r, err := rawHTTP(t, srv, "PROPFIND / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "+strings.Repeat("a", 1<<20)+"\r\n\r\n")
	if err == nil && r.Status != http.StatusRequestHeaderFieldsTooLarge && r.Status != http.StatusBadRequest {
		t.Errorf("1 MiB header: status %d, want 431", r.Status)
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
}

// ---- header injection through file names ----

// TestHeaderInjection puts CR/LF into names (created over SFTP, and in
// request URLs and Destination headers over WebDAV) and checks that no
// response carries an injected header line and no log line is forged.
func TestHeaderInjection(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	evil := []string{"evil\r\nSet-Cookie: pwn=1", "evil2\nX-Injected: 1", "evil3\rX-Injected: 1", "q\"<>&'%0d%0a.txt"}
	created := 0
	for _, n := range evil {
		if err := sftpPut(c, n, []byte("x")); err == nil {
			created++
		}
		_ = c.Mkdir(n + "-dir")
	}
	t.Logf("%d of %d names with control characters were accepted over SFTP", created, len(evil))
	// Log injection: a name carrying a fake log line, used in successful and
	// failing operations over both protocols, never starts a line of its own.
	forged := "x\ntime=2000-01-01T00:00:00Z level=ERROR msg=forged\r\ntime=2000-01-01T00:00:00Z level=ERROR msg=forged2"
	_ = sftpPut(c, forged, []byte("x"))
	_, _ = sftpGet(c, forged)
	_, _ = sftpGet(c, forged+"-missing")
	_ = c.Rename(forged, forged+"-renamed")
	_ = c.Remove(forged + "-renamed")
	d := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	d.do("GET", "/x%0atime=2000-01-01T00:00:00Z%20level=ERROR%20msg=forged3", nil)
	d.do("PUT", "/x%0d%0atime=2000-01-01T00:00:00Z%20level=ERROR%20msg=forged4", strings.NewReader("x"))
	newDAV(t, srv, "x\ntime=2000-01-01T00:00:00Z level=ERROR msg=forged5", "pw", "").do("PROPFIND", "/", nil, "Depth: 0")
	mentions := 0
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "time=2000-01-01") {
			t.Errorf("a client-chosen name forged a log line: %q", l)
		}
		if strings.Contains(l, "msg=forged") {
			mentions++
		}
	}
	t.Logf("%d log lines carry the forged names, escaped", mentions)
	injected := func(what string, r *rawResponse) {
		t.Helper()
		head := strings.ToLower(r.Raw)
		if strings.Contains(head, "\nset-cookie: pwn") || strings.Contains(head, "\nx-injected") {
			t.Errorf("%s: injected header in the response:\n%s", what, r.Raw)
		}
	}
	auth := "Authorization: " + basic("alice", "nyvpr-pw-1-e2e-pass") + "\r\n"
	enc := []string{"/evil%0d%0aSet-Cookie:%20pwn=1", "/evil2%0aX-Injected:%201", "/evil3%0dX-Injected:%201",
		"/evil%0d%0aSet-Cookie:%20pwn=1-dir", "/new%0d%0aX-Injected:%201"}
	for _, p := range enc {
		for _, m := range []string{"GET", "HEAD", "PROPFIND", "MKCOL", "PUT", "LOCK", "DELETE", "OPTIONS"} {
			body := ""
			if m == "PUT" {
				body = "x"
			}
			if m == "LOCK" {
				body = `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`
			}
			r, err := rawHTTP(t, srv, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sDepth: 1\r\nAccept: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", m, p, auth, len(body), body))
			if err != nil {
				t.Errorf("%s %s: %v", m, p, err)
				continue
			}
			injected(m+" "+p, r)
		}
		for _, m := range []string{"MOVE", "COPY"} {
			dst := srv.DAVURL + "/moved%0d%0aSet-Cookie:%20pwn=1"
			r, err := rawHTTP(t, srv, fmt.Sprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sDestination: %s\r\nOverwrite: T\r\nConnection: close\r\n\r\n", m, p, auth, dst))
			if err != nil {
				t.Errorf("%s %s: %v", m, p, err)
				continue
			}
			injected(m+" "+p, r)
		}
	}
	// Collection listings (HTML and PROPFIND) escape the names.
	for _, req := range []string{
		"PROPFIND / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Depth: 1\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Connection: close\r\n\r\n",
		"GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Accept: text/html\r\nConnection: close\r\n\r\n",
	} {
		r, err := rawHTTP(t, srv, req)
		if err != nil {
			t.Fatal(err)
		}
		injected(strings.SplitN(req, "\r\n", 2)[0], r)
		if bytes.Contains(r.Body, []byte("q\"<>&'")) {
			t.Errorf("%s: a name with <>&\" is not escaped in the body", strings.SplitN(req, "\r\n", 2)[0])
		}
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
}
