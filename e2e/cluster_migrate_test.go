package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// migrateToCluster runs `securefsd migrate --to-store --to-etcd` on dir
// into c, with env added (kill points).
func (c *clusterEnv) migrate(t *testing.T, dir string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binPath, "--data-dir", dir, "migrate", "--to-store", "s3://sfd/blobs", "--s3-endpoint", c.s3.Endpoint,
		"--to-etcd", strings.Join(c.etcd.Endpoints(), ","), "--etcd-max-txn-ops", "1024")
	cmd.Env = append(append(os.Environ(), c.env...), env...)
	timer := time.AfterFunc(5*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// copyKeys makes a new data directory holding dir's keyring, index key
// and users key, as a node added to a cluster gets them.
func copyKeys(t *testing.T, dir string) string {
	t.Helper()
	nd := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(nd, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keyring", "index.key", "users.key"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nd, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return nd
}

// TestClusterMigrate (issue 21, "migrate --to-store --to-etcd"): a single
// node's data directory (storage v1 as today's servers write it: two
// users, homes, a shared folder, a file of several segments, names with a
// marker) is moved into a cluster of 3 etcd members and Versity's
// gateway, killed by SIGKILL at every stage (mid-upload, after the index,
// after the users, mid-verification, after the local store's removal) and
// run again each time; meanwhile serve refuses the data directory and a
// node refuses the etcd prefix, and another store cannot claim the
// prefix. Then the migrated directory and a second node with copies of
// its keys serve every file (OpenSSH sftp and curl WebDAV, both nodes),
// the users log in with their old passwords, and the marker is in no
// file of the bucket, no etcd key or value, no file of either data
// directory, nor in migrate's output.
func TestClusterMigrate(t *testing.T) {
	t.Parallel() // mostly waiting on other processes: beside the flood tests
	c := startClusterEnv(t)
	srv := StartServer(t)
	const monaPass, ottoPass = "migrate-pw-kx-4e1a", "migrate-pw-qz-77c2"
	monaKey := srv.AddUser(t, "mona", monaPass)
	srv.AddUser(t, "otto", ottoPass)
	tmp := t.TempDir()
	small := filepath.Join(tmp, "small")
	if err := os.WriteFile(small, []byte(strings.Repeat(marker+" small file content\n", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(tmp, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte(marker+" plaintext of a file of several segments\n"), 230000), 0o600); err != nil { // ~11 MB
		t.Fatal(err)
	}
	files := map[string]string{marker + "-dir/" + marker + "-big.pdf": big}
	var batch strings.Builder
	batch.WriteString("mkdir " + marker + "-dir\nput " + big + " " + marker + "-dir/" + marker + "-big.pdf\n")
	for i := range 10 {
		name := fmt.Sprintf("%s-dir/%s-%02d.txt", marker, marker, i)
		files[name] = small
		fmt.Fprintf(&batch, "put %s %s\n", small, name)
	}
	if out, err := srv.SFTPBatch(t, "mona", monaKey, batch.String()); err != nil {
		t.Fatalf("sftp into the single node: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"folder", "add", "team"}, {"folder", "grant", "team", "mona", "--perms", "all"}} {
		if out, err := srv.CLI(t, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if out, err := srv.SFTPBatch(t, "mona", monaKey, "put "+small+" /Shared/team/"+marker+"-shared.txt\n"); err != nil {
		t.Fatalf("sftp into the folder: %v\n%s", err, out)
	}
	files["Shared/team/"+marker+"-shared.txt"] = small
	srv.Stop(t)
	dir := srv.DataDir

	var outs strings.Builder
	for _, stop := range []string{"blobs:3", "index", "users", "verifying", "verified"} {
		out, err := c.migrate(t, dir, "SECUREFSD_TEST_MIGRATE_STOP="+stop)
		outs.WriteString(out)
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("migrate with the kill point %s: %v, want killed\n%s", stop, err, out)
		}
		if stop == "blobs:3" {
			// Half moved: serve refuses the data directory, and a node
			// the etcd prefix; another store cannot claim the prefix.
			cmd := exec.Command(binPath, "--data-dir", dir, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0")
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "into a cluster is not finished") {
				t.Fatalf("serve on a half-moved data directory: %v\n%s", err, out)
			}
			cmd = exec.Command(binPath, append([]string{"--data-dir", copyKeys(t, dir), "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0"}, c.args...)...)
			cmd.Env = append(os.Environ(), c.env...)
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "is not finished") {
				t.Fatalf("a node on the prefix a move is under way into: %v\n%s", err, out)
			}
			other := StartServer(t, WithStorageV2())
			other.AddUser(t, "x", "other-store-pw-19ad")
			other.Stop(t)
			if out, err := c.migrate(t, other.DataDir); err == nil || !strings.Contains(out, "already holds another store's") {
				t.Fatalf("another store moved into the claimed prefix: %v\n%s", err, out)
			}
		}
	}
	out, err := c.migrate(t, dir)
	outs.WriteString(out)
	// The run killed after the verification printed it.
	if err != nil || !strings.Contains(out, "moved into the cluster") || !strings.Contains(outs.String(), "verified through etcd and the object store") {
		t.Fatalf("migrate after the kills: %v\n%s", err, out)
	}
	t.Logf("migrate's runs:\n%s", outs.String())
	if strings.Contains(outs.String(), "MRKR") || strings.Contains(outs.String(), "mona") {
		t.Errorf("migrate's output names a file or a user:\n%s", outs.String())
	}
	if out, err := c.migrate(t, dir); err != nil || !strings.Contains(out, "already a cluster node's") {
		t.Errorf("migrate of a moved data directory: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "index.db")); err == nil {
		t.Error("the local index is still in the data directory")
	}

	n1 := c.node(t, nil, WithDataDir(dir))
	n2 := c.node(t, n1)
	got := filepath.Join(tmp, "got")
	for _, n := range []*Server{n1, n2} {
		for name, src := range files {
			os.Remove(got)
			if out, err := n.SFTPBatch(t, "mona", monaKey, "get /"+name+" "+got+"\n"); err != nil {
				t.Fatalf("sftp get %s through %s: %v\n%s", name, n.DataDir, err, out)
			}
			SameFile(t, src, got)
			os.Remove(got)
			if out, err := n.Curl(t, "mona", monaPass, "-f", "-o", got, n.DAVURL+"/"+name); err != nil {
				t.Fatalf("webdav get %s through %s: %v\n%s", name, n.DataDir, err, out)
			}
			SameFile(t, src, got)
		}
		// otto logs in with his old password; a wrong one is refused.
		if out, err := n.Curl(t, "otto", ottoPass, "-f", "-X", "PROPFIND", "-H", "Depth: 0", n.DAVURL+"/"); err != nil {
			t.Fatalf("otto's old password on %s: %v\n%s", n.DataDir, err, out)
		}
		if code := strings.TrimSpace(mustOut(n.Curl(t, "otto", "not-"+ottoPass, "-o", os.DevNull, "-w", "%{http_code}", n.DAVURL+"/"))); code != "401" {
			t.Errorf("a wrong password on %s: HTTP %s, want 401", n.DataDir, code)
		}
	}
	// A file written through node 2 after the move reads on node 1.
	if out, err := n2.Curl(t, "mona", monaPass, "-f", "-T", small, n2.DAVURL+"/"+marker+"-after.txt"); err != nil {
		t.Fatalf("webdav put through node 2: %v\n%s", err, out)
	}
	os.Remove(got)
	if out, err := n1.SFTPBatch(t, "mona", monaKey, "get "+marker+"-after.txt "+got+"\n"); err != nil {
		t.Fatalf("sftp get through node 1 of node 2's upload: %v\n%s", err, out)
	}
	SameFile(t, small, got)

	assertNoMarker(t, c.s3.Dir, marker)
	AssertNoPlaintext(t, c.s3.Dir, big)
	dump := c.etcdDump(t)
	for _, s := range []string{marker, "mona", "otto", "team"} {
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("%q in etcd", s)
		}
	}
	for _, n := range []*Server{n1, n2} {
		assertNoMarker(t, n.DataDir, marker)
		AssertNoPlaintext(t, n.DataDir, big)
	}
}

func mustOut(out string, _ error) string { return out }
