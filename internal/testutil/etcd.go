package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EtcdCluster is a cluster of real etcd servers (Debian's etcd-server,
// which scripts/test.sh installs) on loopback ports, each member a process
// of its own with its data in the test's temporary directory, so a test
// can stop and restart members. The cluster stops at the test's cleanup.
type EtcdCluster struct {
	t       testing.TB
	bin     string
	members []*etcdMember
	// MaxTxnOps is the --max-txn-ops every member runs with: above etcd's
	// default 128, as docs/CLUSTER.md tells operators to set it.
	MaxTxnOps int
}

type etcdMember struct {
	name, dir, clientURL, peerURL string
	mu                            sync.Mutex
	cmd                           *exec.Cmd
	done                          chan struct{}
}

// etcdMaxTxnOps is what the test cluster allows in one transaction.
const etcdMaxTxnOps = 1024

// StartEtcd starts an etcd cluster of n members and waits until each is
// healthy. A missing etcd binary fails the test.
func StartEtcd(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("needs etcd (Debian: etcd-server; scripts/test.sh installs it)")
	}
	c := &EtcdCluster{t: t, bin: bin, MaxTxnOps: etcdMaxTxnOps}
	dir := t.TempDir()
	var initial []string
	addrs := freeAddrs(t, 2*n)
	for i := range n {
		m := &etcdMember{
			name:      fmt.Sprintf("m%d", i),
			dir:       filepath.Join(dir, fmt.Sprintf("m%d", i)),
			clientURL: "http://" + addrs[2*i],
			peerURL:   "http://" + addrs[2*i+1],
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.stop(i)
		}
	})
	for i := range c.members {
		c.start(i, strings.Join(initial, ","))
	}
	for i := range c.members {
		c.waitHealthy(i)
	}
	return c
}

// freeAddrs returns n distinct loopback addresses nobody listens on now.
// Their listeners stay open until all n are chosen: closed one by one, the
// kernel may hand the same port out twice, and etcd refuses a cluster
// whose members share a URL ("has duplicate url").
func freeAddrs(t testing.TB, n int) []string {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// Endpoints are the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL)
	}
	return out
}

func (c *EtcdCluster) start(i int, initial string) {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	logf, err := os.OpenFile(m.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	args := []string{
		"--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
		"--max-txn-ops", fmt.Sprint(c.MaxTxnOps),
		"--logger", "zap", "--log-level", "warn",
	}
	if initial != "" {
		// Only a member's first start names the cluster; later ones
		// read it from the data directory.
		args = append(args, "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "securefsd-test")
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("etcd %s: %v", m.name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(m.done)
}

// Stop stops member i (SIGTERM, as an operator's restart does) and waits
// until it is gone.
func (c *EtcdCluster) Stop(i int) { c.stop(i) }

func (c *EtcdCluster) stop(i int) {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// Restart starts the stopped members again (their data kept) and waits
// until each of them is healthy, which needs a quorum of the cluster.
func (c *EtcdCluster) Restart(members ...int) {
	c.t.Helper()
	for _, i := range members {
		c.start(i, "")
	}
	for _, i := range members {
		c.waitHealthy(i)
	}
}

// waitHealthy waits until member i answers /health with a leader.
func (c *EtcdCluster) waitHealthy(i int) {
	c.t.Helper()
	m := c.members[i]
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(m.clientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"health":"true"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(m.dir + ".log")
			c.t.Fatalf("etcd %s not healthy after 60 s: %v\n%s", m.name, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
