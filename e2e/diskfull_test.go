package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// smallFS mounts a size-limited tmpfs (mode 0700) for the test and
// unmounts it at cleanup. It fails, not skips, when it cannot: the disk-full
// suite must run in CI (scripts/test.sh runs as root).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs (the disk-full test needs root or CAP_SYS_ADMIN): %v: %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; detaching lazily", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestDiskFull runs the whole data directory on a 24 MiB filesystem:
// uploads that do not fit fail with a clear error (SFTP failure "no space
// left on device", HTTP 507) and leave nothing behind under their name,
// existing files stay intact and readable, the server keeps serving, and
// the space is usable again after deletes.
func TestDiskFull(t *testing.T) {
	NeedTool(t, "curl")
	data := smallFS(t, "24m")
	srv := StartServer(t, WithDataDir(data))
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	dav := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")

	existing := map[string][]byte{}
	for _, n := range []string{"keep-0", "keep-1", "keep-2", "keep-3"} {
		existing[n] = randBytes(2 << 20)
		if err := sftpPut(c, n, existing[n]); err != nil {
			t.Fatal(err)
		}
	}
	existing["keep-dav"] = randBytes(1 << 20)
	if err := dav.put("/keep-dav", existing["keep-dav"]); err != nil {
		t.Fatal(err)
	}
	checkExisting := func(when string) {
		t.Helper()
		for n, want := range existing {
			got, err := sftpGet(c, n)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s over SFTP: %v (intact=%v)", when, n, err, bytes.Equal(got, want))
			}
			got, err = dav.get("/" + n)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s over WebDAV: %v (intact=%v)", when, n, err, bytes.Equal(got, want))
			}
		}
	}
	gone := func(name string) {
		t.Helper()
		if fi, err := c.Stat(name); err == nil {
			t.Errorf("a failed upload left %s (%d bytes) under its final name", name, fi.Size())
		}
	}
	free0 := freeBytes(t, data)
	t.Logf("free before the big uploads: %d KiB", free0>>10)
	big := RandomFile(t, 30<<20)
	bigData, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}

	// OpenSSH sftp: the put fails (exit status), nothing under the name.
	out, err := srv.SFTPBatch(t, "alice", key, "put "+big+" big-openssh\n")
	if err == nil {
		t.Errorf("sftp put of 30 MiB onto a 24 MiB disk succeeded:\n%s", out)
	}
	gone("big-openssh")

	// pkg/sftp shows the status message: it must say why.
	err = sftpPut(c, "big-pkgsftp", bigData)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("pkg/sftp put of 30 MiB: error %v, want SSH_FX_FAILURE \"no space left on device\"", err)
	}
	gone("big-pkgsftp")

	// Replacing an existing file with one that does not fit keeps the old content.
	if err := sftpPut(c, "keep-0", bigData); err == nil {
		t.Errorf("overwriting keep-0 with 30 MiB succeeded")
	}

	// WebDAV PUT with Content-Length, and chunked (Finder) without: 507.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"big-dav-length", nil},
		{"big-dav-chunked", []string{"-H", "Transfer-Encoding: chunked"}},
	} {
		args := append([]string{"-o", "/dev/null", "-w", "%{http_code}", "-T", big}, tc.args...)
		out, _ := srv.Curl(t, "alice", "nyvpr-pw-1-e2e-pass", append(args, srv.DAVURL+"/"+tc.name)...)
		if !strings.HasSuffix(strings.TrimSpace(out), "507") {
			t.Errorf("PUT %s of 30 MiB: curl says %q, want HTTP 507", tc.name, out)
		}
		gone(tc.name)
	}
	code, _, _ := dav.do("PUT", "/keep-dav", bytes.NewReader(bigData))
	if code != http.StatusInsufficientStorage {
		t.Errorf("PUT over keep-dav of 30 MiB: status %d, want 507", code)
	}

	// Nothing was lost, the server still serves, and the failed uploads
	// gave their space back (their temporary files are gone).
	checkExisting("after the failed uploads")
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
	if free := freeBytes(t, data); free < free0-(2<<20) {
		t.Errorf("free space %d KiB after the failed uploads, %d KiB before: temporary files not removed", free>>10, free0>>10)
	}

	// 16 MiB does not fit now (about 13 MiB free) ...
	mid := randBytes(16 << 20)
	if err := sftpPut(c, "mid", mid); err == nil {
		t.Fatalf("16 MiB fitted with %d KiB free; the test's sizes are off", free0>>10)
	}
	gone("mid")
	// ... but it does after deleting files.
	for _, n := range []string{"keep-1", "keep-2", "keep-3"} {
		if err := c.Remove(n); err != nil {
			t.Fatal(err)
		}
		delete(existing, n)
	}
	if err := sftpPut(c, "mid", mid); err != nil {
		t.Fatalf("upload after freeing space: %v", err)
	}
	if got, err := dav.get("/mid"); err != nil || !bytes.Equal(got, mid) {
		t.Fatalf("read back after freeing space: %v", err)
	}
	checkExisting("after freeing space")

	// A completely full disk: fill it with 256 KiB files until one fails,
	// then metadata writes fail cleanly and keep what was there.
	setProp := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><z:note xmlns:z="urn:z">%s</z:note></D:prop></D:set></D:propertyupdate>`
	if code, b, _ := dav.do("PROPPATCH", "/keep-dav", strings.NewReader(fmt.Sprintf(setProp, "before-full"))); code != http.StatusMultiStatus {
		t.Fatalf("PROPPATCH: %d %s", code, b)
	}
	var fillers []string
	fill := func() {
		for i := len(fillers); i < 400; i++ {
			n := fmt.Sprintf("filler-%03d", i)
			if err := sftpPut(c, n, randBytes(256<<10)); err != nil {
				if !strings.Contains(err.Error(), "no space left on device") {
					t.Errorf("filling the disk: %v", err)
				}
				gone(n)
				break
			}
			fillers = append(fillers, n)
		}
		t.Logf("disk full after %d filler files; %d KiB free", len(fillers), freeBytes(t, data)>>10)
	}
	fill()
	bigProp := strings.Repeat("x", 60<<10) // under the 64 KiB cap of one value
	code, b, _ := dav.do("PROPPATCH", "/keep-dav", strings.NewReader(fmt.Sprintf(setProp, bigProp)))
	if code != http.StatusInsufficientStorage && code != http.StatusMultiStatus {
		t.Errorf("PROPPATCH of a 60 KiB property on a full disk: %d %.200s (want 507)", code, b)
	}
	code, b, _ = dav.do("PROPFIND", "/keep-dav", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><z:note xmlns:z="urn:z"/></D:prop></D:propfind>`), "Depth: 0")
	if code != http.StatusMultiStatus || !(bytes.Contains(b, []byte("before-full")) || bytes.Contains(b, []byte(bigProp[:1000]))) {
		t.Errorf("the property after a PROPPATCH on a full disk: %d %.300s", code, b)
	}
	// A storage v2 index gives up its reserve (1 MiB beside index.db)
	// to an update that meets a full disk: the PROPPATCH may have, and
	// that room is the next upload's. Full again first.
	fill()
	if code, _, _ := dav.do("PUT", "/small-on-full", bytes.NewReader(randBytes(300<<10))); code != http.StatusInsufficientStorage {
		t.Errorf("PUT on a full disk: %d, want 507", code)
	}
	gone("small-on-full")
	// Renames and deletes need no space.
	if err := c.Rename("keep-0", "keep-0-renamed"); err != nil {
		t.Errorf("rename on a full disk: %v", err)
	} else {
		existing["keep-0-renamed"] = existing["keep-0"]
		delete(existing, "keep-0")
	}
	checkExisting("on a full disk")
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
	for _, n := range fillers {
		if err := c.Remove(n); err != nil {
			t.Errorf("delete on a full disk: %v", err)
		}
	}
	if err := sftpPut(c, "after-full", randBytes(1<<20)); err != nil {
		t.Errorf("upload after emptying the disk again: %v", err)
	}
	if damaged, failed, out := verify(t, srv); failed || len(damaged) > 0 {
		t.Errorf("verify after disk full: %v\n%s", damaged, out)
	}
}
