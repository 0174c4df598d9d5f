package sftpd

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/users"

	"github.com/securefsd/securefsd/internal/testutil"
)

func TestOpenSSHSFTPPutGet(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	local := t.TempDir()
	sizes := []int{0, 1, 65535, 65536, 65537, 3<<20 + 17}
	var cmds []string
	want := map[string][]byte{}
	for _, n := range sizes {
		name := fmt.Sprintf("f%d.bin", n)
		data := randomBytes(t, n)
		want[name] = data
		if err := os.WriteFile(filepath.Join(local, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, "put "+name, "get "+name+" back-"+name)
	}
	if out, err := ts.sftpBatch(u, local, cmds...); err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	home := ts.home("alice")
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(local, "back-"+name))
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Errorf("%s: downloaded content differs (len %d, want %d)", name, len(got), len(data))
		}
		if stored := readVFS(t, home, name); !bytes.Equal(stored, data) {
			t.Errorf("%s: stored content differs", name)
		}
	}
	if ts.rec.Count(func(r testutil.Record) bool {
		return r.Attr("op") == "upload" && r.Attr("path") == "/f65537.bin" && r.Attr("bytes") == "65537"
	}) != 1 {
		t.Errorf("no transfer log line for the upload:\n%s", ts.rec.Dump())
	}
}

func TestOpenSSHSFTPCommands(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "a"), []byte("aaa"), 0o644)
	os.WriteFile(filepath.Join(local, "b"), []byte("bbbb"), 0o644)
	if out, err := ts.sftpBatch(u, local, "put a a-file-not-dir"); err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	out, err := ts.sftpBatch(u, local,
		"mkdir d",
		"mkdir d/e",
		"put a d/a",
		"put b d/b",
		"rename d/a d/b", // posix-rename: overwrites
		"chmod 600 d/b",
		"ls -l d",
		"rmdir d/e",
		"df -h",
		"get d/b got-b",
		"rm d/b",
		"rmdir d",
		"ls",
	)
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if !strings.Contains(out, "-rw-------") || !strings.Contains(out, "alice") {
		t.Errorf("ls -l output lacks mode or owner:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "got-b")); string(b) != "aaa" {
		t.Errorf("rename over existing: got %q, want aaa", b)
	}
	if _, err := ts.home("alice").Stat("d"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d still exists: %v", err)
	}
	// Failing commands make sftp -b exit non-zero.
	if err := ts.home("alice").Mkdir("adir", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"get nonexistent", "rmdir nonexistent", "get ../../etc/passwd", "rm /", "rm adir", "rmdir a-file-not-dir"} {
		if out, err := ts.sftpBatch(u, local, cmd); err == nil {
			t.Errorf("%q succeeded:\n%s", cmd, out)
		}
	}
}

