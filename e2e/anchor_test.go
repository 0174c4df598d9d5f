package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollbackAnchor (issue 20): with --rollback-anchor, a users.db put
// back from an older copy (a deleted user in it again) stops the server
// from starting, with a message that says what to do; `anchor reset`
// accepts an intended restore.
func TestRollbackAnchor(t *testing.T) {
	anchor := filepath.Join(t.TempDir(), "anchor")
	srv := StartServer(t, WithServeArgs("--rollback-anchor", anchor))
	srv.AddUser(t, "mallory", "orange-anchor-pass-1")
	srv.Stop(t)
	old, err := os.ReadFile(filepath.Join(srv.DataDir, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	if _, err := srv.CLI(t, "user", "del", "mallory"); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t) // a clean stop writes the anchor
	if err := os.WriteFile(filepath.Join(srv.DataDir, "users.db"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "--data-dir", srv.DataDir, "serve", "--sftp-addr", "127.0.0.1:0",
		"--dav-addr", "127.0.0.1:0", "--rollback-anchor", anchor).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "older than its rollback anchor") || !strings.Contains(string(out), "anchor reset") {
		t.Fatalf("start on an older users.db: %v\n%s", err, out)
	}
	if out, err := srv.CLI(t, "anchor", "reset", "--rollback-anchor", anchor); err != nil {
		t.Fatalf("anchor reset: %v\n%s", err, out)
	}
	srv.Restart(t)
	if out, err := srv.CLI(t, "user", "list"); err != nil || !strings.Contains(out, "mallory") {
		t.Errorf("after the accepted restore: %v\n%s", err, out)
	}
}
