package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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

func startClusterEnv(t testing.TB) *clusterEnv {
	t.Helper()
	c := &clusterEnv{etcd: testutil.StartEtcd(t, 3), s3: testutil.StartS3(t, "sfd")}
	c.args = []string{"--store", "s3://sfd/blobs", "--s3-endpoint", c.s3.Endpoint,
		"--etcd-endpoints", strings.Join(c.etcd.Endpoints(), ","), "--etcd-max-txn-ops", "1024",
		// Without a quorum each index operation fails after this long:
		// shorter than the default 5 s, so the faults test waits less.
		"--etcd-timeout", "2s"}
	c.env = []string{"AWS_ACCESS_KEY_ID=" + c.s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.s3.SecretKey}
	return c
}

// node starts a securefsd node of the cluster. The first node makes the
// keyring, the index key and the users key; every other node starts from
// a data directory holding copies of them (docs/CLUSTER.md, "Adding a
// node").
func (c *clusterEnv) node(t *testing.T, first *Server, opts ...ServerOption) *Server {
	t.Helper()
	if first != nil {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"keyring", "index.key", "users.key"} {
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
		if vanished(err) {
			return nil
		}
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
		if vanished(err) {
			return nil
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

// TestCluster (issue 21): two nodes with their own data directories share
// one etcd index (3 members) and one bucket. A file uploaded by OpenSSH
// sftp through node 1 reads byte for byte by WebDAV (curl) through node 2;
// a folder made on node 2 is listed on node 1; a removal on node 2 is
// gone on node 1. Neither the bucket's files, etcd's keys and values,
// nor the nodes' data directories (cache included) hold a name's marker
// or a plaintext run.
func TestCluster(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts and other processes: beside the flood tests
	c := startClusterEnv(t)
	n1 := c.node(t, nil)
	n2 := c.node(t, n1)
	const pass = "cluster-e2e-pass-7c1f"
	// Created once, through node 1: the users database is etcd's.
	key := n1.AddUser(t, "dora", pass)

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

	// A node's data directory holds no store of its own: with the node
	// stopped, an offline command refuses it rather than write into an
	// empty local store, and so does serve without the cluster's flags.
	n2.Stop(t)
	if out, err := n2.CLIInput(t, "eve-pass-123456\n", "user", "add", "eve", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "is remote") {
		t.Fatalf("offline user add on a cluster node's data directory: %v\n%s", err, out)
	}
	if out, err := exec.Command(binPath, "--data-dir", n2.DataDir, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0").CombinedOutput(); err == nil || !strings.Contains(string(out), "is remote") {
		t.Fatalf("serve without --store on a cluster node's data directory: %v\n%s", err, out)
	}
}

// nodeStatus runs curl through node n and returns the HTTP status.
func nodeStatus(t *testing.T, n *Server, pass string, args ...string) string {
	t.Helper()
	out, _ := n.Curl(t, "dora", pass, append([]string{"-o", os.DevNull, "-w", "%{http_code}"}, args...)...)
	return strings.TrimSpace(out)
}

// TestClusterFaults (issue 21, faults): the object store stopped mid-session,
// one etcd member of three stopped (service goes on) and the quorum lost. Each time an SFTP upload fails with a
// failure status, a WebDAV PUT gets 503, nothing already stored is lost,
// and once the service is back the same uploads succeed. Then a node is
// killed (SIGKILL) in the middle of an upload: the name never appears
// half written, and the client's retry on the other node succeeds.
func TestClusterFaults(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts and other processes: beside the flood tests
	c := startClusterEnv(t)
	n1 := c.node(t, nil)
	n2 := c.node(t, n1)
	const pass = "cluster-faults-pass-91ab"
	key := n1.AddUser(t, "dora", pass)
	local := RandomFile(t, 600<<10)
	got := filepath.Join(t.TempDir(), "got")
	if out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" kept.bin\n"); err != nil {
		t.Fatalf("sftp put: %v\n%s", err, out)
	}

	t.Run("object store down", func(t *testing.T) {
		c.s3.Stop()
		start := time.Now()
		out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" during.bin\n")
		t.Logf("sftp put with the object store down failed after %v", time.Since(start).Round(time.Millisecond))
		if err == nil || !strings.Contains(out, "Failure") {
			t.Fatalf("sftp put with the object store down: %v, want an SFTP failure:\n%s", err, out)
		}
		if !strings.Contains(n1.Log(), "storage unavailable") {
			t.Error("node 1's log does not say the storage is unavailable")
		}
		t.Logf("sftp put with the object store down: %s", out)
		start = time.Now()
		if code := nodeStatus(t, n2, pass, "-T", local, n2.DAVURL+"/during-dav.bin"); code != "503" {
			t.Errorf("webdav put with the object store down: %s, want 503", code)
		}
		t.Logf("webdav put with the object store down answered after %v", time.Since(start).Round(time.Millisecond))
		// Node 2 never read kept.bin: it needs the object store.
		if code := nodeStatus(t, n2, pass, n2.DAVURL+"/kept.bin"); code != "503" {
			t.Errorf("webdav get of an uncached file with the object store down: %s, want 503", code)
		}
		// Node 1 wrote it and has its blobs in its cache (ciphertext).
		if out, err := n1.Curl(t, "dora", pass, "-f", "-o", got, n1.DAVURL+"/kept.bin"); err != nil {
			t.Fatalf("webdav get of a cached file with the object store down: %v\n%s", err, out)
		}
		SameFile(t, local, got)

		c.s3.Start()
		os.Remove(got)
		if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/kept.bin"); err != nil {
			t.Fatalf("webdav get after the object store is back: %v\n%s", err, out)
		}
		SameFile(t, local, got)
		if out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" during.bin\n"); err != nil {
			t.Fatalf("sftp put after the object store is back: %v\n%s", err, out)
		}
		if code := nodeStatus(t, n2, pass, "-T", local, n2.DAVURL+"/during-dav.bin"); code != "201" && code != "204" {
			t.Errorf("webdav put after the object store is back: %s", code)
		}
		for _, name := range []string{"during.bin", "during-dav.bin"} {
			os.Remove(got)
			if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/"+name); err != nil {
				t.Fatalf("get %s: %v\n%s", name, err, out)
			}
			SameFile(t, local, got)
		}
	})

	t.Run("one etcd member down", func(t *testing.T) {
		c.etcd.Stop(2)
		defer c.etcd.Restart(2)
		if out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" onedown.bin\n"); err != nil {
			t.Fatalf("sftp put with one etcd member of three down: %v\n%s", err, out)
		}
		os.Remove(got)
		if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/onedown.bin"); err != nil {
			t.Fatalf("webdav get with one etcd member of three down: %v\n%s", err, out)
		}
		SameFile(t, local, got)
	})

	t.Run("etcd quorum lost", func(t *testing.T) {
		// A session opened before: its login was checked, its upload
		// needs the index.
		p := startSFTP(t, n1, "dora", n1.SSHOpts(key))
		if out, ok := p.run("ls"); !ok {
			t.Fatalf("sftp session before the quorum loss: %s", out)
		}
		c.etcd.Stop(0)
		c.etcd.Stop(1)
		restarted := false
		defer func() {
			if !restarted {
				c.etcd.Restart(0, 1)
			}
		}()
		start := time.Now()
		out, ok := p.run("put " + local + " noquorum.bin")
		t.Logf("sftp put in a session opened before the quorum loss failed after %v: %s", time.Since(start).Round(time.Millisecond), out)
		if ok {
			t.Fatalf("sftp put without an etcd quorum succeeded:\n%s", out)
		}
		// A new login cannot be checked (users are etcd's): refused.
		start = time.Now()
		if out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" noquorum.bin\n"); err == nil {
			t.Fatalf("sftp login without an etcd quorum got in:\n%s", out)
		}
		t.Logf("sftp login without an etcd quorum refused after %v", time.Since(start).Round(time.Millisecond))
		if !strings.Contains(n1.Log(), "etcd unavailable") {
			t.Error("node 1's log does not say etcd is unavailable")
		}
		start = time.Now()
		if code := nodeStatus(t, n2, pass, "-T", local, n2.DAVURL+"/noquorum-dav.bin"); code != "503" {
			t.Errorf("webdav put without an etcd quorum: %s, want 503", code)
		}
		t.Logf("webdav put without an etcd quorum answered after %v", time.Since(start).Round(time.Millisecond))
		restarted = true
		c.etcd.Restart(0, 1)
		start = time.Now()
		if out, err := n1.SFTPBatch(t, "dora", key, "put "+local+" noquorum.bin\n"); err != nil {
			t.Fatalf("sftp put with the quorum back: %v\n%s", err, out)
		}
		t.Logf("first sftp put with the quorum back took %v", time.Since(start).Round(time.Millisecond))
		for _, name := range []string{"kept.bin", "noquorum.bin"} {
			os.Remove(got)
			if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/"+name); err != nil {
				t.Fatalf("get %s: %v\n%s", name, err, out)
			}
			SameFile(t, local, got)
		}
	})

	t.Run("node killed mid-upload", func(t *testing.T) {
		big := RandomFile(t, 4<<20)
		// A slow upload through node 1, killed once node 1 has taken part
		// of it (its pending blob in the cache's tmp/ has bytes).
		cmd := curlCmd(n1, "dora", pass, "--limit-rate", "256k", "-T", big, n1.DAVURL+"/big.bin")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		tmpDir := filepath.Join(n1.DataDir, "cache", "tmp")
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if pendingBytes(tmpDir) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("node 1 never started writing the upload")
			}
		}
		n1.Kill(t)
		cmd.Wait()
		if code := nodeStatus(t, n2, pass, n2.DAVURL+"/big.bin"); code != "404" {
			t.Fatalf("the killed upload's name through node 2: %s, want 404 (no half file)", code)
		}
		if code := nodeStatus(t, n2, pass, "-T", big, n2.DAVURL+"/big.bin"); code != "201" {
			t.Fatalf("retry on node 2: %s, want 201", code)
		}
		os.Remove(got)
		if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/big.bin"); err != nil {
			t.Fatalf("get big.bin: %v\n%s", err, out)
		}
		SameFile(t, big, got)
		os.Remove(got)
		if out, err := n2.Curl(t, "dora", pass, "-f", "-o", got, n2.DAVURL+"/kept.bin"); err != nil {
			t.Fatalf("get kept.bin: %v\n%s", err, out)
		}
		SameFile(t, local, got)
	})
}

