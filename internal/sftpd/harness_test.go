package sftpd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// testServer is an sftpd.Server on 127.0.0.1:0 over a temporary store and
// user database.
type testServer struct {
	t        testing.TB
	srv      *Server
	store    *vfs.Store
	db       *users.DB
	addr     string
	port     string
	storeDir string
	logs     *syncBuffer    // the log as text, for failure output
	rec      *testutil.Logs // the same records, for assertions
	hostKey  ssh.PublicKey
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = testutil.SyncBuffer

type serverOption func(*Options)

func startServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	dir := t.TempDir()
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	rec := testutil.NewLogs().Tee(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger := rec.Logger()
	// The vfs per-user handle cap above the session's, so session limits
	// are tested on their own (e2e TestFDFloodOneUser covers the user's).
	store := fixture.Store(t, filepath.Join(dir, "store"), vfs.Options{Keyring: kr, Logger: logger, MaxHandlesPerHome: 4 * maxHandles})
	db := fixture.Users(t, filepath.Join(dir, "users.db"), users.Options{
		Logger: logger,
	})
	keys, err := LoadOrCreateHostKeys(filepath.Join(dir, "hostkeys"))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Store: store, Users: db, HostKeys: keys, Logger: logger}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-served
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &testServer{t: t, srv: srv, store: store, db: db, addr: ln.Addr().String(), port: port,
		storeDir: filepath.Join(dir, "store"), logs: logs, rec: rec, hostKey: keys[0].PublicKey()}
}

// testUser is a user with a password and an ed25519 key.
type testUser struct {
	name, password string
	keyFile        string
	signer         ssh.Signer
}

func (ts *testServer) addUser(name string, perms users.Perm, mod ...func(*users.User)) *testUser {
	t := ts.t
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	u := users.User{Name: name, Perms: perms}
	for _, f := range mod {
		f(&u)
	}
	password := "pw-" + name
	if err := ts.db.Add(context.Background(), u, []byte(password)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.db.AddKey(context.Background(), name, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))+" test"); err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &testUser{name: name, password: password, keyFile: keyFile, signer: signer}
}

// sshOpts are the OpenSSH client options for a test connection.
func (ts *testServer) sshOpts(u *testUser) []string {
	return []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
		"-o", "User=" + u.name, "-i", u.keyFile,
	}
}

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not installed: %v", name, err)
	}
}

// sftpBatch runs OpenSSH sftp -b with the given commands (in dir) and
// returns combined output.
func (ts *testServer) sftpBatch(u *testUser, dir string, cmds ...string) (string, error) {
	t := ts.t
	t.Helper()
	needTool(t, "sftp")
	batch := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(batch, []byte(strings.Join(cmds, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(ts.sshOpts(u), "-P", ts.port, "-b", batch, "127.0.0.1")
	cmd := exec.CommandContext(t.Context(), "sftp", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// scp runs OpenSSH scp with extra args; remote paths are written "R:path".
func (ts *testServer) scp(u *testUser, dir string, args ...string) (string, error) {
	t := ts.t
	t.Helper()
	needTool(t, "scp")
	full := append(ts.sshOpts(u), "-P", ts.port)
	for _, a := range args {
		if rest, ok := strings.CutPrefix(a, "R:"); ok {
			a = "127.0.0.1:" + rest
		}
		full = append(full, a)
	}
	cmd := exec.CommandContext(t.Context(), "scp", full...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sshRun runs a command through OpenSSH ssh; returns stdout, stderr, exit code.
func (ts *testServer) sshRun(u *testUser, stdin io.Reader, command ...string) (string, string, int) {
	t := ts.t
	t.Helper()
	needTool(t, "ssh")
	args := append(ts.sshOpts(u), "-p", ts.port, "127.0.0.1")
	args = append(args, command...)
	cmd := exec.CommandContext(t.Context(), "ssh", args...)
	cmd.Stdin = stdin
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ssh: %v", err)
	}
	return so.String(), se.String(), code
}

// dial opens an authenticated x/crypto SSH client connection.
func (ts *testServer) dial(u *testUser) *ssh.Client {
	t := ts.t
	t.Helper()
	c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
		User:              u.name,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(u.signer)},
		HostKeyCallback:   ssh.FixedHostKey(ts.hostKey),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial as %s: %v", u.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sftpClient opens a pkg/sftp client session.
func (ts *testServer) sftpClient(u *testUser, opts ...sftp.ClientOption) *sftp.Client {
	t := ts.t
	t.Helper()
	c, err := sftp.NewClient(ts.dial(u), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// home opens the user's home directly through vfs (to check results).
func (ts *testServer) home(name string) *vfs.FS {
	ts.t.Helper()
	f, err := ts.store.Home(name, vfs.HomeOptions{Perm: vfs.PermAll})
	if err != nil {
		ts.t.Fatal(err)
	}
	return f
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func readVFS(t testing.TB, f *vfs.FS, name string) []byte {
	t.Helper()
	return fixture.ReadFile(t, f, name)
}

func newSFTPClient(c *ssh.Client) (*sftp.Client, error) { return sftp.NewClient(c) }

// event matches the log records with the given "event" attribute.
func event(e string) func(testutil.Record) bool {
	return func(r testutil.Record) bool { return r.Attr("event") == e }
}

// waitRecords waits (up to a deadline) until the log holds at least n
// records that keep accepts.
func waitRecords(t *testing.T, ts *testServer, keep func(testutil.Record) bool, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := ts.rec.Count(keep)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log has %d matching records, want %d:\n%s", got, n, ts.rec.Dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
