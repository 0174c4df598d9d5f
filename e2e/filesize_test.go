package e2e

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
)

// storeBytes is the disk space of the files under the server's store.
func storeBytes(t *testing.T, srv *Server) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(filepath.Join(srv.DataDir, "store"), func(_ string, fi os.FileInfo, err error) error {
		if vanished(err) {
			return nil
		}
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMaxFileSize: a 2-byte request no longer writes gigabytes of zeros
// (issue 14, item 8): SETSTAT size, a write at offset 1e9 and a WebDAV PUT
// beyond --max-file-size (here set through its environment twin) are
// refused with SSH_FX_FAILURE / 413, and holes count against a quota at
// their logical size.
func TestMaxFileSize(t *testing.T) {
	const limit = 1 << 20
	srv := StartServer(t, WithEnv("SECUREFSD_MAX_FILE_SIZE=1M"))
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	qkey := srv.AddUser(t, "quoted", "dhbgrq-pw-1-e2e-pass", "--quota", "1M")
	c := newSFTP(t, srv, "alice", key)
	if err := sftpPut(c, "/f", []byte("ab")); err != nil {
		t.Fatal(err)
	}

	err := c.Truncate("/f", 2e9)
	var se *sftp.StatusError
	if err == nil {
		t.Fatal("SETSTAT size 2e9 accepted")
	}
	if !asStatus(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure {
		t.Fatalf("SETSTAT size 2e9: %v, want SSH_FX_FAILURE", err)
	}
	f, err := c.OpenFile("/f", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 1e9); err == nil {
		t.Fatal("write at offset 1e9 accepted")
	}
	if _, err := f.WriteAt([]byte("x"), limit-1); err != nil {
		t.Fatalf("write of the last allowed byte: %v", err)
	}
	f.Close()
	if fi, err := c.Stat("/f"); err != nil || fi.Size() != limit {
		t.Fatalf("size %v %v, want %d", fi, err, limit)
	}

	d := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	code, _, err := d.do("PUT", "/big", bytes.NewReader(make([]byte, limit+1)))
	if err != nil || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("PUT of limit+1 bytes: %d %v, want 413", code, err)
	}
	if code, _, _ := d.do("GET", "/big", nil); code != http.StatusNotFound {
		t.Fatalf("a refused PUT left /big (GET %d)", code)
	}
	if err := d.put("/ok", make([]byte, limit)); err != nil {
		t.Fatalf("PUT of exactly the limit: %v", err)
	}

	// Holes cost their logical size against the quota.
	q := newSFTP(t, srv, "quoted", qkey)
	if err := sftpPut(q, "/h", []byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := q.Truncate("/h", limit+1); err == nil {
		t.Fatal("a hole past the quota was accepted")
	}
	hf, err := q.OpenFile("/h", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hf.WriteAt([]byte("x"), limit); err == nil {
		t.Fatal("a write past the quota through a hole was accepted")
	}
	hf.Close()

	if n := storeBytes(t, srv); n > 8*limit {
		t.Fatalf("the store holds %d bytes after the refused requests", n)
	}
}

func asStatus(err error, se **sftp.StatusError) bool { return errors.As(err, se) }
