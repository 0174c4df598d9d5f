package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/keyfile"
)

// envelopeFiles lists every stored file in the format (content, metadata,
// temporary files) under dir.
func envelopeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b := make([]byte, 8)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		n, _ := f.Read(b)
		f.Close()
		if n == 8 && string(b) == "securefs" {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keyIDs(t *testing.T, p string) []uint32 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, err := envelope.KeyIDs(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return ids
}

// serveOnce runs `securefsd serve` on 127.0.0.1:0 that is expected to
// refuse to start, and returns its combined output.
func serveOnce(t *testing.T, dataDir string, global ...string) (string, error) {
	t.Helper()
	args := append([]string{"--data-dir", dataDir}, global...)
	args = append(args, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0")
	cmd := exec.Command(binPath, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKeyRotateWhileServing runs `securefsd key rotate` through the live
// server while SFTP and WebDAV clients read and write: no client sees an
// error, every file reads back, the keyring then holds only the new KEK,
// every stored file (content, metadata, key check) references only it, the
// old KEK opens nothing any more (a stolen copy of the old key file is
// useless against the current store), and after a restart everything is
// still served and verified.
func TestKeyRotateWhileServing(t *testing.T) {
	srv := StartServer(t)
	aliceKey := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	srv.AddUser(t, "bob", "obo-pw-1-e2e-pass")
	keyring := filepath.Join(srv.DataDir, "keyring")
	kr0, err := keyfile.Load(keyring, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldID := kr0.Active()
	oldCopy := filepath.Join(t.TempDir(), "old-keyring")
	if b, err := os.ReadFile(keyring); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(oldCopy, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Files of both users, over both protocols, with a dead property (metadata).
	files := map[string][]byte{} // "user/name" -> content
	var filesMu sync.Mutex
	dav := map[string]*davClient{"alice": newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", ""), "bob": newDAV(t, srv, "bob", "obo-pw-1-e2e-pass", "")}
	for i, size := range []int{0, 1, envelope.DefaultChunkSize - 1, envelope.DefaultChunkSize, envelope.DefaultChunkSize + 1, 300 << 10} {
		for _, u := range []string{"alice", "bob"} {
			name := fmt.Sprintf("pre-%d", i)
			files[u+"/"+name] = randBytes(size)
			if err := dav[u].put("/"+name, files[u+"/"+name]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, b, err := dav["alice"].do("PROPPATCH", "/pre-1", strings.NewReader(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x:note xmlns:x="urn:x">keep me</x:note></D:prop></D:set></D:propertyupdate>`)); err != nil || code != http.StatusMultiStatus {
		t.Fatalf("PROPPATCH: %d %v %s", code, err, b)
	}

	// Clients read and write in a loop during the rotation.
	var (
		ops    atomic.Int64
		wg     sync.WaitGroup
		stop   = make(chan struct{})
		errsMu sync.Mutex
		errs   []error
	)
	var clients []interface{ Close() error }
	for w := range 4 {
		sc := newSFTP(t, srv, "alice", aliceKey)
		clients = append(clients, sc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			d := dav["bob"]
			user := "bob"
			if w%2 == 0 {
				user = "alice"
			}
			put := func(n string, b []byte) error {
				if user == "alice" {
					return sftpPut(sc, n, b)
				}
				return d.put("/"+n, b)
			}
			get := func(n string) ([]byte, error) {
				if user == "alice" {
					return sftpGet(sc, n)
				}
				return d.get("/" + n)
			}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, n%8) // overwrite a few names over and over
				data := randBytes(rng.IntN(100 << 10))
				err := put(name, data)
				if err == nil {
					filesMu.Lock()
					files[user+"/"+name] = data
					filesMu.Unlock()
					var got []byte
					got, err = get(name)
					if err == nil && !bytes.Equal(got, data) {
						err = fmt.Errorf("%s: read back different bytes", name)
					}
				}
				if err == nil {
					pre := fmt.Sprintf("pre-%d", rng.IntN(6))
					filesMu.Lock()
					want := files[user+"/"+pre]
					filesMu.Unlock()
					var got []byte
					got, err = get(pre)
					if err == nil && !bytes.Equal(got, want) {
						err = fmt.Errorf("%s: read back different bytes", pre)
					}
				}
				if err != nil {
					errsMu.Lock()
					errs = append(errs, fmt.Errorf("client %d (%s): %w", w, user, err))
					errsMu.Unlock()
					return
				}
				ops.Add(1)
			}
		}()
	}
	// Rotate several times (each rotation is a window for a write racing
	// the sweep), with client traffic before, between and after.
	rotations := 3 * soakScale()
	var out string
	for r := range rotations {
		before := ops.Load()
		waitFor(t, 60*time.Second, "10 client operations before a rotation", func() bool { return ops.Load() >= before+10 })
		var err error
		out, err = srv.CLI(t, "key", "rotate")
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("key rotate %d while serving: %v\n%s", r+1, err, out)
		}
	}
	after := ops.Load()
	waitFor(t, 60*time.Second, "10 client operations after the rotations", func() bool { return ops.Load() >= after+10 })
	close(stop)
	wg.Wait()
	// Idle SFTP sessions would hold the graceful restart below for its
	// whole --shutdown-timeout.
	for _, c := range clients {
		c.Close()
	}
	for _, err := range errs {
		t.Errorf("client error during rotation: %v", err)
	}
	t.Logf("%d rotations; last output: %s; %d client operations", rotations, strings.TrimSpace(out), ops.Load())

	// The keyring holds only the new KEK, still 0600.
	kr1, err := keyfile.Load(keyring, nil)
	if err != nil {
		t.Fatal(err)
	}
	newID := kr1.Active()
	if ids := kr1.IDs(); len(ids) != 1 || newID == oldID {
		t.Fatalf("keyring after rotate: ids %v active %d (old %d): want only a new KEK", ids, newID, oldID)
	}
	if fi, err := os.Stat(keyring); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode after rotate: %v %v", fi.Mode(), err)
	}
	// Every stored envelope references only the new KEK; the old KEK opens none.
	stored := append(envelopeFiles(t, filepath.Join(srv.DataDir, "store")), filepath.Join(srv.DataDir, "keycheck"))
	// On storage v2 small files' envelopes are records of the index
	// (sealed, counted once the server has stopped, below); reading every
	// file back after a restart with the new keyring alone checks them.
	indexDB := filepath.Join(srv.DataDir, "store", "index.db")
	_, err = os.Stat(indexDB)
	v2 := err == nil
	if !v2 && len(stored) < len(files) {
		t.Fatalf("found %d envelope files for %d client files", len(stored), len(files))
	}
	for _, p := range stored {
		if ids := keyIDs(t, p); !slices.Equal(ids, []uint32{newID}) {
			t.Errorf("%s references KEKs %v after rotate (want only %d)", strings.TrimPrefix(p, srv.DataDir), ids, newID)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if _, err := envelope.Open(f, fi.Size(), kr0, envelope.Options{}); !errors.Is(err, envelope.ErrUnknownKey) {
			t.Errorf("%s: the retired KEK still opens it (err %v)", strings.TrimPrefix(p, srv.DataDir), err)
		}
		f.Close()
	}

	checkAll := func(when string) {
		t.Helper()
		for k, want := range files {
			user, name, _ := strings.Cut(k, "/")
			d := newDAV(t, srv, user, map[string]string{"alice": "nyvpr-pw-1-e2e-pass", "bob": "obo-pw-1-e2e-pass"}[user], "")
			got, err := d.get("/" + name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s: %v (equal=%v)", when, k, err, bytes.Equal(got, want))
			}
		}
		d := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
		code, b, err := d.do("PROPFIND", "/pre-1", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><x:note xmlns:x="urn:x"/></D:prop></D:propfind>`), "Depth: 0")
		if err != nil || code != http.StatusMultiStatus || !bytes.Contains(b, []byte("keep me")) {
			t.Errorf("%s: dead property lost: %d %v %s", when, code, err, b)
		}
	}
	checkAll("after rotate")

	// Restart with the new keyring only: everything is served and verified.
	srv.Restart(t)
	checkAll("after restart")
	if damaged, failed, out := verify(t, srv); failed || len(damaged) > 0 {
		t.Errorf("verify after rotate and restart: %v\n%s", damaged, out)
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", aliceKey)

	// A copy of the old key file no longer opens the data directory.
	srv.Stop(t)
	if n := len(stored); v2 {
		n += len(indexRecords(t, indexDB, 'b'))
		if n < len(files) {
			t.Errorf("found %d envelopes (files and index records) for %d client files", n, len(files))
		}
	}
	out, err = serveOnce(t, srv.DataDir, "--key-file", oldCopy)
	if err == nil || !strings.Contains(out, "wrong key") || strings.Contains(out, "listening") {
		t.Errorf("the retired key file was accepted or not refused before listening: %v\n%s", err, out)
	}
}

// TestKeyAndDataFileModes checks what a first run and normal use leave on
// disk: the key file, the key check and the user database are 0600; host
// keys, the TLS key, metadata and temporary files and every directory above
// the homes are closed to group and others (public certificates and host
// public keys aside). Client files keep the client's mode bits on disk, so
// the data dir, the store and each home must be 0700: the test checks that
// a client chmod 777/666 does not open them.
func TestKeyAndDataFileModes(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	if err := c.Mkdir("dir"); err != nil {
		t.Fatal(err)
	}
	if err := sftpPut(c, "dir/f", randBytes(1000)); err != nil {
		t.Fatal(err)
	}
	d := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	if code, _, _ := d.do("PROPPATCH", "/dir/f", strings.NewReader(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x:a xmlns:x="urn:x">b</x:a></D:prop></D:set></D:propertyupdate>`)); code != http.StatusMultiStatus {
		t.Errorf("PROPPATCH: %d", code)
	}
	if err := d.put("/dav-file", randBytes(10)); err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"keyring", "keycheck", "users.db", "users.key"} {
		if fi, err := os.Stat(filepath.Join(srv.DataDir, must)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", must, fi.Mode(), err)
		}
	}
	public := func(p string) bool {
		return strings.HasSuffix(p, ".pub") || strings.HasSuffix(p, "cert.pem")
	}
	err := filepath.WalkDir(srv.DataDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(srv.DataDir, p)
		switch {
		case public(p) || fi.Mode().Perm()&0o077 == 0:
		case strings.HasPrefix(rel, "store"+string(filepath.Separator)+"alice"+string(filepath.Separator)) &&
			!strings.Contains(rel, ".securefsd"):
			// Client files and directories carry the client's mode bits on
			// disk (0644/0755 by default); the 0700 home keeps others out.
			t.Logf("%s: on-disk mode %v (client mode; reachable only through the 0700 home)", rel, fi.Mode().Perm())
		default:
			t.Errorf("%s: mode %v, want no group/other access", rel, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Client chmods: reported back; the directories above stay 0700.
	if err := c.Chmod("dir", 0o777); err != nil {
		t.Logf("chmod 777 dir: %v", err)
	}
	if err := c.Chmod("dir/f", 0o666); err != nil {
		t.Logf("chmod 666 dir/f: %v", err)
	}
	if fi, err := c.Stat("dir/f"); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("client-visible mode of dir/f after chmod 666: %v %v", fi.Mode(), err)
	}
	for _, p := range []string{srv.DataDir, filepath.Join(srv.DataDir, "store"), filepath.Join(srv.DataDir, "store", "alice")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v %v, want 0700", p, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(storePath(srv, "alice", "dir/f")); err == nil {
		t.Logf("on-disk mode of dir/f after a client chmod 666: %v", fi.Mode().Perm())
	}
}

// TestKeyFileRefusals extends TestKeySources (cli_test.go): every group-
// or world-accessible key file mode is refused with a clear message; a
// wrong or damaged key file is refused before listening and changes
// nothing on disk; a data directory whose default key file went missing is
// not given a fresh key.
func TestKeyFileRefusals(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	data := randBytes(100 << 10)
	if err := sftpPut(c, "f", data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	srv.Stop(t)
	keyring := filepath.Join(srv.DataDir, "keyring")
	before := treeDigest(t, srv.DataDir)

	for _, mode := range []fs.FileMode{0o640, 0o604, 0o660, 0o644, 0o666, 0o700 | 0o040, 0o601} {
		if err := os.Chmod(keyring, mode); err != nil {
			t.Fatal(err)
		}
		out, err := serveOnce(t, srv.DataDir)
		if err == nil || strings.Contains(out, "listening") || !strings.Contains(out, "chmod 600") {
			t.Errorf("key file mode %v: accepted or unclear: %v\n%s", mode, err, out)
		}
	}
	if err := os.Chmod(keyring, 0o600); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if out, err := exec.Command(binPath, "--data-dir", srv.DataDir, "--key-file", other, "key", "generate").CombinedOutput(); err != nil {
		t.Fatalf("key generate: %v\n%s", err, out)
	}
	damaged := filepath.Join(dir, "damaged")
	b, err := os.ReadFile(keyring)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(damaged, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"wrong key", other, "wrong key"},
		{"damaged key file", damaged, ""},
		{"empty key file", empty, ""},
	} {
		out, err := serveOnce(t, srv.DataDir, "--key-file", tc.file)
		if err == nil || strings.Contains(out, "listening") || !strings.Contains(strings.ToLower(out), tc.want) || strings.Contains(out, "panic") {
			t.Errorf("%s: %v\n%s", tc.name, err, out)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
	}

	// The default key file is gone: serve refuses to make a new key for a
	// data dir that has files.
	if err := os.Rename(keyring, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	out, err := serveOnce(t, srv.DataDir)
	if err == nil || strings.Contains(out, "listening") {
		t.Errorf("serve without the data dir's key file started: %v\n%s", err, out)
	}
	if _, err := os.Stat(keyring); err == nil {
		t.Errorf("serve created a new keyring for a data dir made with another one")
	}
	if err := os.Rename(filepath.Join(dir, "moved"), keyring); err != nil {
		t.Fatal(err)
	}
	if after := treeDigest(t, srv.DataDir); after != before {
		t.Errorf("refused start-ups changed the data directory")
	}

	// And with the right key everything is still there.
	srv.Restart(t)
	c = newSFTP(t, srv, "alice", key)
	if got, err := sftpGet(c, "f"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file after the refused start-ups: %v", err)
	}
}
