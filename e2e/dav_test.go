package e2e

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// davStatus runs curl as user and returns the HTTP status code it got.
func davStatus(t *testing.T, srv *Server, user, pass string, args ...string) string {
	t.Helper()
	base := []string{"-w", "%{http_code}"}
	if !slices.Contains(args, "-o") {
		base = append(base, "-o", "/dev/null")
	}
	out, err := srv.Curl(t, user, pass, append(base, args...)...)
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(out)
}

func wantCode(t *testing.T, got, want, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: HTTP %s, want %s", what, got, want)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestDAVCurl drives the real server with curl over HTTPS: uploads and
// downloads of several sizes, Range reads at chunk boundaries, chunked
// upload, collection operations, refused Content-Range, authentication and
// isolation between users.
func TestDAVCurl(t *testing.T) {
	srv := StartServer(t)
	srv.AddUser(t, "alice", "nyvpr-pw-e2e-pass")
	srv.AddUser(t, "bob", "obo-pw-e2e-pass")
	u := srv.DAVURL
	dir := t.TempDir()

	for _, n := range []int64{0, 1, 65535, 65536, 65537, 5<<20 + 17} {
		t.Run(fmt.Sprintf("putget-%d", n), func(t *testing.T) {
			src := RandomFile(t, n)
			name := fmt.Sprintf("/f-%d.bin", n)
			wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-T", src, u+name), "201", "PUT new")
			wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-T", src, u+name), "204", "PUT replace")
			dst := filepath.Join(dir, fmt.Sprintf("got-%d", n))
			wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-o", dst, u+name), "200", "GET")
			if sha256File(t, src) != sha256File(t, dst) {
				t.Fatalf("%d bytes: checksum differs after the round trip", n)
			}
		})
	}
	big := RandomFile(t, 300_000)
	wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-T", big, u+"/big.bin"), "201", "PUT big")
	AssertNoPlaintext(t, srv.DataDir, big)
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("range", func(t *testing.T) {
		for _, r := range [][2]int{{0, 0}, {65534, 65536}, {65535, 65535}, {65536, 65536}, {65537, 131073}, {131071, 131072}, {299_990, 299_999}} {
			out := filepath.Join(dir, fmt.Sprintf("r-%d-%d", r[0], r[1]))
			wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-r", fmt.Sprintf("%d-%d", r[0], r[1]), "-o", out, u+"/big.bin"), "206", "Range GET")
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(data[r[0]:r[1]+1]) {
				t.Fatalf("range %d-%d: wrong bytes (%d)", r[0], r[1], len(got))
			}
		}
	})

	t.Run("chunked", func(t *testing.T) {
		src := RandomFile(t, 1<<20+3)
		// -T - reads stdin: curl sends Transfer-Encoding: chunked.
		cmd := exec.Command("curl", "-sS", "-k", "-u", "alice:nyvpr-pw-e2e-pass", "-T", "-", "-o", "/dev/null", "-w", "%{http_code}", u+"/chunked.bin")
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "201" {
			t.Fatalf("chunked PUT: %v %s", err, out)
		}
		dst := filepath.Join(dir, "chunked")
		wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-o", dst, u+"/chunked.bin"), "200", "GET")
		SameFile(t, src, dst)
	})

	t.Run("collections", func(t *testing.T) {
		a := func(args ...string) string { return davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", args...) }
		wantCode(t, a("-X", "MKCOL", u+"/c"), "201", "MKCOL")
		wantCode(t, a("-X", "MKCOL", u+"/c"), "405", "MKCOL again")
		wantCode(t, a("-X", "MKCOL", u+"/no/such"), "409", "MKCOL without parent")
		wantCode(t, a("-T", big, u+"/c/x.bin"), "201", "PUT into collection")
		wantCode(t, a("-T", big, u+"/none/x.bin"), "409", "PUT without parent")
		wantCode(t, a("-X", "COPY", "-H", "Destination: "+u+"/c2", u+"/c"), "201", "COPY collection")
		wantCode(t, a("-X", "MOVE", "-H", "Destination: "+u+"/c3", u+"/c2"), "201", "MOVE collection")
		wantCode(t, a("-X", "MOVE", "-H", "Destination: "+u+"/c3/y.bin", u+"/c/x.bin"), "201", "MOVE file")
		wantCode(t, a("-X", "COPY", "-H", "Overwrite: F", "-H", "Destination: "+u+"/c3/y.bin", u+"/c3/x.bin"), "412", "COPY over existing, Overwrite F")
		wantCode(t, a("-X", "COPY", "-H", "Destination: "+u+"/c3/y.bin", u+"/c3/x.bin"), "204", "COPY over existing")
		wantCode(t, a(u+"/c/x.bin"), "404", "moved away")
		wantCode(t, a("-X", "PROPFIND", "-H", "Depth: 1", u+"/c3"), "207", "PROPFIND without trailing slash")
		wantCode(t, a("-X", "PROPFIND", "-H", "Depth: infinity", u+"/c3"), "403", "PROPFIND Depth infinity")
		wantCode(t, a("-X", "DELETE", u+"/c3"), "204", "DELETE collection")
		wantCode(t, a("-X", "DELETE", u+"/c3"), "404", "DELETE again")
		wantCode(t, a("-X", "PROPFIND", "-H", "Depth: 0", u+"/._big.bin"), "404", "AppleDouble probe")
		wantCode(t, a("-X", "OPTIONS", u+"/"), "200", "OPTIONS")
	})

	t.Run("resume-refused", func(t *testing.T) {
		part := filepath.Join(dir, "part")
		if err := os.WriteFile(part, data[:1000], 0o600); err != nil {
			t.Fatal(err)
		}
		wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-T", part, u+"/resume.bin"), "201", "PUT start")
		// curl -C - -T sends Content-Range; the server must refuse, not
		// overwrite the file with the tail.
		code := davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-C", "500", "-T", big, u+"/resume.bin")
		wantCode(t, code, "501", "resumed PUT")
		got := filepath.Join(dir, "resume-got")
		wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", "-o", got, u+"/resume.bin"), "200", "GET")
		SameFile(t, part, got)
	})

	t.Run("auth", func(t *testing.T) {
		wantCode(t, davStatus(t, srv, "alice", "wrong", u+"/big.bin"), "401", "wrong password")
		wantCode(t, davStatus(t, srv, "", "", u+"/big.bin"), "401", "no credentials")
		wantCode(t, davStatus(t, srv, "nobody", "x", u+"/big.bin"), "401", "unknown user")
		wantCode(t, davStatus(t, srv, "bob", "obo-pw-e2e-pass", u+"/big.bin"), "404", "bob reads alice's path")
		wantCode(t, davStatus(t, srv, "bob", "obo-pw-e2e-pass", "--path-as-is", u+"/../alice/big.bin"), "404", "bob escapes with ..")
		wantCode(t, davStatus(t, srv, "bob", "obo-pw-e2e-pass", "--path-as-is", u+"/%2e%2e/alice/big.bin"), "404", "bob escapes with %2e%2e")
		wantCode(t, davStatus(t, srv, "bob", "obo-pw-e2e-pass", "-X", "DELETE", u+"/big.bin"), "404", "bob deletes alice's path")
		wantCode(t, davStatus(t, srv, "bob", "obo-pw-e2e-pass", "-X", "COPY", "-H", "Destination: "+u+"/../alice/evil", u+"/"), "403", "bob copies into alice's home")
		wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", u+"/big.bin"), "200", "alice still has it")
		wantCode(t, davStatus(t, srv, "alice", "nyvpr-pw-e2e-pass", u+"/evil"), "404", "nothing landed in alice's home")
	})
}

// TestDAVSFTPInterop: a file uploaded over WebDAV reads back byte for byte
// over SFTP (OpenSSH sftp), and the reverse.
func TestDAVSFTPInterop(t *testing.T) {
	NeedTool(t, "sftp")
	srv := StartServer(t)
	key := srv.AddUser(t, "carol", "pneby-pw-e2e-pass")
	dir := t.TempDir()
	viaDAV := RandomFile(t, 3<<20+5)
	wantCode(t, davStatus(t, srv, "carol", "pneby-pw-e2e-pass", "-T", viaDAV, srv.DAVURL+"/from-dav.bin"), "201", "PUT")

	viaSFTP := RandomFile(t, 2<<20+7)
	got := filepath.Join(dir, "got-from-dav.bin")
	out, err := srv.SFTPBatch(t, "carol", key, fmt.Sprintf("get /from-dav.bin %s\nput %s /from-sftp.bin\n", got, viaSFTP))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	SameFile(t, viaDAV, got)

	got2 := filepath.Join(dir, "got-from-sftp.bin")
	wantCode(t, davStatus(t, srv, "carol", "pneby-pw-e2e-pass", "-o", got2, srv.DAVURL+"/from-sftp.bin"), "200", "GET")
	SameFile(t, viaSFTP, got2)
}

// TestDAVPropsPersist: dead properties (and a Windows mtime) and the
// checksums computed at upload survive a restart of the server; MOVE takes
// them along, also as the first request after the restart (cold metadata
// cache), also between directories and for a collection.
func TestDAVPropsPersist(t *testing.T) {
	srv := StartServer(t)
	srv.AddUser(t, "dora", "qben-pw-e2e-pass")
	f := RandomFile(t, 1000)
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-T", f, srv.DAVURL+"/p.bin"), "201", "PUT")
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-X", "MKCOL", srv.DAVURL+"/d1"), "201", "MKCOL")
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-X", "MKCOL", srv.DAVURL+"/d2"), "201", "MKCOL")
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-T", f, srv.DAVURL+"/d1/n.bin"), "201", "PUT")
	patch := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:example:x" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>` +
		`<x:color>deep &amp; blue</x:color><Z:Win32LastModifiedTime>Mon, 01 Mar 2021 10:00:00 GMT</Z:Win32LastModifiedTime></D:prop></D:set></D:propertyupdate>`
	for _, p := range []string{"/p.bin", "/d1/n.bin", "/d1"} {
		wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-X", "PROPPATCH", "--data-binary", patch, srv.DAVURL+p), "207", "PROPPATCH "+p)
	}
	sum := sha1File(t, f)
	srv.Restart(t)
	// MOVE first thing after the restart (cold metadata cache).
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-X", "MOVE", "-H", "Destination: /q.bin", srv.DAVURL+"/p.bin"), "201", "MOVE")
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-X", "MOVE", "-H", "Destination: /d2/m.bin", srv.DAVURL+"/d1/n.bin"), "201", "MOVE between directories")
	srv.Restart(t)
	wantCode(t, davStatus(t, srv, "dora", "qben-pw-e2e-pass", "-X", "MOVE", "-H", "Destination: /d3", srv.DAVURL+"/d1"), "201", "MOVE collection")
	propfind := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop><x:color xmlns:x="urn:example:x"/><D:getlastmodified/><oc:checksums/></D:prop></D:propfind>`
	for _, p := range []string{"/q.bin", "/d2/m.bin", "/d3"} {
		out, err := srv.Curl(t, "dora", "qben-pw-e2e-pass", "-X", "PROPFIND", "-H", "Depth: 0", "--data-binary", propfind, srv.DAVURL+p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `<color xmlns="urn:example:x">deep &amp; blue</color>`) {
			t.Errorf("%s lost its dead property after restart and MOVE:\n%s", p, out)
		}
		if p == "/d3" {
			continue
		}
		if !strings.Contains(out, "Mon, 01 Mar 2021 10:00:00 GMT") {
			t.Errorf("%s lost its mtime after restart and MOVE:\n%s", p, out)
		}
		if !strings.Contains(strings.ToLower(out), "sha1:"+sum) {
			t.Errorf("%s: oc:checksums lack SHA1:%s after restart and MOVE:\n%s", p, sum, out)
		}
	}
}

func sha1File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum(b)
	return hex.EncodeToString(h[:])
}

// TestDAVBrowserRedirect: a browser opening a collection (any, not only the
// root) lands in the web client's listing of it; a browser that has not
// logged in is sent there for any URL; curl and WebDAV clients still get
// WebDAV (and the plain listing).
func TestDAVBrowserRedirect(t *testing.T) {
	srv := StartServer(t)
	srv.AddUser(t, "erin", "reva-pw-e2e-pass")
	f := RandomFile(t, 100)
	wantCode(t, davStatus(t, srv, "erin", "reva-pw-e2e-pass", "-X", "MKCOL", srv.DAVURL+"/docs"), "201", "MKCOL")
	wantCode(t, davStatus(t, srv, "erin", "reva-pw-e2e-pass", "-X", "MKCOL", srv.DAVURL+"/docs/a%20b"), "201", "MKCOL")
	wantCode(t, davStatus(t, srv, "erin", "reva-pw-e2e-pass", "-T", f, srv.DAVURL+"/docs/f.bin"), "201", "PUT")
	const accept = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	const chrome = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
	tests := []struct {
		name       string
		user, pass string
		hdr        []string
		path       string
		want       string // "CODE LOCATION"
	}{
		{"browser root", "", "", []string{accept, chrome}, "/", "303 /ui/files/"},
		{"browser subdir", "", "", []string{accept, chrome}, "/docs/a%20b/", "303 /ui/files/docs/a%20b"},
		{"browser subdir with credentials", "erin", "reva-pw-e2e-pass", []string{accept, chrome}, "/docs/", "303 /ui/files/docs"},
		{"browser file with credentials", "erin", "reva-pw-e2e-pass", []string{accept, chrome}, "/docs/f.bin", "200 "},
		{"curl subdir", "erin", "reva-pw-e2e-pass", nil, "/docs/", "200 "},
		{"curl anonymous", "", "", nil, "/docs/", "401 "},
		{"Windows WebClient", "erin", "reva-pw-e2e-pass", []string{"Accept: text/html, */*", "User-Agent: Microsoft-WebDAV-MiniRedir/10.0.19045"}, "/docs/", "200 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-o", "/dev/null", "-w", "%{http_code} %header{location}"}
			for _, h := range tt.hdr {
				args = append(args, "-H", h)
			}
			out, err := srv.Curl(t, tt.user, tt.pass, append(args, srv.DAVURL+tt.path)...)
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			if out != tt.want {
				t.Errorf("GET %s: %q, want %q", tt.path, out, tt.want)
			}
		})
	}
	// Following the redirect ends on the web client's login page, which
	// comes back to the directory.
	out, err := srv.Curl(t, "", "", "-L", "-o", "/dev/null", "-w", "%{http_code} %{url_effective}", "-H", accept, "-H", chrome, srv.DAVURL+"/docs/")
	if err != nil || !strings.HasPrefix(out, "200 ") || !strings.Contains(out, "/ui/login") || !strings.Contains(out, "next=%2Fui%2Ffiles%2Fdocs") {
		t.Errorf("following the redirect: %q %v", out, err)
	}
}