func TestOpenSSHSFTPResume(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	local := t.TempDir()
	data := randomBytes(t, 5<<20+123)
	os.WriteFile(filepath.Join(local, "big"), data[:2<<20+7], 0o644)
	if out, err := ts.sftpBatch(u, local, "put big"); err != nil {
		t.Fatalf("partial put: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(local, "big"), data, 0o644)
	if out, err := ts.sftpBatch(u, local, "reput big"); err != nil {
		t.Fatalf("reput: %v\n%s", err, out)
	}
	if got := readVFS(t, ts.home("alice"), "big"); !bytes.Equal(got, data) {
		t.Fatalf("after reput: %d bytes, want %d, equal prefix %v", len(got), len(data), bytes.HasPrefix(data, got))
	}
	// reget: a partial local copy is completed.
	os.WriteFile(filepath.Join(local, "dl"), data[:1<<20+5], 0o644)
	if out, err := ts.sftpBatch(u, local, "reget big dl"); err != nil {
		t.Fatalf("reget: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(local, "dl")); !bytes.Equal(got, data) {
		t.Fatalf("after reget: %d bytes, want %d", len(got), len(data))
	}
}

func TestSCP(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	for _, mode := range []struct{ name, flag string }{{"sftp", ""}, {"legacy", "-O"}} {
		t.Run(mode.name, func(t *testing.T) {
			local := t.TempDir()
			src := filepath.Join(local, "src")
			os.MkdirAll(filepath.Join(src, "sub", "deeper"), 0o755)
			files := map[string][]byte{
				"one.bin":              randomBytes(t, 1<<20+3),
				"empty":                nil,
				"sub/two.txt":          []byte("two\n"),
				"sub/deeper/three.bin": randomBytes(t, 70000),
			}
			mtime := time.Date(2020, 5, 17, 10, 11, 12, 0, time.UTC)
			for name, data := range files {
				p := filepath.Join(src, name)
				os.WriteFile(p, data, 0o640)
				os.Chtimes(p, mtime, mtime)
			}
			args := func(a ...string) []string {
				if mode.flag != "" {
					return append([]string{mode.flag}, a...)
				}
				return a
			}
			remote := "up-" + mode.name
			if out, err := ts.scp(u, local, args("-r", "-p", "src", "R:"+remote)...); err != nil {
				t.Fatalf("scp upload: %v\n%s", err, out)
			}
			home := ts.home("alice")
			for name, data := range files {
				if got := readVFS(t, home, remote+"/"+name); !bytes.Equal(got, data) {
					t.Errorf("uploaded %s differs", name)
				}
				fi, err := home.Stat(remote + "/" + name)
				if err != nil {
					t.Fatal(err)
				}
				if !fi.ModTime().Equal(mtime) {
					t.Errorf("%s mtime = %v, want %v (-p)", name, fi.ModTime(), mtime)
				}
			}
			// Single file upload and download.
			if out, err := ts.scp(u, local, args("src/one.bin", "R:single-"+mode.name)...); err != nil {
				t.Fatalf("scp single upload: %v\n%s", err, out)
			}
			if out, err := ts.scp(u, local, args("R:single-"+mode.name, "single.dl")...); err != nil {
				t.Fatalf("scp single download: %v\n%s", err, out)
			}
			if got, _ := os.ReadFile(filepath.Join(local, "single.dl")); !bytes.Equal(got, files["one.bin"]) {
				t.Errorf("single download differs")
			}
			// Recursive download with times.
			if out, err := ts.scp(u, local, args("-r", "-p", "R:"+remote, "down")...); err != nil {
				t.Fatalf("scp download: %v\n%s", err, out)
			}
			for name, data := range files {
				p := filepath.Join(local, "down", name)
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("downloaded %s differs: %v", name, err)
				}
				if fi, err := os.Stat(p); err == nil && !fi.ModTime().Equal(mtime) {
					t.Errorf("downloaded %s mtime = %v, want %v", name, fi.ModTime(), mtime)
				}
			}
			// Errors are reported and make scp fail.
			out, err := ts.scp(u, local, args("R:does-not-exist", "x")...)
			if err == nil {
				t.Errorf("download of a missing file succeeded:\n%s", out)
			}
			if mode.flag == "-O" && !strings.Contains(out, "No such file or directory") {
				t.Errorf("scp -O error output = %q", out)
			}
		})
	}
}

func TestSFTPClientFineGrained(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	c := ts.sftpClient(u, sftp.MaxPacketUnchecked(maxTxPacket), sftp.UseConcurrentWrites(true))

	t.Run("read-write handle", func(t *testing.T) {
		f, err := c.OpenFile("/rw", os.O_RDWR|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("hello world"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("WORLD"), 6); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 11)
		if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if string(buf) != "hello WORLD" {
			t.Errorf("read back %q", buf)
		}
		// FSTAT sees the open size; FSETSTAT(size) truncates while open.
		if fi, err := f.Stat(); err != nil || fi.Size() != 11 {
			t.Errorf("fstat: %v %v", fi, err)
		}
		if err := f.Truncate(5); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readVFS(t, ts.home("alice"), "rw"); string(got) != "hello" {
			t.Errorf("after truncate: %q", got)
		}
	})

	t.Run("random 4 KiB writes", func(t *testing.T) {
		// One write in flight at a time, as a database file's: the
		// server writes behind while it waits for the next one
		// (vfs.File.WriteBehind), with the chunk cache full of dirty
		// chunks after the first few dozen.
		want := randomBytes(t, 6<<20)
		f, err := c.Create("/db")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFrom(bytes.NewReader(want)); err != nil {
			t.Fatal(err)
		}
		testutil.RandomWrites(t, f, want, 300, 4096)
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Error("read back through the handle: contents differ")
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readVFS(t, ts.home("alice"), "db"), want) {
			t.Error("after close: contents differ")
		}
	})

	t.Run("big concurrent write and read", func(t *testing.T) {
		data := randomBytes(t, 8<<20+5)
		f, err := c.Create("/big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := c.Open("/big")
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := r.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("round trip differs: %d bytes", got.Len())
		}
	})

	t.Run("open flags", func(t *testing.T) {
		if _, err := c.OpenFile("/rw", os.O_WRONLY|os.O_CREATE|os.O_EXCL); err == nil {
			t.Error("O_EXCL on an existing file succeeded")
		}
		if _, err := c.OpenFile("/absent", os.O_WRONLY); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("open for write without O_CREATE: %v", err)
		}
		// Without O_TRUNC an existing file is written in place (resume).
		f, err := c.OpenFile("/rw", os.O_WRONLY)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("J"), 0)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := readVFS(t, ts.home("alice"), "rw"); string(got) != "Jello" {
			t.Errorf("in-place write: %q", got)
		}
	})

	t.Run("rename semantics", func(t *testing.T) {
		for _, n := range []string{"/r1", "/r2"} {
			f, _ := c.Create(n)
			f.Write([]byte(n))
			f.Close()
		}
		err := c.Rename("/r1", "/r2")
		if err == nil {
			t.Error("SFTP rename over an existing file succeeded")
		}
		if err := c.PosixRename("/r1", "/r2"); err != nil {
			t.Fatal(err)
		}
		if got := readVFS(t, ts.home("alice"), "r2"); string(got) != "/r1" {
			t.Errorf("posix-rename result %q", got)
		}
	})

	t.Run("status codes", func(t *testing.T) {
		// pkg/sftp's client turns NO_SUCH_FILE into fs.ErrNotExist.
		_, err := c.Open("/missing")
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("open missing: %v", err)
		}
		var se *sftp.StatusError
		if err := c.Symlink("/r2", "/link"); !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			t.Errorf("symlink: %v", err)
		}
		if err := c.Remove("/"); err == nil {
			t.Error("remove / succeeded")
		}
		// (pkg/sftp's Remove falls back to RMDIR, so REMOVE of a
		// directory is checked with OpenSSH's rm in the e2e tests.)
		if err := c.RemoveDirectory("/r2"); err == nil {
			t.Error("RMDIR of a file succeeded")
		}
		if _, err := c.Stat("/.securefsd-x"); err == nil {
			t.Error("reserved name visible")
		}
		if err != nil && strings.Contains(err.Error(), ts.storeDir) {
			t.Errorf("error leaks store path: %v", err)
		}
	})

	t.Run("statvfs realpath", func(t *testing.T) {
		st, err := c.StatVFS("/")
		if err != nil {
			t.Fatal(err)
		}
		if st.TotalSpace() == 0 {
			t.Errorf("statvfs total 0: %+v", st)
		}
		if p, err := c.RealPath("../../x/./y"); err != nil || p != "/x/y" {
			t.Errorf("realpath = %q %v", p, err)
		}
		if wd, err := c.Getwd(); err != nil || wd != "/" {
			t.Errorf("getwd = %q %v", wd, err)
		}
	})

	t.Run("large directory streamed", func(t *testing.T) {
		home := ts.home("alice")
		home.Mkdir("many", 0o755)
		// Directories: creating them costs no fsync, files would.
		const n = 2500
		for i := range n {
			if err := home.Mkdir(fmt.Sprintf("many/d%05d", i), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fis, err := c.ReadDir("/many")
		if err != nil {
			t.Fatal(err)
		}
		if len(fis) != n {
			t.Errorf("listed %d entries, want %d", len(fis), n)
		}
	})
}

func TestSFTPQuotaAndSetstat(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("q", users.PermAll, func(u *users.User) { u.QuotaBytes = 100 << 10 })
	c := ts.sftpClient(u)
	st, err := c.StatVFS("/")
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalSpace() != 100<<10 {
		t.Errorf("statvfs total = %d, want the quota", st.TotalSpace())
	}
	f, err := c.Create("/over")
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(make([]byte, 300<<10))
	cerr := f.Close()
	if werr == nil && cerr == nil {
		t.Error("write beyond quota succeeded")
	}
	// SETSTAT times and mode.
	g, _ := c.Create("/t")
	g.Close()
	mt := time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := c.Chtimes("/t", mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := c.Chmod("/t", 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := c.Stat("/t")
	if err != nil || !fi.ModTime().Equal(mt) || fi.Mode().Perm() != 0o600 {
		t.Errorf("stat after setstat: %v %v %v", fi.ModTime(), fi.Mode(), err)
	}
}

func TestPermissionsOverTheWire(t *testing.T) {
	ts := startServer(t)
	rw := ts.addUser("writer", users.PermAll)
	ro := ts.addUser("reader", users.PermReadOnly, func(u *users.User) { u.Home = "writer" })
	cw := ts.sftpClient(rw)
	f, _ := cw.Create("/doc")
	f.Write([]byte("content"))
	f.Close()

	cr := ts.sftpClient(ro)
	if _, err := cr.Create("/new"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("read-only create: %v", err)
	}
	if _, err := cr.OpenFile("/doc", os.O_WRONLY); err == nil {
		t.Error("read-only open for write succeeded")
	}
	if err := cr.Remove("/doc"); err == nil {
		t.Error("read-only remove succeeded")
	}
	if err := cr.Mkdir("/d"); err == nil {
		t.Error("read-only mkdir succeeded")
	}
	r, err := cr.Open("/doc")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "content" {
		t.Errorf("read-only read %q", b)
	}
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "x"), []byte("x"), 0o644)
	if out, err := ts.scp(ro, local, "-O", "x", "R:x"); err == nil {
		t.Errorf("read-only scp -O upload succeeded:\n%s", out)
	}
	if out, err := ts.sftpBatch(ro, local, "put x"); err == nil {
		t.Errorf("read-only sftp put succeeded:\n%s", out)
	}
}

// TestPlantedSymlink: a symlink planted in the store (by someone with disk
// access) is reported by LSTAT as a link, never followed, and READLINK is
// refused; the client cannot create links.
func TestPlantedSymlink(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	ts.home("alice") // creates the home directory
	if err := os.Symlink("/etc/passwd", filepath.Join(ts.storeDir, "alice", "evil")); err != nil {
		t.Fatal(err)
	}
	c := ts.sftpClient(u)
	fi, err := c.Lstat("/evil")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("lstat mode %v, want a symlink", fi.Mode())
	}
	if _, err := c.ReadLink("/evil"); err == nil {
		t.Error("readlink of a planted link succeeded")
	}
	if f, err := c.Open("/evil"); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		if bytes.Contains(b, []byte("root:")) {
			t.Fatal("planted symlink followed out of the home")
		}
	}
	if err := c.Symlink("/evil", "/l2"); err == nil {
		t.Error("symlink creation succeeded")
	}
}

