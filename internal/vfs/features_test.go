package vfs

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
)

func TestQuota(t *testing.T) {
	ts := newStore(t)
	f := ts.home(t, "alice", HomeOptions{Quota: Quota{Bytes: 100000, Files: 3}})
	writeFile(t, f, "a", make([]byte, 60000))
	h, _ := f.Create("b")
	if _, err := h.Write(make([]byte, 30000)); err != nil {
		t.Fatal(err)
	}
	_, err := h.Write(make([]byte, 20000))
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("write over byte quota: %v", err)
	}
	mustPathErr(t, err, "b")
	if err := h.Truncate(200000); !errors.Is(err, ErrQuota) {
		t.Fatalf("truncate over quota: %v", err)
	}
	h.Close()
	writeFile(t, f, "c", nil)
	if _, err := f.Create("d"); !errors.Is(err, ErrQuota) {
		t.Fatalf("create over file quota: %v", err)
	}
	// Replacing an existing file at the file limit works.
	writeFile(t, f, "c", []byte("replaced"))
	u, _ := f.Usage()
	if u.Files != 3 || u.UsedBytes != 90008 || u.QuotaBytes != 100000 || u.QuotaFiles != 3 || u.DiskTotal <= 0 {
		t.Fatalf("usage %+v", u)
	}
	// Replacing a file near the quota works: the old size is credited.
	writeFile(t, f, "a", make([]byte, 60000))
	// Deleting frees.
	f.Remove("a")
	writeFile(t, f, "d", make([]byte, 60000))
	// Raising the quota through a new Home call applies to the shared home.
	f2 := ts.home(t, "alice", HomeOptions{})
	writeFile(t, f2, "e", make([]byte, 60000))
	u, _ = f.Usage()
	if u.Files != 4 || u.UsedBytes != 150008 {
		t.Fatalf("usage %+v", u)
	}
}

func TestPerm(t *testing.T) {
	ts := newStore(t)
	admin := ts.home(t, "alice", HomeOptions{})
	writeFile(t, admin, "f", []byte("x"))
	admin.Mkdir("d", 0o755)
	ro := ts.home(t, "alice", HomeOptions{Perm: PermList | PermDownload})
	none, _ := ts.Home("alice", HomeOptions{})
	upOnly := ts.home(t, "alice", HomeOptions{Perm: PermUpload})
	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: %v, want permission denied", what, err)
		}
	}
	_, err := none.ReadDir("/")
	denied("list without PermList", err)
	_, err = none.Open("f")
	denied("download without PermDownload", err)
	_, err = ro.Create("g")
	denied("upload without PermUpload", err)
	_, err = ro.OpenFile("f", os.O_WRONLY, 0)
	denied("overwrite without PermOverwrite", err)
	denied("remove", ro.Remove("f"))
	denied("rename", ro.Rename("f", "g", false))
	denied("mkdir", ro.Mkdir("e", 0o755))
	denied("chmod", ro.Chmod("f", 0o600))
	denied("truncate", ro.Truncate("f", 0))
	_, err = upOnly.OpenFile("f", os.O_WRONLY|os.O_TRUNC, 0)
	denied("overwrite with upload only", err)
	// Upload-only can create, write, truncate (scp) and set times on its new file.
	h, err := upOnly.OpenFile("new", os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	h.Write([]byte("data"))
	if err := upOnly.Truncate("new", 4); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Stat("new"); err != nil {
		t.Fatal(err)
	}
}

// TestScpUpload follows OpenSSH scp in SFTP mode over an existing larger
// file: OPEN WRITE|CREAT (no TRUNC), writes, SETSTAT(size) on the path
// while the handle is open, SETSTAT times and mode, CLOSE.
func TestScpUpload(t *testing.T) {
	for _, existing := range []bool{true, false} {
		t.Run(map[bool]string{true: "over-existing", false: "new"}[existing], func(t *testing.T) {
			_, f := newFS(t)
			if existing {
				writeFile(t, f, "up.bin", bytes.Repeat([]byte("old"), 100000))
			}
			data := bytes.Repeat([]byte("new data "), 20000)
			h, err := f.OpenFile("up.bin", os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			// pkg/sftp delivers 32 KiB writes out of order from 8 workers.
			var wg sync.WaitGroup
			for off := 0; off < len(data); off += 32768 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					h.WriteAt(data[off:min(off+32768, len(data))], int64(off))
				}()
			}
			wg.Wait()
			if err := f.Truncate("up.bin", int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if fi, _ := f.Stat("up.bin"); fi.Size() != int64(len(data)) {
				t.Fatalf("size after setstat %d", fi.Size())
			}
			mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
			if err := f.Chtimes("up.bin", mtime, mtime); err != nil {
				t.Fatal(err)
			}
			if err := f.Chmod("up.bin", 0o640); err != nil {
				t.Fatal(err)
			}
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			fi, err := f.Stat("up.bin")
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(mtime) || fi.Mode().Perm() != 0o640 || fi.Size() != int64(len(data)) {
				t.Fatalf("after close: mtime %v mode %v size %d", fi.ModTime(), fi.Mode(), fi.Size())
			}
			if got := readFile(t, f, "up.bin"); !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
		})
	}
}

