package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

// migrate runs `securefsd migrate --to-store --to-etcd` on dir
// into c, with env added (kill points).
func (c *clusterEnv) migrate(t testing.TB, dir string, env ...string) (string, error) {
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
// after the users, mid-verification, after the local store's removal, after
// the claim on the etcd prefix is dropped) and
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
	for _, stop := range []string{"blobs:3", "index", "users", "verifying", "verified", "dropped"} {
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

	backupDir := clusterBackupAndRestore(t, c, n1, monaKey, monaPass, files)

	assertNoMarker(t, c.s3.Dir, marker)
	AssertNoPlaintext(t, c.s3.Dir, big)
	assertNoMarker(t, backupDir, marker)
	AssertNoPlaintext(t, backupDir, big)
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

// clusterBackupAndRestore (issue 21, "backup of etcd and the bucket"):
// backup through a node's admin socket refuses; `securefsd backup
// --etcd-endpoints --store` writes etcd's snapshot, the manifest and every
// blob it names (byte for byte the bucket's objects), and a second run
// downloads nothing; the backup restored into a new etcd (etcdctl
// snapshot restore) and a new bucket (rclone copy) serves every file to a
// new node, where the user logs in with the old password and verify finds
// nothing damaged. It returns the backup directory.
func clusterBackupAndRestore(t *testing.T, c *clusterEnv, n1 *Server, key, pass string, files map[string]string) string {
	t.Helper()
	tmp := t.TempDir()
	if out, err := n1.CLI(t, "backup", filepath.Join(tmp, "through-node")); err == nil || !strings.Contains(err.Error(), "--etcd-endpoints") {
		t.Fatalf("backup through a cluster node: %v, want a refusal naming --etcd-endpoints\n%s", err, out)
	}
	dest := filepath.Join(tmp, "cluster-backup")
	backupCmd := func(env ...string) *exec.Cmd {
		cmd := exec.Command(binPath, "--data-dir", n1.DataDir, "backup", "--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","),
			"--store", "s3://sfd/blobs", "--s3-endpoint", c.s3.Endpoint, dest)
		cmd.Env = append(append(os.Environ(), c.env...), env...)
		return cmd
	}
	backup := func() string {
		out, err := backupCmd().CombinedOutput()
		if err != nil {
			t.Fatalf("cluster backup: %v\n%s", err, out)
		}
		return string(out)
	}
	// Killed (SIGKILL) after 5 downloads: the next run links what the
	// stopped one downloaded.
	if out, err := backupCmd("SECUREFSD_TEST_MIGRATE_STOP=backup:5").CombinedOutput(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("cluster backup with a kill point: %v, want killed\n%s", err, out)
	}
	out := backup()
	t.Logf("cluster backup after a killed one: %s", out)
	if strings.Contains(out, " 0 linked") {
		t.Errorf("the backup after a killed one linked nothing:\n%s", out)
	}
	if partial, _ := filepath.Glob(filepath.Join(dest, "*.partial")); len(partial) != 0 {
		t.Errorf("stopped runs left behind: %v", partial)
	}
	if out := backup(); !strings.Contains(out, "(0 downloaded") {
		t.Errorf("the second backup downloaded blobs again:\n%s", out)
	}
	runs, _ := filepath.Glob(filepath.Join(dest, "2*"))
	if len(runs) != 2 {
		t.Fatalf("backups in %s: %v, want 2", dest, runs)
	}
	last := runs[1]
	man, err := os.ReadFile(filepath.Join(last, "blobs.manifest"))
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(string(man))
	// The big file's 3 segments and the upload through node 2; the
	// small files migrated from the single node are records of the index
	// (content.Ref.InIndex), in the etcd snapshot, not in the bucket.
	if len(ids) < 4 {
		t.Fatalf("the manifest names %d blobs", len(ids))
	}
	for _, id := range ids {
		SameFile(t, c.s3.ObjectPath("sfd", "blobs/"+id), filepath.Join(last, "blobs", id))
	}
	if st, err := os.Stat(filepath.Join(last, "etcd.snapshot")); err != nil || st.Size() == 0 {
		t.Fatalf("etcd snapshot: %v", err)
	}

	// Restore: etcd from its snapshot, one member; the blobs into a new
	// bucket; a new node with the keys.
	etcdctl := NeedTool(t, "etcdctl")
	peer, client := "http://"+freeLoopback(t), "http://"+freeLoopback(t)
	edir := filepath.Join(tmp, "etcd-restored")
	if out, err := exec.Command(etcdctl, "snapshot", "restore", filepath.Join(last, "etcd.snapshot"), "--data-dir", edir,
		"--name", "r", "--initial-cluster", "r="+peer, "--initial-advertise-peer-urls", peer).CombinedOutput(); err != nil {
		t.Fatalf("etcdctl snapshot restore: %v\n%s", err, out)
	}
	etcd := exec.Command(NeedTool(t, "etcd"), "--name", "r", "--data-dir", edir, "--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--max-txn-ops", "1024", "--log-level", "warn", "--logger", "zap")
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Process.Kill(); etcd.Wait() })
	waitEtcd(t, client)
	s3 := testutil.StartS3(t, "sfd")
	rc := exec.Command(NeedTool(t, "rclone"), "copy", filepath.Join(last, "blobs"), ":s3:sfd/blobs", "--s3-provider", "Other",
		"--s3-endpoint", s3.Endpoint, "--s3-access-key-id", s3.AccessKey, "--s3-secret-access-key", s3.SecretKey, "--s3-force-path-style")
	// rclone's S3 client takes a CA bundle from the environment
	// (AWS_CA_BUNDLE) only over https; the gateway is plain http here.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			rc.Env = append(rc.Env, kv)
		}
	}
	if out, err := rc.CombinedOutput(); err != nil {
		t.Fatalf("rclone copy of the backup's blobs into a new bucket: %v\n%s", err, out)
	}
	dir := copyKeys(t, n1.DataDir)
	n := StartServer(t, WithDataDir(dir), WithServeArgs("--store", "s3://sfd/blobs", "--s3-endpoint", s3.Endpoint,
		"--etcd-endpoints", client, "--etcd-max-txn-ops", "1024"), WithEnv("AWS_ACCESS_KEY_ID="+s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3.SecretKey))
	got := filepath.Join(tmp, "got")
	for name, src := range files {
		os.Remove(got)
		if out, err := n.Curl(t, "mona", pass, "-f", "-o", got, n.DAVURL+"/"+name); err != nil {
			t.Fatalf("webdav get %s from the restored cluster: %v\n%s", name, err, out)
		}
		SameFile(t, src, got)
	}
	if out, err := n.SFTPBatch(t, "mona", key, "ls -1\n"); err != nil {
		t.Fatalf("sftp on the restored cluster: %v\n%s", err, out)
	}
	if out, err := n.CLI(t, "verify"); err != nil {
		t.Fatalf("verify on the restored cluster: %v\n%s", err, out)
	}
	return dest
}

