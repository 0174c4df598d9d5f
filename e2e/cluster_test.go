package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

// clusterEnv is a cluster's shared services: 3 etcd members and an S3
// server (Versity's gateway) with the bucket "sfd".
type clusterEnv struct {
	etcd *testutil.EtcdCluster
	s3   *testutil.S3Server
	args []string // serve flags of every node
	env  []string // the object store's credentials, as AWS variables
}

func startClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	c := &clusterEnv{etcd: testutil.StartEtcd(t, 3), s3: testutil.StartS3(t, "sfd")}
	c.args = []string{"--store", "s3://sfd/blobs", "--s3-endpoint", c.s3.Endpoint,
		"--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","), "--etcd-max-txn-ops", "1024"}
	c.env = []string{"AWS_ACCESS_KEY_ID=" + c.s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.s3.SecretKey}
	return c
}

// node starts a securefsd node of the cluster. The first node makes the
// keyring and the index key; every other node starts from a data
// directory holding copies of them (docs/CLUSTER.md, "Adding a node").
func (c *clusterEnv) node(t *testing.T, first *Server, opts ...ServerOption) *Server {
	t.Helper()
	if first != nil {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"keyring", "index.key"} {
			b, err := os.ReadFile(filepath.Join(first.DataDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		opts = append(opts, WithDataDir(dir))
	}
	return StartServer(t, append(opts, WithServeArgs(c.args...), WithEnv(c.env...))...)
}

// etcdDump is every key and value in etcd.
func (c *clusterEnv) etcdDump(t *testing.T) []byte {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatal("etcd holds no keys: the index is not there")
	}
	var b bytes.Buffer
	for _, kv := range resp.Kvs {
		b.Write(kv.Key)
		b.WriteByte(0)
		b.Write(kv.Value)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// assertNoMarker fails if marker is in any file under dir.
func assertNoMarker(t *testing.T, dir, marker string) {
	t.Helper()
	n := 0
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(fi.Name(), marker) {
			t.Errorf("marker in the name %s", p)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		n++
		b, err := os.ReadFile(p)
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("marker in %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no files under %s: nothing was checked", dir)
	}
}

// addClusterUser creates the same user, with the same password and SSH
// key, on every node. Until the users database moves to etcd (issue 21's
// other half), each node has its own users.db; the homes are the shared
// index's trees: the nodes after the first find the home made by the
// first and take it (--reuse-home).
func addClusterUser(t *testing.T, name, pass string, nodes ...*Server) string {
	t.Helper()
	key := GenerateKey(t)
	for i, n := range nodes {
		args := []string{"user", "add", name, "--password-stdin", "--key", key + ".pub"}
		if i > 0 {
			args = append(args, "--reuse-home")
		}
		if _, err := n.CLIInput(t, pass+"\n", args...); err != nil {
			t.Fatal(err)
		}
	}
	return key
}

// TestCluster (issue 21): two nodes with their own data directories share
// one etcd index (3 members) and one bucket. A file uploaded by OpenSSH
// sftp through node 1 reads byte for byte by WebDAV (curl) through node 2;
// a folder made on node 2 is listed on node 1; a removal on node 2 is
// gone on node 1. Neither the bucket's files, etcd's keys and values,
// nor the nodes' data directories (cache included) hold a name's marker
// or a plaintext run.
func TestCluster(t *testing.T) {
	c := startClusterEnv(t)
	n1 := c.node(t, nil)
	n2 := c.node(t, n1)
	const pass = "cluster-e2e-pass-7c1f"
	key := addClusterUser(t, "dora", pass, n1, n2)

	tmp := t.TempDir()
	local := filepath.Join(tmp, "local.bin")
	data := bytes.Repeat([]byte(marker+" plaintext of the cluster test\n"), 20000) // ~700 KB: several segments
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := marker + "-dir"
	name := dir + "/" + marker + "-a.pdf"
	if out, err := n1.SFTPBatch(t, "dora", key, "mkdir "+dir+"\nput "+local+" "+name+"\n"); err != nil {
		t.Fatalf("sftp put through node 1: %v\n%s", err, out)
	}
	got := filepath.Join(tmp, "got")
	if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/"+name); err != nil {
		t.Fatalf("webdav get through node 2: %v\n%s", err, out)
	}
	SameFile(t, local, got)
	if out, err := n2.Curl(t, "dora", pass, "-f", "-X", "MKCOL", n2.DAVURL+"/"+marker+"-made-on-2/"); err != nil {
		t.Fatalf("mkcol through node 2: %v\n%s", err, out)
	}
	if out, err := n1.SFTPBatch(t, "dora", key, "ls -1\n"); err != nil || !strings.Contains(out, marker+"-made-on-2") {
		t.Fatalf("node 1 does not list node 2's folder: %v\n%s", err, out)
	}

	// The marker and the plaintext are nowhere: not in the bucket, not
	// in etcd, not in either node's data directory (blob cache included).
	assertNoMarker(t, c.s3.Dir, marker)
	AssertNoPlaintext(t, c.s3.Dir, local)
	dump := c.etcdDump(t)
	if bytes.Contains(dump, []byte(marker)) {
		t.Error("marker in etcd")
	}
	if bytes.Contains(dump, data[:64]) {
		t.Error("plaintext in etcd")
	}
	for _, n := range []*Server{n1, n2} {
		assertNoMarker(t, n.DataDir, marker)
		AssertNoPlaintext(t, n.DataDir, local)
	}

	// Removed on node 2, gone on node 1.
	if out, err := n2.Curl(t, "dora", pass, "-f", "-X", "DELETE", n2.DAVURL+"/"+name); err != nil {
		t.Fatalf("delete through node 2: %v\n%s", err, out)
	}
	out, err := n1.SFTPBatch(t, "dora", key, "ls -1 "+dir+"\n")
	if err != nil || strings.Contains(out, marker+"-a.pdf") {
		t.Fatalf("node 1 still lists the file node 2 removed: %v\n%s", err, out)
	}
	if out, err := n1.SFTPBatch(t, "dora", key, "get "+name+" "+got+"2\n"); err == nil {
		t.Fatalf("node 1 still serves the file node 2 removed:\n%s", out)
	}
}
