package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIWhileServing manages users through a running server (the admin
// socket), then the same commands with the server stopped (direct database).
func TestCLIWhileServing(t *testing.T) {
	srv := StartServer(t)
	if !strings.Contains(srv.Log(), `created user "securefsd" with password`) {
		t.Errorf("first run did not print the first user's password:\n%s", srv.Log())
	}
	for _, want := range []string{"sftp -P ", "scp -P ", "curl -k -u securefsd:", "rclone lsf :webdav:"} {
		if !strings.Contains(srv.Log(), want) {
			t.Errorf("first run output lacks %q", want)
		}
	}

	key := srv.AddUser(t, "alice", "nyvpr-secret-1-e2e-pass")
	// The password never reaches the log.
	if strings.Contains(srv.Log(), "nyvpr-secret-1-e2e-pass") {
		t.Fatal("password in the server log")
	}
	if _, err := srv.CLIInput(t, "x-long-password\n", "user", "add", "alice", "--password-stdin"); err == nil {
		t.Fatal("adding alice twice succeeded")
	}
	out, err := srv.CLI(t, "user", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Name  string   `json:"name"`
		Keys  []string `json:"keys"`
		Perms string   `json:"perms"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("user list --json: %v\n%s", err, out)
	}
	if len(rows) != 2 || rows[0].Name != "alice" || len(rows[0].Keys) != 1 {
		t.Fatalf("user list --json = %+v", rows)
	}
	if out, err := srv.CLI(t, "user", "list"); err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "NAME") {
		t.Fatalf("user list: %v\n%s", err, out)
	}

	// The new user can log in at once over SFTP with the key, and over WebDAV with the password.
	if out, err := srv.SFTPBatch(t, "alice", key, "pwd\n"); err != nil {
		t.Fatalf("sftp as alice: %v\n%s", err, out)
	}
	if out, err := srv.Curl(t, "alice", "nyvpr-secret-1-e2e-pass", "-f", "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); err != nil {
		t.Fatalf("PROPFIND as alice: %v\n%s", err, out)
	}

	// passwd while serving: the old password stops working at once (cache invalidated).
	if _, err := srv.CLIInput(t, "nyvpr-secret-2-e2e-pass\n", "user", "passwd", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Curl(t, "alice", "nyvpr-secret-1-e2e-pass", "-f", "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); err == nil {
		t.Fatal("old password still accepted after user passwd")
	}
	if out, err := srv.Curl(t, "alice", "nyvpr-secret-2-e2e-pass", "-f", "-X", "PROPFIND", "-H", "Depth: 0", srv.DAVURL+"/"); err != nil {
		t.Fatalf("new password refused: %v\n%s", err, out)
	}

	// Keys: list, add a second, delete the first.
	out, err = srv.CLI(t, "user", "key", "list", "alice")
	if err != nil || !strings.HasPrefix(out, "SHA256:") {
		t.Fatalf("user key list: %v\n%s", err, out)
	}
	fp := strings.Fields(out)[0]
	key2 := GenerateKey(t)
	if _, err := srv.CLI(t, "user", "key", "add", "alice", key2+".pub"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(t, "user", "key", "del", "alice", fp); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SFTPBatch(t, "alice", key, "pwd\n"); err == nil {
		t.Fatal("deleted key still logs in")
	}
	if out, err := srv.SFTPBatch(t, "alice", key2, "pwd\n"); err != nil {
		t.Fatalf("added key refused: %v\n%s", err, out)
	}

	// Disable, enable.
	if _, err := srv.CLI(t, "user", "disable", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SFTPBatch(t, "alice", key2, "pwd\n"); err == nil {
		t.Fatal("disabled user logged in")
	}
	if _, err := srv.CLI(t, "user", "enable", "alice"); err != nil {
		t.Fatal(err)
	}

	// verify while serving: clean store.
	if out, err := srv.CLI(t, "verify"); err != nil || !strings.Contains(out, "0 damaged") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	// Delete with purge removes the files.
	file := RandomFile(t, 1000)
	if out, err := srv.SFTPBatch(t, "alice", key2, "put "+file+" f\n"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	if _, err := srv.CLI(t, "user", "del", "alice", "--purge"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.DataDir, "store", "alice")); !os.IsNotExist(err) {
		t.Fatalf("purged home still there: %v", err)
	}

	// With the server stopped, the CLI opens the database itself.
	srv.Stop(t)
	srv.AddUser(t, "bob", "obo-secret-e2e-pass")
	out, err = srv.CLI(t, "user", "list")
	if err != nil || !strings.Contains(out, "bob") {
		t.Fatalf("offline user list: %v\n%s", err, out)
	}
	if out, err := srv.CLI(t, "verify", "--user", "bob"); err != nil {
		t.Fatalf("offline verify: %v\n%s", err, out)
	}
	if out, err := srv.CLI(t, "version"); err != nil || !strings.HasPrefix(out, "securefsd ") {
		t.Fatalf("version: %v %q", err, out)
	}
}

// TestKeySources covers the key file checks at start-up.
func TestKeySources(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keyring")
	data := filepath.Join(dir, "data")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(binPath, append([]string{"--data-dir", data}, args...)...).CombinedOutput()
		return string(out), err
	}

	// An explicit key file must exist.
	if out, err := run("--key-file", keyFile, "serve", "--sftp-addr", "", "--dav-addr", ""); err == nil || !strings.Contains(out, "key generate") {
		t.Fatalf("missing --key-file accepted: %v\n%s", err, out)
	}
	if out, err := run("--key-file", keyFile, "key", "generate"); err != nil {
		t.Fatalf("key generate: %v\n%s", err, out)
	}
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	if out, err := run("--key-file", keyFile, "key", "generate"); err == nil {
		t.Fatalf("key generate overwrote a keyring\n%s", out)
	}

	// A group/world-readable key file is refused with a clear message.
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("--key-file", keyFile, "user", "list"); err == nil || !strings.Contains(out, "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v\n%s", err, out)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}

	srv := StartServer(t, WithDataDir(data), WithGlobalArgs("--key-file", keyFile))
	srv.Stop(t)
	for _, f := range []string{"users.db", "keycheck"} {
		if fi, err := os.Stat(filepath.Join(data, f)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, err %v (want 0600)", f, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v", fi.Mode())
	}

	// Another key does not open the data dir: refused before listening.
	other := filepath.Join(dir, "other")
	if out, err := run("--key-file", other, "key", "generate"); err != nil {
		t.Fatal(err, out)
	}
	out, err := run("--key-file", other, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "wrong key") || strings.Contains(out, "listening") {
		t.Fatalf("wrong key accepted or not reported first: %v\n%s", err, out)
	}

	// Passphrase-sealed keyring: right and wrong passphrase.
	pdata := filepath.Join(dir, "pdata")
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	psrv := StartServer(t, WithDataDir(pdata), WithGlobalArgs("--passphrase-file", pass))
	psrv.Stop(t)
	if err := os.WriteFile(pass, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pout, err := exec.Command(binPath, "--data-dir", pdata, "--passphrase-file", pass, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(pout), "wrong passphrase") {
		t.Fatalf("wrong passphrase accepted: %v\n%s", err, pout)
	}
}

// TestConfigFile starts the server from the YAML config file and env twins.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "securefsd.yaml")
	data := filepath.Join(dir, "cfgdata")
	if err := os.WriteFile(cfg, []byte("data-dir: "+data+"\nsftp-addr: 127.0.0.1:0\ndav-addr: \"\"\nlog-format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "--config", cfg, "serve")
	cmd.Env = append(os.Environ(), "SECUREFSD_LOG_LEVEL=debug")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 4096)
	var got strings.Builder
	for !strings.Contains(got.String(), "ready") {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("server ended: %v\n%s\n%s", err, got.String(), stderr.String())
		}
		got.Write(buf[:n])
	}
	if !strings.Contains(got.String(), "listening sftp 127.0.0.1:") || strings.Contains(got.String(), "listening webdav") {
		t.Fatalf("config file not applied:\n%s", got.String())
	}
	if _, err := os.Stat(filepath.Join(data, "users.db")); err != nil {
		t.Fatalf("data dir from config not used: %v", err)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	if !strings.Contains(stderr.String(), `"level":"DEBUG"`) && !strings.Contains(stderr.String(), `"level":"INFO"`) {
		t.Fatalf("log format json not applied:\n%s", stderr.String())
	}
}

// TestCipherFlag: serve --cipher picks the AEAD of new files (header byte
// 9, docs/FORMAT.md); files written under the other one stay readable
// after a restart with the default.
func TestCipherFlag(t *testing.T) {
	NeedTool(t, "sftp")
	srv := StartServer(t, WithServeArgs("--cipher", "XChaCha20-Poly1305"))
	key := srv.AddUser(t, "ciph", "pvcu-pw-e2e-pass")
	if len(records(srv, attrs("cipher", "XChaCha20-Poly1305"))) != 1 {
		t.Errorf("start-up log does not name the cipher:\n%s", srv.Log())
	}
	src := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(src, []byte("chacha content"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.SFTPBatch(t, "ciph", key, "put "+src+" a.txt\n"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(srv.DataDir, "store", "ciph", "a.txt"))
	if err != nil || len(raw) < 10 || raw[9] != 1 {
		t.Fatalf("stored AEAD byte: %v (len %d), want 1 (XChaCha20-Poly1305)", err, len(raw))
	}
	dir := srv.DataDir
	srv.Stop(t)
	srv2 := StartServer(t, WithDataDir(dir))
	back := filepath.Join(t.TempDir(), "back.txt")
	if out, err := srv2.SFTPBatch(t, "ciph", key, "get a.txt "+back+"\nput "+src+" b.txt\n"); err != nil {
		t.Fatalf("get after restart: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(back); string(got) != "chacha content" {
		t.Fatalf("read back %q", got)
	}
	raw, err = os.ReadFile(filepath.Join(dir, "store", "ciph", "b.txt"))
	if err != nil || len(raw) < 10 || raw[9] != 2 {
		t.Fatalf("default AEAD byte of a new file: %v, want 2 (XAES-256-GCM on this CPU)", err)
	}
	if out, err := srv2.CLI(t, "serve", "--cipher", "rot13"); err == nil || !strings.Contains(out+err.Error(), "unknown AEAD") {
		t.Errorf("serve --cipher rot13: %v\n%s", err, out)
	}
}

// TestCLIUserReuseHome: `user del` without --purge keeps the files; adding
// the same name again must not silently hand them to the new account
// (issue 14.12). Through the running server, then offline, then at the
// first-run user.
func TestCLIUserReuseHome(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-secret-1-e2e-pass")
	file := RandomFile(t, 1000)
	if out, err := srv.SFTPBatch(t, "alice", key, "put "+file+" old-secret\n"); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	out, err := srv.CLI(t, "user", "del", "alice")
	if err != nil || !strings.Contains(out, "--reuse-home") {
		t.Fatalf("user del: %v\n%s", err, out)
	}

	// While serving: refused, and nothing added.
	key2 := GenerateKey(t)
	_, err = srv.CLIInput(t, "new-owner-1-long-pass\n", "user", "add", "alice", "--password-stdin", "--key", key2+".pub")
	if err == nil || !strings.Contains(err.Error(), "--reuse-home") {
		t.Fatalf("re-add of a deleted user's name over the old files: %v", err)
	}
	if out, _ := srv.CLI(t, "user", "list"); strings.Contains(out, "alice") {
		t.Fatalf("refused add left a user:\n%s", out)
	}
	if _, err := srv.SFTPBatch(t, "alice", key2, "ls\n"); err == nil {
		t.Fatal("refused user logged in")
	}
	// With --reuse-home the new account gets the files, as asked.
	if _, err := srv.CLIInput(t, "new-owner-1-long-pass\n", "user", "add", "alice", "--password-stdin", "--key", key2+".pub", "--reuse-home"); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.SFTPBatch(t, "alice", key2, "ls\n"); err != nil || !strings.Contains(out, "old-secret") {
		t.Fatalf("reused home: %v\n%s", err, out)
	}

	// Offline: the same rule.
	srv.Stop(t)
	if _, err := srv.CLI(t, "user", "del", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLIInput(t, "x-1-long-password\n", "user", "add", "alice", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "--reuse-home") {
		t.Fatalf("offline re-add over the old files: %v", err)
	}
	if _, err := srv.CLIInput(t, "x-1-long-password\n", "user", "add", "alice", "--password-stdin", "--reuse-home"); err != nil {
		t.Fatal(err)
	}
	// Purged, the name is free without --reuse-home.
	if _, err := srv.CLI(t, "user", "del", "alice", "--purge"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLIInput(t, "x-2-long-password\n", "user", "add", "alice", "--password-stdin"); err != nil {
		t.Fatalf("add after purge: %v", err)
	}

	// The first-run user is not re-created over a deleted one's files.
	for _, u := range []string{"alice", "securefsd"} {
		if _, err := srv.CLI(t, "user", "del", u); err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart(t)
	if n := strings.Count(srv.Log(), `created user "securefsd"`); n != 1 {
		t.Errorf("first-run user created %d times over its old home, want once", n)
	}
	if out, _ := srv.CLI(t, "user", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("users after restart with only leftover homes: %s", out)
	}
}

// TestCLIVerifyKeyFile: through a running server, verify and key rotate
// work with the server's keyring; a --key-file naming another file is
// refused with a clear error instead of being silently ignored (issue
// 14.12). The server's own key file is accepted.
func TestCLIVerifyKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyFile, other := filepath.Join(dir, "keyring"), filepath.Join(dir, "other")
	data := filepath.Join(dir, "data")
	for _, k := range []string{keyFile, other} {
		if out, err := exec.Command(binPath, "--data-dir", data, "--key-file", k, "key", "generate").CombinedOutput(); err != nil {
			t.Fatalf("key generate: %v\n%s", err, out)
		}
	}
	srv := StartServer(t, WithDataDir(data), WithGlobalArgs("--key-file", keyFile))
	for _, cmd := range [][]string{{"verify"}, {"key", "rotate"}} {
		_, err := srv.CLI(t, append([]string{"--key-file", other}, cmd...)...)
		if err == nil || !strings.Contains(err.Error(), "running server") || !strings.Contains(err.Error(), "stop the server") {
			t.Errorf("%v --key-file OTHER through the server: %v, want a refusal", cmd, err)
		}
	}
	if out, err := srv.CLI(t, "--key-file", keyFile, "verify"); err != nil || !strings.Contains(out, "0 damaged") {
		t.Errorf("verify with the server's own --key-file: %v\n%s", err, out)
	}
	// A relative path to the same file is the same key file.
	rel, err := filepath.Rel(mustGetwd(t), keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI(t, "--key-file", rel, "verify"); err != nil {
		t.Errorf("verify with a relative path to the server's key file: %v\n%s", err, out)
	}
	if out, err := srv.CLI(t, "verify"); err != nil {
		t.Errorf("verify without --key-file: %v\n%s", err, out)
	}
	// Offline, --key-file is what the command loads: the other key does not open the store.
	srv.Stop(t)
	if _, err := srv.CLI(t, "--key-file", other, "verify"); err == nil || !strings.Contains(err.Error(), "does not open this data directory") {
		t.Errorf("offline verify with another key: %v", err)
	}
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