// TestHostileRequests: malformed SETSTAT attributes and a flood of
// OPENDIRs get error replies; the session (and server) go on.
func TestHostileRequests(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	conn := ts.dial(u)
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	pkt := func(typ byte, body ...[]byte) []byte {
		var b []byte
		for _, x := range body {
			b = append(b, x...)
		}
		out := binary.BigEndian.AppendUint32(nil, uint32(1+len(b)))
		return append(append(out, typ), b...)
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	str := func(s string) []byte { return append(u32(uint32(len(s))), s...) }
	read := func() (byte, []byte) {
		t.Helper()
		var hdr [5]byte
		if _, err := io.ReadFull(stdout, hdr[:]); err != nil {
			t.Fatalf("read reply: %v", err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
		if _, err := io.ReadFull(stdout, body); err != nil {
			t.Fatal(err)
		}
		return hdr[4], body
	}
	stdin.Write(pkt(1, u32(3))) // INIT
	if typ, _ := read(); typ != 2 {
		t.Fatalf("no VERSION reply: %d", typ)
	}
	// SETSTAT with every attribute flag set and too few bytes.
	stdin.Write(pkt(9, u32(6), str("x"), u32(0xFFFFFFFF), []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	if typ, body := read(); typ != 101 || binary.BigEndian.Uint32(body[4:8]) != 5 { // STATUS, BAD_MESSAGE
		t.Errorf("setstat with bad attrs: type %d body %x", typ, body)
	}
	// OPENDIR beyond the handle limit fails cleanly.
	ok, failed := 0, 0
	go func() {
		for i := range maxHandles + 50 {
			stdin.Write(pkt(11, u32(uint32(100+i)), str(".")))
		}
	}()
	for range maxHandles + 50 {
		typ, _ := read()
		switch typ {
		case 102: // HANDLE
			ok++
		case 101:
			failed++
		}
	}
	if ok != maxHandles || failed != 50 {
		t.Errorf("opendir flood: %d handles, %d failures; want %d and 50", ok, failed, maxHandles)
	}
	// Another channel on the same connection works.
	c, err := newSFTPClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadDir("/"); err != nil {
		t.Errorf("new channel: %v", err)
	}
	c.Close()
}

// TestFailedOverwriteKeepsOld: an overwrite that fails half way (quota)
// leaves the previous content in place.
func TestFailedOverwriteKeepsOld(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("q", users.PermAll, func(u *users.User) { u.QuotaBytes = 200 << 10 })
	c := ts.sftpClient(u)
	old := randomBytes(t, 50<<10)
	f, err := c.Create("/doc")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(old)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = c.Create("/doc")
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(randomBytes(t, 1<<20))
	cerr := f.Close()
	if werr == nil && cerr == nil {
		t.Fatal("overwrite beyond the quota succeeded")
	}
	if got := readVFS(t, ts.home("q"), "doc"); !bytes.Equal(got, old) {
		t.Errorf("after a failed overwrite: %d bytes, want the previous %d", len(got), len(old))
	}
}

// wantAdvertised fails t unless the VERSION reply c got lists each of
// names, at revision "1".
func wantAdvertised(t *testing.T, c *sftp.Client, names ...string) {
	t.Helper()
	for _, n := range names {
		if v, ok := c.HasExtension(n); !ok || v != "1" {
			t.Fatalf("%s not advertised: %q %v", n, v, ok)
		}
	}
}

// TestLimitsExtension (issue 23): limits@openssh.com is advertised and
// answered with the sizes the server serves whole: OpenSSH's client reads
// and writes in requests of that size (else 32 KiB). A READ of more is
// cut to it, and a WRITE of that size is taken whole.
func TestLimitsExtension(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	wantAdvertised(t, ts.sftpClient(u), "limits@openssh.com", "fsync@openssh.com")
	r := newRawSFTP(t, ts, u)
	r.send(fxpExtended, u32(9), str("limits@openssh.com"))
	typ, body := r.recv()
	if typ != fxpExtendedReply || len(body) != 4+4*8 {
		t.Fatalf("limits reply: type %d, %d bytes", typ, len(body))
	}
	field := func(i int) uint64 { return binary.BigEndian.Uint64(body[4+8*i:]) }
	if id := binary.BigEndian.Uint32(body); id != 9 {
		t.Errorf("limits reply for id %d, want 9", id)
	}
	if field(0) != maxPacketLen || field(1) != maxTxPacket || field(2) != maxTxPacket || field(3) != maxHandles {
		t.Errorf("limits: packet %d read %d write %d handles %d", field(0), field(1), field(2), field(3))
	}
	// A WRITE of the advertised length, and READs of it and of more.
	data := randomBytes(t, 2*maxTxPacket+100)
	h := r.open(10, "/big", pfWrite|pfCreat|pfTrunc)
	for off := 0; off < len(data); off += maxTxPacket {
		chunk := data[off:min(off+maxTxPacket, len(data))]
		r.send(fxpWrite, u32(11), str(h), u64(uint64(off)), u32(uint32(len(chunk))), chunk)
		if code := r.expectStatus(11); code != 0 {
			t.Fatalf("write at %d: status %d", off, code)
		}
	}
	r.send(fxpClose, u32(12), str(h))
	if code := r.expectStatus(12); code != 0 {
		t.Fatalf("close: status %d", code)
	}
	h = r.open(13, "/big", pfRead)
	r.send(fxpRead, u32(14), str(h), u64(0), u32(maxTxPacket))
	if typ, body := r.recv(); typ != fxpData || !bytes.Equal(body[8:], data[:maxTxPacket]) {
		t.Errorf("read of the advertised length: type %d, %d bytes", typ, len(body)-8)
	}
	r.send(fxpRead, u32(15), str(h), u64(maxTxPacket), u32(4*maxTxPacket))
	if typ, body := r.recv(); typ != fxpData || !bytes.Equal(body[8:], data[maxTxPacket:2*maxTxPacket]) {
		t.Errorf("read of more than the advertised length: type %d, %d bytes", typ, len(body)-8)
	}
}

// TestFsyncExtension (issue 23): fsync@openssh.com is advertised and
// answered on upload, in-place and download handles, and an upload
// synced then closed is there whole.
func TestFsyncExtension(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	c := ts.sftpClient(u)
	// With pkg/sftp's own extensions, which must not be lost.
	wantAdvertised(t, c, "fsync@openssh.com", "posix-rename@openssh.com")
	data := randomBytes(t, 200<<10)
	f, err := c.Create("/up")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync of an upload: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	in, err := c.Open("/up")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(in)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	if err := in.Sync(); err != nil {
		t.Errorf("fsync of a download handle: %v", err)
	}
	in.Close()
	rw, err := c.OpenFile("/up", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("edited"), 100); err != nil {
		t.Fatal(err)
	}
	if err := rw.Sync(); err != nil {
		t.Errorf("fsync of an in-place handle: %v", err)
	}
	rw.Close()
	// A handle the fast path does not hold (a directory's): pkg/sftp's
	// refusal, the session going on.
	r := newRawSFTP(t, ts, u)
	r.send(200, u32(7), str("fsync@openssh.com"), str("nonesuch"))
	if typ, body := r.recv(); typ != fxpStatus || binary.BigEndian.Uint32(body[4:]) == 0 {
		t.Errorf("fsync of an unknown handle: type %d %x", typ, body)
	}
}