// waitEtcd waits until the etcd at url answers a read (a deadline, not a
// sleep).
func waitEtcd(t *testing.T, url string) {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restored etcd does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeLoopback is a free 127.0.0.1 port, as HOST:PORT.
func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// BenchmarkClusterMigrate times `migrate --to-store --to-etcd` of a
// version 2 single node holding a 256 MiB random file and 300 files of
// 4 KiB (3 etcd members and Versity's gateway on loopback); the command
// reports the upload and the verification apart, logged here
// (docs/CLUSTER.md). Run it with -benchtime 1x: each iteration builds the
// store afresh.
func BenchmarkClusterMigrate(b *testing.B) {
	for range b.N {
		b.StopTimer()
		c := startClusterEnv(b)
		srv := StartServer(b, WithStorageV2())
		key := srv.AddUser(b, "kx", "measure-pw-91ab2c")
		big, small := RandomFile(b, 256<<20), RandomFile(b, 4<<10)
		var batch strings.Builder
		batch.WriteString("put " + big + " big.bin\nmkdir d\n")
		for i := range 300 {
			fmt.Fprintf(&batch, "put %s d/f%03d\n", small, i)
		}
		if out, err := srv.SFTPBatch(b, "kx", key, batch.String()); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		srv.Stop(b)
		b.StartTimer()
		out, err := c.migrate(b, srv.DataDir)
		if err != nil {
			b.Fatalf("migrate: %v\n%s", err, out)
		}
		b.Logf("%s", out)
	}
}