// TestNewFileVisibleWhileWritten: a file being uploaded (replacement) is
// visible to Stat, ReadDir and other opens with its current size.
func TestNewFileVisibleWhileWritten(t *testing.T) {
	_, f := newFS(t)
	f.Mkdir("d", 0o755)
	h, err := f.OpenFile("d/up", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(make([]byte, 1234))
	fi, err := f.Stat("d/up")
	if err != nil || fi.Size() != 1234 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat during upload: %v %v", fi, err)
	}
	list, _ := f.ReadDir("d")
	if len(list) != 1 || list[0].Name() != "up" || list[0].Size() != 1234 {
		t.Fatalf("readdir during upload: %v", list)
	}
	if _, err := f.OpenFile("d/up", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second exclusive create: %v", err)
	}
	r, err := f.Open("d/up")
	if err != nil {
		t.Fatal(err)
	}
	h.Write([]byte("tail"))
	if fi, _ := r.Stat(); fi.Size() != 1238 {
		t.Fatalf("reader sees size %d", fi.Size())
	}
	if err := f.Rename("d/up", "d/renamed", false); err != nil {
		t.Fatal(err)
	}
	h.Close()
	r.Close()
	if got := readFile(t, f, "d/renamed"); len(got) != 1238 || string(got[1234:]) != "tail" {
		t.Fatalf("content after rename during upload: %d bytes", len(got))
	}
	if _, err := f.Stat("d/up"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old name: %v", err)
	}
}