// curlCmd is Server.Curl's command, not run.
func curlCmd(s *Server, user, password string, args ...string) *exec.Cmd {
	return exec.Command("curl", append([]string{"-sS", "-k", "-u", user + ":" + password}, args...)...)
}

// pendingBytes is the bytes of the files in dir.
func pendingBytes(dir string) int64 {
	es, _ := os.ReadDir(dir)
	var n int64
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestClusterUsers (issue 21): the users database, bans and WebDAV locks
// are etcd's, shared by the nodes. A user made once through node 1's
// admin socket logs in on node 2; a WebDAV lock taken on node 1 refuses
// node 2's PUT without its token (423) and lets it with it; an address
// banned for failed logins on node 1 is refused on node 2, and a ban
// lifted on node 2 is lifted on node 1; the user disabled through node 2
// loses the SFTP session it had open on node 1.
func TestClusterUsers(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts and other processes: beside the flood tests
	c := startClusterEnv(t)
	n1 := c.node(t, nil)
	n2 := c.node(t, n1)
	const pass = "cluster-users-pass-5e2d"
	key := n1.AddUser(t, "dora", pass)
	local := RandomFile(t, 64<<10)

	t.Run("first start", func(t *testing.T) {
		// Node 1 found no users database in etcd and seeded it from its
		// (new, empty) users.db; node 2 found node 1's.
		const seeded = "copied this node's users.db into it"
		if !strings.Contains(n1.Log(), seeded) || strings.Contains(n2.Log(), seeded) {
			t.Fatalf("node 1 should seed the users database, node 2 not:\nnode 1:\n%s\nnode 2:\n%s", n1.Log(), n2.Log())
		}
		// A node with the keyring and index key but a users key of its
		// own is refused, never served.
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"keyring", "index.key"} {
			b, err := os.ReadFile(filepath.Join(n1.DataDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, binPath, append([]string{"--data-dir", dir, "serve", "--sftp-addr", "127.0.0.1:0", "--dav-addr", "127.0.0.1:0"}, c.args...)...)
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "another users key's") {
			t.Fatalf("a node with another users key: %v\n%s", err, out)
		}
	})

	t.Run("user made on node 1 logs in on node 2", func(t *testing.T) {
		if out, err := n2.CLI(t, "user", "list"); err != nil || !strings.Contains(out, "dora") {
			t.Fatalf("user list through node 2: %v\n%s", err, out)
		}
		if out, err := n2.SFTPBatch(t, "dora", key, "put "+local+" made.bin\n"); err != nil {
			t.Fatalf("sftp key login on node 2: %v\n%s", err, out)
		}
		if code := davLogin(t.Context(), n2, "127.0.0.71", "dora", pass); code != http.StatusMultiStatus {
			t.Fatalf("password login on node 2: %d, want 207", code)
		}
	})

	t.Run("lock on node 1 holds on node 2", func(t *testing.T) {
		url1, url2 := n1.DAVURL+"/locked.bin", n2.DAVURL+"/locked.bin"
		if code := nodeStatus(t, n1, pass, "-T", local, url1); code != "201" {
			t.Fatalf("put through node 1: %s", code)
		}
		body := `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>` + marker + `-owner</D:owner></D:lockinfo>`
		out, err := n1.Curl(t, "dora", pass, "-X", "LOCK", "-H", "Depth: 0", "-H", "Timeout: Second-600",
			"-H", "Content-Type: application/xml", "--data-binary", body, "-D", "-", "-o", os.DevNull, url1)
		m := regexp.MustCompile(`(?i)lock-token:\s*<([^>]+)>`).FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("LOCK through node 1: %v\n%s", err, out)
		}
		token := m[1]
		if code := nodeStatus(t, n2, pass, "-T", local, url2); code != "423" {
			t.Fatalf("put through node 2 without the lock token: %s, want 423", code)
		}
		if code := nodeStatus(t, n2, pass, "-X", "DELETE", url2); code != "423" {
			t.Fatalf("delete through node 2 without the lock token: %s, want 423", code)
		}
		if code := nodeStatus(t, n2, pass, "-T", local, "-H", "If: (<"+token+">)", url2); code != "204" {
			t.Fatalf("put through node 2 with the lock token: %s, want 204", code)
		}
		if code := nodeStatus(t, n2, pass, "-X", "UNLOCK", "-H", "Lock-Token: <"+token+">", url2); code != "204" {
			t.Fatalf("unlock through node 2: %s, want 204", code)
		}
		if code := nodeStatus(t, n1, pass, "-T", local, url1); code != "204" {
			t.Fatalf("put through node 1 after node 2's unlock: %s, want 204", code)
		}
		// Locked again and left so, for the look into etcd at the end.
		if out, err := n1.Curl(t, "dora", pass, "-f", "-X", "LOCK", "-H", "Depth: 0", "-H", "Content-Type: application/xml", "--data-binary", body, "-o", os.DevNull, url1); err != nil {
			t.Fatalf("LOCK again: %v\n%s", err, out)
		}
	})

	t.Run("ban on node 1 holds on node 2", func(t *testing.T) {
		const src = "127.0.0.77"
		// At once, so the defender's growing delay between one address's
		// failures does not apply: its ten checks (the address threshold)
		// ban it.
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() { davLogin(t.Context(), n1, src, "dora", fmt.Sprintf("wrong-%d", i)) })
		}
		wg.Wait()
		if code := davLogin(t.Context(), n1, src, "dora", pass); code != http.StatusTooManyRequests {
			t.Fatalf("the right password from the banned address on node 1: %d, want 429", code)
		}
		waitFor(t, 30*time.Second, "node 2 to list node 1's ban", func() bool {
			out, _ := n2.CLI(t, "ban", "list")
			return strings.Contains(out, src)
		})
		if code := davLogin(t.Context(), n2, src, "dora", pass); code != http.StatusTooManyRequests {
			t.Fatalf("the right password from the banned address on node 2: %d, want 429", code)
		}
		if err := sshLogin(n2, src, "dora", keyAuth(t, key)); err == nil {
			t.Fatal("an SSH key login from the banned address on node 2 got in")
		}
		if code := davLogin(t.Context(), n2, "127.0.0.78", "dora", pass); code != http.StatusMultiStatus {
			t.Fatalf("another address on node 2: %d, want 207", code)
		}
		// Lifted through node 2, lifted on node 1.
		if out, err := n2.CLI(t, "ban", "del", src); err != nil {
			t.Fatalf("ban del through node 2: %v\n%s", err, out)
		}
		waitFor(t, 30*time.Second, "node 1 to lift the ban", func() bool {
			out, _ := n1.CLI(t, "ban", "list")
			return !strings.Contains(out, src)
		})
		if code := davLogin(t.Context(), n1, src, "dora", pass); code != http.StatusMultiStatus {
			t.Fatalf("the right password from the lifted address on node 1: %d, want 207", code)
		}
	})

	t.Run("disable on node 2 ends a session on node 1", func(t *testing.T) {
		p := startSFTP(t, n1, "dora", n1.SSHOpts(key))
		if out, ok := p.run("put " + local + " before.bin"); !ok {
			t.Fatalf("upload through node 1 before the disable: %s", out)
		}
		if out, err := n2.CLI(t, "user", "disable", "dora"); err != nil {
			t.Fatalf("user disable through node 2: %v\n%s", err, out)
		}
		// Node 1 ends the idle session by itself.
		waitFor(t, 30*time.Second, "node 1 to end dora's session", func() bool {
			return len(records(n1, attrs("event", "access_revoked", "user", "dora"))) >= 1
		})
		if out, ok := p.run("put " + local + " after.bin"); ok {
			t.Errorf("an upload through node 1 after the disable succeeded: %s", out)
		}
		if code := nodeStatus(t, n1, pass, n1.DAVURL+"/after.bin"); code != "401" {
			t.Errorf("dora's password on node 1 after the disable: %s, want 401", code)
		}
	})

	// etcd holds users, bans and locks sealed: no user name, password,
	// SSH key, banned address or lock owner in any key or value.
	dump := c.etcdDump(t)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"securefsd/u/users/", "securefsd/u/bans/", "securefsd/davlocks/l/"} {
		if !bytes.Contains(dump, []byte(k)) {
			t.Errorf("no key under %s in etcd: nothing was checked there", k)
		}
	}
	for _, s := range []string{"dora", pass, "127.0.0.77", marker + "-owner", strings.Fields(string(pub))[1]} {
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("%q is in etcd", s)
		}
	}
}
