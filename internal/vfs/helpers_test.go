package vfs

import (
	"cmp"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil"
)

// logBuf collects log output; safe for concurrent use.
type logBuf = testutil.SyncBuffer

// testStorage is the layout the suite runs on: SECUREFSD_TEST_STORAGE=v2
// runs it on storage version 2 (scripts/test.sh runs both).
var testStorage = func() int {
	if os.Getenv("SECUREFSD_TEST_STORAGE") == "v2" {
		return StorageV2
	}
	return StorageV1
}()

// v1Only skips a test of what only version 1 has (its directory layout
// on disk: planted links, hard links, the move journal, on-disk modes).
func v1Only(t testing.TB) {
	t.Helper()
	if testStorage == StorageV2 {
		t.Skip("version 1's on-disk layout: not in storage version 2")
	}
}

type testStore struct {
	*Store
	dir  string
	ikey []byte // storage v2's index key
	kr   *envelope.Keyring
	log  *logBuf        // the log as text, for failure output
	recs *testutil.Logs // the same records, for assertions
}

func newStore(t testing.TB) *testStore {
	t.Helper()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	lb := &logBuf{}
	recs := testutil.NewLogs().Tee(slog.NewTextHandler(lb, nil))
	ts := &testStore{dir: dir, kr: kr, log: lb, recs: recs, ikey: make([]byte, 32)}
	rand.Read(ts.ikey)
	s, err := NewStore(dir, ts.with(Options{UploadHashes: testUploadHashes, Logger: recs.Logger()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts.Store = s
	return ts
}

// with completes o for ts's store: its keyring, the suite's storage
// version and its index key.
func (ts *testStore) with(o Options) Options {
	if o.Keyring == nil {
		o.Keyring = ts.kr
	}
	o.Storage = testStorage
	o.IndexKey = ts.ikey
	if testStorage == StorageV2 && os.Getenv("SECUREFSD_TEST_DURABILITY") == "relaxed" && o.Index == nil {
		o.Relaxed = 50 * time.Millisecond
	}
	return o
}

// stored is the entry rel of tree (a home, or foldersDir/name) as the
// store keeps it: on disk in version 1, in the index in version 2.
func (ts *testStore) stored(tree, rel string) (fs.FileInfo, error) {
	if ts.v2 == nil {
		return os.Lstat(filepath.Join(ts.dir, tree, rel))
	}
	if ok, err := ts.v2.fs.HasTree(tree); !ok || err != nil {
		return nil, cmp.Or(err, fs.ErrNotExist)
	}
	t, err := ts.v2.fs.Tree(tree)
	if err != nil {
		return nil, err
	}
	return t.Lstat(rel)
}

// reopen opens a second Store over ts's directory (as after a restart),
// closed when the test ends, and returns the home name in it. In storage
// version 2, whose index admits one store at a time, ts's store is closed
// first.
func (ts *testStore) reopen(t testing.TB, name string) *FS {
	t.Helper()
	if ts.v2 != nil {
		ts.Store.Close()
	}
	s, err := NewStore(ts.dir, ts.with(Options{UploadHashes: testUploadHashes}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f, err := s.Home(name, HomeOptions{Perm: PermAll})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (ts *testStore) home(t testing.TB, name string, opts HomeOptions) *FS {
	t.Helper()
	if opts.Perm == 0 {
		opts.Perm = PermAll
	}
	f, err := ts.Home(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newFS(t testing.TB) (*testStore, *FS) {
	t.Helper()
	ts := newStore(t)
	return ts, ts.home(t, "alice", HomeOptions{})
}

func writeFile(t testing.TB, f *FS, name string, data []byte) {
	t.Helper()
	h, err := f.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, f *FS, name string) []byte {
	t.Helper()
	h, err := f.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	data, err := io.ReadAll(h)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// category reduces an error to what the conformance suite compares.
func category(err error) string {
	switch {
	case err == nil:
		return "ok"
	case err == io.EOF:
		return "eof"
	case errors.Is(err, fs.ErrNotExist):
		return "notexist"
	case errors.Is(err, ErrNotEmpty), errors.Is(err, syscall.ENOTEMPTY):
		return "notempty"
	case errors.Is(err, fs.ErrExist):
		return "exist"
	case errors.Is(err, ErrIsDir), errors.Is(err, syscall.EISDIR):
		return "isdir"
	case errors.Is(err, ErrNotDir), errors.Is(err, syscall.ENOTDIR):
		return "notdir"
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EBADF):
		return "perm"
	case errors.Is(err, fs.ErrInvalid), errors.Is(err, syscall.EINVAL):
		return "invalid"
	case errors.Is(err, fs.ErrClosed):
		return "closed"
	}
	return "other: " + err.Error()
}

func mustPathErr(t testing.TB, err error, name string) {
	t.Helper()
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *fs.PathError", err, err)
	}
	if pe.Path != name {
		t.Fatalf("PathError.Path = %q, want client name %q", pe.Path, name)
	}
}

// testUploadHashes: most tests run with the digests rclone asks for computed
// during uploads (serve --upload-hashes md5,sha1); TestLazyChecksums covers
// the default, none.
const testUploadHashes = HashMD5 | HashSHA1