func TestMeta(t *testing.T) {
	_, f := newFS(t)
	f.MkdirAll("a/sub", 0o755)
	f.Mkdir("b", 0o755)
	writeFile(t, f, "a/file", []byte("x"))
	writeFile(t, f, "a/sub/deep", []byte("y"))
	set := func(name, v string) {
		t.Helper()
		if err := f.UpdateMeta(name, func(m *Meta) error {
			if m.Props == nil {
				m.Props = map[string]string{}
			}
			m.Props["{urn:test}p"] = v
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) string {
		t.Helper()
		m, err := f.Meta(name)
		if err != nil {
			t.Fatal(err)
		}
		return m.Props["{urn:test}p"]
	}
	set("a/file", "file")
	set("a/sub", "subdir")
	set("a/sub/deep", "deep")
	set("/", "root")
	if _, err := f.Meta("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("meta of missing: %v", err)
	}
	// fn errors abort.
	boom := errors.New("boom")
	if err := f.UpdateMeta("a/file", func(m *Meta) error { m.Props["{urn:test}p"] = "changed"; return boom }); err != boom {
		t.Fatalf("update error: %v", err)
	}
	// File renamed across directories, directory renamed: meta follows.
	if err := f.Rename("a/file", "b/moved", false); err != nil {
		t.Fatal(err)
	}
	if err := f.Rename("a/sub", "b/sub2", false); err != nil {
		t.Fatal(err)
	}
	if err := f.Rename("b", "c", false); err != nil {
		t.Fatal(err)
	}
	if get("c/moved") != "file" || get("c/sub2") != "subdir" || get("c/sub2/deep") != "deep" || get("/") != "root" {
		t.Fatalf("meta after renames: %q %q %q %q", get("c/moved"), get("c/sub2"), get("c/sub2/deep"), get("/"))
	}
	// Rename over a file replaces the target's meta.
	writeFile(t, f, "c/other", []byte("z"))
	set("c/other", "other")
	f.Rename("c/moved", "c/other", true)
	if get("c/other") != "file" {
		t.Fatalf("meta after overwrite: %q", get("c/other"))
	}
	// Deleted with the entry: a new entry of the same name starts empty.
	f.Remove("c/other")
	writeFile(t, f, "c/other", nil)
	f.RemoveAll("c/sub2")
	f.MkdirAll("c/sub2/deep", 0o755)
	if get("c/other") != "" || get("c/sub2") != "" || get("c/sub2/deep") != "" {
		t.Fatal("meta survived deletion")
	}
	// A directory holding only a sidecar is empty for Remove.
	f.Mkdir("e", 0o755)
	set("e", "x")
	if err := f.Remove("e"); err != nil {
		t.Fatalf("remove dir with meta: %v", err)
	}
}

func TestChecksums(t *testing.T) {
	ts, f := newFS(t)
	data := bytes.Repeat([]byte("checksum me "), 50000)
	want := Hashes{MD5: hexOf(md5.Sum(data)), SHA1: hexOf(sha1.Sum(data)), SHA256: hexOf(sha256.Sum256(data))}
	// Upload with out-of-order writes: hashed during the upload.
	h, _ := f.Create("up")
	var wg sync.WaitGroup
	for off := 0; off < len(data); off += 32768 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.WriteAt(data[off:min(off+32768, len(data))], int64(off))
		}()
	}
	wg.Wait()
	h.Close()
	// MD5 and SHA-1 are hashed during the upload; SHA-256 is not.
	m, _ := f.Meta("up")
	if m.Hashes == nil || m.Hashes.MD5 != want.MD5 || m.Hashes.SHA1 != want.SHA1 || m.Hashes.SHA256 != "" {
		t.Fatalf("hashes cached during upload: %+v", m.Hashes)
	}
	// rclone sets the mtime afterwards: the cache stays valid.
	f.Chtimes("up", time.Unix(1e9, 0), time.Unix(1e9, 0))
	got, err := f.Checksums(t.Context(), "up", HashMD5, HashSHA1)
	if err != nil || got.MD5 != want.MD5 || got.SHA1 != want.SHA1 {
		t.Fatalf("checksums %+v %v", got, err)
	}
	// SHA-256 (also asked for by default) is computed on demand and joins
	// the cache.
	for _, kinds := range [][]HashKind{{HashSHA256}, nil} {
		got, err = f.Checksums(t.Context(), "up", kinds...)
		if err != nil || got.MD5 != want.MD5 || got.SHA1 != want.SHA1 || got.SHA256 != want.SHA256 {
			t.Fatalf("checksums %v: %+v %v", kinds, got, err)
		}
	}
	if m, _ := f.Meta("up"); m.Hashes == nil || m.Hashes.SHA256 != want.SHA256 || !m.Hashes.ModTime.Equal(time.Unix(1e9, 0)) {
		t.Fatalf("sha256 not cached: %+v", m.Hashes)
	}
	// Tamper with the cache: a valid-looking cache is used for the
	// digests it holds...
	f.h.ns.RLock()
	f.h.setHashes("up", &Hashes{MD5: "cached", SHA1: "cached", Size: int64(len(data)), ModTime: time.Unix(1e9, 0)})
	f.h.ns.RUnlock()
	if got, _ := f.Checksums(t.Context(), "up", HashMD5); got.MD5 != "cached" {
		t.Fatalf("cache not used: %+v", got)
	}
	// ...and the file is read for the one it lacks; the others stay.
	if got, _ := f.Checksums(t.Context(), "up", HashSHA256); got.MD5 != "cached" || got.SHA256 != want.SHA256 {
		t.Fatalf("cache without sha256 used: %+v", got)
	}
	f.h.ns.RLock()
	f.h.setHashes("up", &Hashes{MD5: "cached", SHA1: "cached", SHA256: "cached", Size: int64(len(data)), ModTime: time.Unix(1e9, 0)})
	f.h.ns.RUnlock()
	// ...but an in-place write invalidates it even if size and mtime are
	// restored afterwards (rsync --inplace).
	w, _ := f.OpenFile("up", os.O_RDWR, 0)
	w.WriteAt([]byte("X"), 5)
	w.Close()
	f.Chtimes("up", time.Unix(1e9, 0), time.Unix(1e9, 0))
	data[5] = 'X'
	got, _ = f.Checksums(t.Context(), "up")
	if got.MD5 != hexOf(md5.Sum(data)) {
		t.Fatalf("stale checksum after in-place write")
	}
	// Computed on demand and cached.
	if m, _ := f.Meta("up"); m.Hashes == nil || m.Hashes.MD5 != got.MD5 {
		t.Fatalf("on-demand result not cached: %+v", m.Hashes)
	}
	// Empty file.
	writeFile(t, f, "empty", nil)
	if got, _ := f.Checksums(t.Context(), "empty"); got.MD5 != "d41d8cd98f00b204e9800998ecf8427e" {
		t.Fatalf("empty md5 %s", got.MD5)
	}
	_ = ts
}

