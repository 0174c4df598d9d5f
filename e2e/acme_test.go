package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// buildTool builds a Go program named in go.mod's tool block.
func buildTool(t *testing.T, pkg, out string) {
	t.Helper()
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v %s", pkg, err, b)
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and localhost.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// startProc runs a helper server for the test's lifetime.
func startProc(t *testing.T, env []string, name string, args ...string) *syncWriter {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return out
}

// TestACMEPebble is issue 22's certificates against Let's Encrypt's test
// CA: Pebble (validating for real, TLS-ALPN-01 on securefsd's WebDAV port,
// names resolved by pebble-challtestsrv to 127.0.0.1) issues the
// certificate for --acme-domain; a client that trusts only Pebble's root
// verifies it; the account and certificate are kept under DATA-DIR/acme,
// private; a connection without that name still gets the server's own
// certificate.
func TestACMEPebble(t *testing.T) {
	NeedTool(t, "curl")
	dir := t.TempDir()
	pebble, chall := filepath.Join(dir, "pebble"), filepath.Join(dir, "challtestsrv")
	buildTool(t, "github.com/letsencrypt/pebble/v2/cmd/pebble", pebble)
	buildTool(t, "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv", chall)
	certFile, keyFile := selfSigned(t, dir)
	dnsPort, pebblePort, mgmtPort, davPort := freePort(t), freePort(t), freePort(t), freePort(t)
	cout := startProc(t, nil, chall, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort), "-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	cfg := fmt.Sprintf(`{"pebble": {"listenAddress": "127.0.0.1:%d", "managementListenAddress": "127.0.0.1:%d",
		"certificate": %q, "privateKey": %q, "httpPort": %d, "tlsPort": %d, "ocspResponderURL": "",
		"externalAccountBindingRequired": false}}`, pebblePort, mgmtPort, certFile, keyFile, freePort(t), davPort)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pout := startProc(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, pebble,
		"-config", cfgFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	ca := fmt.Sprintf("https://127.0.0.1:%d/dir", pebblePort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if out, err := exec.Command("curl", "-sf", "--cacert", certFile, ca).CombinedOutput(); err == nil && strings.Contains(string(out), "newOrder") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not come up:\n%s\nchalltestsrv:\n%s", pout, cout)
		}
		time.Sleep(100 * time.Millisecond)
	}

	s := StartServer(t, WithServeArgs("--dav-addr", fmt.Sprintf("127.0.0.1:%d", davPort), "--acme-domain", "files.test",
		"--acme-ca", ca, "--acme-ca-root", certFile, "--acme-email", "ops@files.test"))
	resolve := fmt.Sprintf("files.test:%d:127.0.0.1", davPort)
	url := fmt.Sprintf("https://files.test:%d/ui/login", davPort)
	// The first connection for the name waits while the certificate is
	// obtained (Pebble validates by connecting back to this port).
	if out, err := s.Curl(t, "", "", "-f", "-o", "/dev/null", "--max-time", "120", "--resolve", resolve, url); err != nil {
		t.Fatalf("first request: %v %s\n%s\npebble:\n%s", err, out, s.Log(), pout)
	}
	root := filepath.Join(dir, "pebble-root.pem")
	if out, err := exec.Command("curl", "-sf", "--cacert", certFile, "-o", root, fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort)).CombinedOutput(); err != nil {
		t.Fatalf("pebble root: %v %s", err, out)
	}
	// Only Pebble's root trusted, no -k: the chain verifies for the name.
	if out, err := exec.Command("curl", "-sf", "-o", "/dev/null", "--cacert", root, "--resolve", resolve, url).CombinedOutput(); err != nil {
		t.Fatalf("verified request: %v %s", err, out)
	}
	// By address (no name): the server's own certificate, which Pebble's
	// root does not verify.
	if _, err := exec.Command("curl", "-sf", "-o", "/dev/null", "--cacert", root, fmt.Sprintf("https://127.0.0.1:%d/ui/login", davPort)).CombinedOutput(); err == nil {
		t.Fatal("a request by address got the ACME certificate")
	}
	acmeDir := filepath.Join(s.DataDir, "acme")
	fi, err := os.Stat(acmeDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("acme dir: %v %v", fi, err)
	}
	ents, _ := os.ReadDir(acmeDir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		if info, _ := e.Info(); info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", e.Name(), info.Mode())
		}
	}
	if !strings.Contains(strings.Join(names, " "), "files.test") {
		t.Fatalf("no certificate kept in %s: %v", acmeDir, names)
	}
}

// syncWriter collects a process's output, safe for its two pipes and a
// reader.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
