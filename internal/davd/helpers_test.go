package davd

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// testEnv is an in-process WebDAV server over a fresh store with two users.
type testEnv struct {
	URL      string
	StoreDir string
	Srv      *Server
	Store    *vfs.Store
	Users    *users.DB
	Log      *syncBuffer    // the log as text, for failure output
	Recs     *testutil.Logs // the same records, for assertions
}

const (
	testUser  = "alice"
	testPass  = "correct horse"
	otherUser = "bob"
	otherPass = "battery staple"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = testutil.SyncBuffer

type envOpt func(*users.User)

// withQuota sets alice's byte quota.
func withQuota(n int64) envOpt { return func(u *users.User) { u.QuotaBytes = n } }

// withPerms sets alice's permissions.
func withPerms(p users.Perm) envOpt { return func(u *users.User) { u.Perms = p } }

func newTestEnv(t testing.TB, opts ...envOpt) *testEnv {
	t.Helper()
	return newTestEnvDefender(t, users.DefenderOptions{Disabled: true}, opts...)
}

// newTestEnvBan bans an address after 3 failures.
func newTestEnvBan(t testing.TB) *testEnv {
	t.Helper()
	return newTestEnvDefender(t, users.DefenderOptions{
		AddrThreshold: 3, UserThreshold: 100, DelayAfter: 100,
		Sleep: func(context.Context, time.Duration) error { return nil },
	})
}

func newTestEnvDefender(t testing.TB, def users.DefenderOptions, opts ...envOpt) *testEnv {
	t.Helper()
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	st := newTestStore(t, storeDir)
	db := fixture.Users(t, filepath.Join(dir, "users.db"), users.Options{
		Defender: def,
	})
	alice := users.User{Name: testUser, Perms: users.PermAll}
	for _, o := range opts {
		o(&alice)
	}
	if err := db.Add(context.Background(), alice, []byte(testPass)); err != nil {
		t.Fatal(err)
	}
	if err := db.Add(context.Background(), users.User{Name: otherUser, Perms: users.PermAll}, []byte(otherPass)); err != nil {
		t.Fatal(err)
	}
	logBuf := &syncBuffer{}
	var w io.Writer = logBuf
	if os.Getenv("DAVD_TEST_LOG") != "" {
		w = io.MultiWriter(logBuf, os.Stderr)
	}
	recs := testutil.NewLogs().Tee(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(Options{Store: st, Users: db, Logger: recs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{URL: serveOn(t, srv, nil), StoreDir: storeDir, Srv: srv, Store: st, Users: db, Log: logBuf, Recs: recs}
}

// home opens a user's home directly (to check what WebDAV did).
func (e *testEnv) home(t testing.TB, user string) *vfs.FS {
	t.Helper()
	fs, err := e.Store.Home(user, vfs.HomeOptions{Perm: vfs.Perm(users.PermAll)})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// do sends a request as alice (user "" = no auth) and returns the response with its body read.
func (e *testEnv) do(t testing.TB, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	return e.doAs(t, testUser, testPass, method, path, body, hdr...)
}

func (e *testEnv) doAs(t testing.TB, user, pass, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// serveWith serves a second Server over the same store and users with opts
// (Store, Users and Logger filled in) and returns its base URL.
func (e *testEnv) serveWith(t testing.TB, opts Options) string {
	t.Helper()
	opts.Store, opts.Users = e.Store, e.Users
	if opts.Logger == nil {
		opts.Logger = e.Recs.Logger()
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, srv, nil)
}

// serveOn serves srv on a loopback port until the test ends (over TLS if
// tlsCfg is set) and returns its base URL.
func serveOn(t testing.TB, srv *Server, tlsCfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, tlsCfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	return scheme + ln.Addr().String()
}

// logged reports whether the server logged a record with the given "event"
// attribute whose "path" ends in suffix.
func (e *testEnv) logged(event, suffix string) bool {
	return e.Recs.Count(func(r testutil.Record) bool {
		return r.Attr("event") == event && strings.HasSuffix(r.Attr("path"), suffix)
	}) > 0
}