func hexOf[T ~[16]byte | ~[20]byte | ~[32]byte](b T) string {
	switch v := any(b).(type) {
	case [16]byte:
		return hex.EncodeToString(v[:])
	case [20]byte:
		return hex.EncodeToString(v[:])
	case [32]byte:
		return hex.EncodeToString(v[:])
	}
	return ""
}

// TestRewrapWhileWriting rotates the KEK and re-wraps the store while a
// client writes; afterwards every file is on the new KEK alone, the old
// KEK can be dropped, and all content reads back.
func TestRewrapWhileWriting(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	bob := ts.home(t, "bob", HomeOptions{})
	f.Mkdir("dir", 0o755)
	for i := range 20 {
		writeFile(t, f, filepath.Join("dir", string(rune('a'+i))), bytes.Repeat([]byte{byte(i)}, 70000))
	}
	writeFile(t, bob, "b", []byte("bob"))
	f.UpdateMeta("dir", func(m *Meta) error { m.Props = map[string]string{"{x}y": "z"}; return nil })
	if err := os.Chmod(filepath.Join(ts.dir, "alice", "dir", "a"), 0o444); err != nil {
		t.Fatal(err)
	}
	mtimeBefore, _ := f.Stat("dir/b")

	w, _ := f.Create("growing")
	stop := make(chan struct{})
	done := make(chan []byte)
	go func() {
		var written []byte
		chunk := bytes.Repeat([]byte("w"), 10000)
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- written
				return
			default:
			}
			chunk[0] = byte(i)
			if _, err := w.Write(chunk); err != nil {
				t.Error(err)
			}
			written = append(written, chunk...)
			if i%10 == 0 {
				w.Sync()
			}
		}
	}()
	kr := ts.kr.Clone()
	oldID := kr.Active()
	newID, err := kr.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	ts.SetKeyring(kr)
	var progressed int
	if err := ts.Rewrap(t.Context(), func(done, total int, name string) { progressed = done }); err != nil {
		t.Fatal(err)
	}
	close(stop)
	written := <-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A second run finishes anything the first could not see (the file
	// published after the sweep listed it) and is otherwise a no-op.
	if err := ts.Rewrap(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if progressed < 22 {
		t.Fatalf("progress reported %d files", progressed)
	}
	if mtimeAfter, _ := f.Stat("dir/b"); !mtimeAfter.ModTime().Equal(mtimeBefore.ModTime()) {
		t.Fatal("rewrap changed a file's mtime")
	}
	filepath.WalkDir(ts.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		ids, err := envelope.KeyIDs(fh)
		if err != nil || len(ids) != 1 || ids[0] != newID {
			t.Errorf("%s: key ids %v %v, want only %d", p, ids, err, newID)
		}
		return nil
	})
	// The read-only file set on disk (as an older version stored a
	// client's chmod 444) was repaired to owner write access; clients
	// still see 0444 (modes.go).
	if fi, _ := f.Stat("dir/a"); fi.Mode().Perm() != 0o444 {
		t.Fatalf("rewrap changed the mode: %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(ts.dir, "alice", "dir", "a")); !ownerAccess(fi.Mode()) {
		t.Fatalf("on-disk mode %v gives the owner no write access", fi.Mode())
	}
	// Drop the old KEK and reopen the store with the new keyring only.
	if err := kr.Remove(oldID); err != nil {
		t.Fatal(err)
	}
	ts.Store.Close()
	s2, err := NewStore(ts.dir, ts.with(Options{Keyring: kr, UploadHashes: testUploadHashes}))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	f2, _ := s2.Home("alice", HomeOptions{Perm: PermAll})
	if got := readFile(t, f2, "growing"); !bytes.Equal(got, written) {
		t.Fatalf("growing file: %d bytes, want %d", len(got), len(written))
	}
	if m, err := f2.Meta("dir"); err != nil || m.Props["{x}y"] != "z" {
		t.Fatalf("meta after rotation: %v %v", m, err)
	}
	var bad []string
	n, err := s2.Verify(t.Context(), "", func(p string, err error) { bad = append(bad, p+": "+err.Error()) })
	if err != nil || len(bad) > 0 || n < 23 {
		t.Fatalf("verify after rotation: %d checked, %v, %v", n, bad, err)
	}
}

func TestRemoveHome(t *testing.T) {
	ts := newStore(t)
	f := ts.home(t, "carol", HomeOptions{})
	f.MkdirAll("a/b", 0o755)
	writeFile(t, f, "a/b/c", []byte("x"))
	os.Chmod(filepath.Join(ts.dir, "carol", "a"), 0o555)
	if err := ts.RemoveHome(t.Context(), "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.stored("carol", "."); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("home still there: %v", err)
	}
	if err := ts.RemoveHome(t.Context(), "carol"); err != nil {
		t.Fatalf("second purge: %v", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", ".securefsd-x", "x\x00"} {
		if _, err := ts.Home(bad, HomeOptions{}); err == nil {
			t.Errorf("home %q accepted", bad)
		}
	}
}

// TestReplaceUnderReader: an upload replacing a file that is being
// downloaded stays atomic: the reader keeps the old content, an upload
// that dies leaves the old file, and usage stays right.
func TestReplaceUnderReader(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprintf("abort=%v", abort), func(t *testing.T) {
			_, f := newFS(t)
			old := bytes.Repeat([]byte("old"), 40000)
			writeFile(t, f, "f", old)
			r, err := f.Open("f")
			if err != nil {
				t.Fatal(err)
			}
			w, err := f.OpenFile("f", os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("new content"))
			buf := make([]byte, len(old))
			if n, _ := r.ReadAt(buf, 0); n != len(old) || !bytes.Equal(buf, old) {
				t.Fatalf("reader sees %d bytes, not the old content", n)
			}
			if abort {
				w.Abort()
			} else if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if n, _ := r.ReadAt(buf, 0); n != len(old) || !bytes.Equal(buf, old) {
				t.Fatal("reader lost the old content")
			}
			r.Close()
			want := []byte("new content")
			if abort {
				want = old
			}
			if got := readFile(t, f, "f"); !bytes.Equal(got, want) {
				t.Fatalf("content %d bytes", len(got))
			}
			u, _ := f.Usage()
			if u.Files != 1 || u.UsedBytes != int64(len(want)) {
				t.Fatalf("usage %+v", u)
			}
		})
	}
}

// TestRewrapCatchesMovedFiles: files that move while a rotation sweeps
// the store (uploads published, directories renamed) still end up on the
// new KEK: Rewrap runs another pass when it finds files gone.
func TestRewrapCatchesMovedFiles(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	f.Mkdir("dir", 0o755)
	for i := range 20 {
		writeFile(t, f, fmt.Sprintf("dir/f%02d", i), []byte("old key"))
	}
	var uploads []*File
	for i := range 20 {
		h, err := f.Create(fmt.Sprintf("up%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte("started before the rotation"))
		uploads = append(uploads, h)
	}
	kr := ts.kr.Clone()
	oldID := kr.Active()
	newID, _ := kr.Rotate()
	ts.SetKeyring(kr)
	first := true
	err := ts.Rewrap(t.Context(), func(done, total int, name string) {
		if !first {
			return
		}
		first = false
		for _, h := range uploads {
			if err := h.Close(); err != nil {
				t.Error(err)
			}
		}
		if err := f.Rename("dir", "dir2", false); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	kr.Remove(oldID)
	filepath.WalkDir(ts.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fh, _ := os.Open(p)
		defer fh.Close()
		if ids, err := envelope.KeyIDs(fh); err != nil || len(ids) != 1 || ids[0] != newID {
			t.Errorf("%s: key ids %v %v, want only %d", p, ids, err, newID)
		}
		return nil
	})
}

// TestKeyIDsInUse: counts files per KEK, before and after a rotation.
func TestKeyIDsInUse(t *testing.T) {
	v1Only(t)
	ts, f := newFS(t)
	for i := range 3 {
		writeFile(t, f, fmt.Sprintf("f%d", i), []byte("x"))
	}
	oldID := ts.kr.Active()
	in, err := ts.KeyIDsInUse(t.Context())
	if err != nil || in[oldID] < 3 || len(in) != 1 {
		t.Fatalf("before rotation: %v %v", in, err)
	}
	kr := ts.kr.Clone()
	newID, _ := kr.Rotate()
	ts.SetKeyring(kr)
	if err := ts.Rewrap(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	in, err = ts.KeyIDsInUse(t.Context())
	if err != nil || in[oldID] != 0 || in[newID] < 3 {
		t.Fatalf("after rotation: %v %v", in, err)
	}
}

// TestLazyChecksums: with no Options.UploadHashes (the default) an upload
// computes no digest; Checksums computes the ones asked for on demand and
// the cache keeps what each call computed.
func TestLazyChecksums(t *testing.T) {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(filepath.Join(t.TempDir(), "store"), Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f, err := s.Home("u", HomeOptions{Perm: PermAll})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("lazy "), 30000)
	writeFile(t, f, "up", data)
	if m, _ := f.Meta("up"); m.Hashes != nil {
		t.Fatalf("hashes computed during the upload: %+v", m.Hashes)
	}
	got, err := f.Checksums(t.Context(), "up", HashMD5)
	if err != nil || got.MD5 != hexOf(md5.Sum(data)) || got.SHA1 != "" || got.SHA256 != "" {
		t.Fatalf("md5 on demand: %+v %v", got, err)
	}
	got, err = f.Checksums(t.Context(), "up", HashSHA1)
	if err != nil || got.SHA1 != hexOf(sha1.Sum(data)) || got.MD5 != hexOf(md5.Sum(data)) {
		t.Fatalf("sha1 on demand, md5 kept: %+v %v", got, err)
	}
	m, _ := f.Meta("up")
	if m.Hashes == nil || m.Hashes.MD5 != got.MD5 || m.Hashes.SHA1 != got.SHA1 || m.Hashes.SHA256 != "" {
		t.Fatalf("cached %+v", m.Hashes)
	}
	for in, want := range map[string]HashKind{"": 0, "none": 0, "md5": HashMD5, "MD5, sha1": HashMD5 | HashSHA1, "sha256": HashSHA256} {
		if k, err := ParseHashKinds(in); err != nil || k != want {
			t.Errorf("ParseHashKinds(%q) = %v, %v; want %v", in, k, err, want)
		}
	}
	if _, err := ParseHashKinds("crc32"); err == nil {
		t.Error("ParseHashKinds accepted crc32")
	}
}

// TestStoreAEAD: Options.AEAD picks the AEAD of new files and metadata
// (header byte 9, FORMAT.md); files of either AEAD read back in any store.
func TestStoreAEAD(t *testing.T) {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	for _, a := range []envelope.AEAD{envelope.XChaCha20Poly1305, envelope.XAES256GCM} {
		s, err := NewStore(dir, Options{Keyring: kr, AEAD: a})
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.Home("u", HomeOptions{Perm: PermAll})
		if err != nil {
			t.Fatal(err)
		}
		name := "f-" + a.String()
		writeFile(t, f, name, []byte(name))
		if err := f.UpdateMeta(name, func(m *Meta) error { m.Props = map[string]string{"{urn:x}p": "v"}; return nil }); err != nil {
			t.Fatal(err)
		}
		s.Close()
		for _, stored := range []string{name, metaFileName} {
			raw, err := os.ReadFile(filepath.Join(dir, "u", stored))
			if err != nil || len(raw) < 10 || envelope.AEAD(raw[9]) != a {
				t.Fatalf("%s stored with AEAD byte %v (%v), want %v", stored, raw[9], err, a)
			}
		}
	}
	s, err := NewStore(dir, Options{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, _ := s.Home("u", HomeOptions{Perm: PermAll})
	for _, a := range []envelope.AEAD{envelope.XChaCha20Poly1305, envelope.XAES256GCM} {
		name := "f-" + a.String()
		if got := readFile(t, f, name); string(got) != name {
			t.Errorf("%s read back %q", name, got)
		}
	}
	if _, err := NewStore(dir, Options{Keyring: kr, AEAD: 9}); err == nil {
		t.Error("NewStore accepted AEAD 9")
	}
}
