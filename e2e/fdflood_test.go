package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// rawSFTP is a minimal SFTP v3 client on one channel, for requests
// pkg/sftp's client does not expose (OPENDIR without CLOSE).
type rawSFTP struct {
	sess *ssh.Session
	in   io.WriteCloser
	out  io.Reader
	id   uint32
}

func newRawSFTP(t *testing.T, conn *ssh.Client) *rawSFTP {
	t.Helper()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}
	r := &rawSFTP{sess: sess, in: in, out: out}
	if typ, _ := r.roundTrip(t, sftpInit); typ != 2 {
		t.Fatalf("INIT answered with type %d", typ)
	}
	return r
}

// roundTrip sends one packet and reads one reply: its type and payload.
func (r *rawSFTP) roundTrip(t *testing.T, pkt []byte) (byte, []byte) {
	t.Helper()
	if _, err := r.in.Write(pkt); err != nil {
		t.Fatalf("send: %v", err)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r.out, hdr[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r.out, body); err != nil || len(body) == 0 {
		t.Fatalf("read reply body: %v", err)
	}
	return body[0], body[1:]
}

// openDir sends OPENDIR and, if it gives a handle, one READDIR (which is
// where the old server opened the directory's descriptors). It returns 0
// on success or the SSH_FX status code of the refusal.
func (r *rawSFTP) openDir(t *testing.T, p string) uint32 {
	t.Helper()
	r.id++
	typ, b := r.roundTrip(t, sftpPacket(11, u32(r.id), sshString(p)))
	switch typ {
	case 101: // STATUS: id, code
		return binary.BigEndian.Uint32(b[4:8])
	case 102: // HANDLE: id, string
	default:
		t.Fatalf("OPENDIR answered with type %d", typ)
	}
	handle := b[4:]
	r.id++
	typ, b = r.roundTrip(t, sftpPacket(12, u32(r.id), handle))
	if typ == 101 {
		return binary.BigEndian.Uint32(b[4:8])
	}
	if typ != 104 { // NAME
		t.Fatalf("READDIR answered with type %d", typ)
	}
	return 0
}

// TestFDFloodOneUser: one user opening directory and file handles on
// many SFTP channels (the attack took 19,999 descriptors with 10
// channels) is refused with SSH_FX_FAILURE at --max-handles-per-user, the
// server keeps its descriptors, and another user's SFTP and WebDAV
// requests succeed meanwhile (issue 14, item 5). The server's descriptor
// limit is lowered to 1024, below what the flood took before.
func TestFDFloodOneUser(t *testing.T) {
	const (
		perUser  = 150
		channels = 10
		perChan  = 100
	)
	srv := StartServer(t, WithServeArgs("--max-handles-per-user", strconv.Itoa(perUser)))
	aliceKey := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	bobKey := srv.AddUser(t, "bob", "obo-pw-1-e2e-pass")
	lim := unix.Rlimit{Cur: 1024, Max: 1024}
	if err := unix.Prlimit(srv.Pid(), unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}

	alice := newSFTP(t, srv, "alice", aliceKey)
	if err := alice.Mkdir("/d"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := sftpPut(alice, fmt.Sprintf("/d/f%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := dialSSH(srv, "", sshConfig("alice", keyAuth(t, aliceKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	codes := map[uint32]int{}
	var raws []*rawSFTP
	for range channels {
		r := newRawSFTP(t, conn)
		raws = append(raws, r)
		for range perChan {
			codes[r.openDir(t, "/d")]++
		}
	}
	// File handles count too: the pkg/sftp session holds none now, and
	// every open is refused.
	if _, err := alice.Open("/d/f0"); err == nil {
		t.Fatal("alice opened a file over her handle limit")
	}
	t.Logf("OPENDIR outcomes (0 = ok, 4 = SSH_FX_FAILURE): %v", codes)
	if codes[0] != perUser || codes[4] != channels*perChan-perUser || len(codes) != 2 {
		t.Fatalf("outcomes %v, want %d accepted and the rest SSH_FX_FAILURE", codes, perUser)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", srv.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server descriptors with %d open directory handles: %d", perUser, len(fds))
	if len(fds) >= 512 {
		t.Fatalf("server holds %d descriptors", len(fds))
	}

	// Another user works over both protocols meanwhile.
	bob := newSFTP(t, srv, "bob", bobKey)
	data := bytes.Repeat([]byte("bob"), 10000)
	if err := sftpPut(bob, "/b.bin", data); err != nil {
		t.Fatalf("bob's SFTP upload: %v", err)
	}
	if got, err := sftpGet(bob, "/b.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("bob's SFTP download: %v", err)
	}
	if _, err := bob.ReadDir("/"); err != nil {
		t.Fatalf("bob's SFTP listing: %v", err)
	}
	bd := newDAV(t, srv, "bob", "obo-pw-1-e2e-pass", "")
	if err := bd.put("/w.bin", data); err != nil {
		t.Fatalf("bob's WebDAV PUT: %v", err)
	}
	if got, err := bd.get("/w.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("bob's WebDAV GET: %v", err)
	}
	if code, _, err := bd.do("PROPFIND", "/", nil, "Depth: 1"); err != nil || code != 207 {
		t.Fatalf("bob's PROPFIND: %d %v", code, err)
	}

	// The admin socket answers (the CLI reaches the running server).
	if out, err := srv.CLI(t, "user", "list"); err != nil || !strings.Contains(out, "bob") {
		t.Fatalf("user list through the admin socket during the flood: %v\n%s", err, out)
	}

	// The flooding user gets a proper refusal over WebDAV too.
	ad := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
	if code, _, err := ad.do("GET", "/d/f0", nil); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("alice's GET while flooding: %d %v, want 503", code, err)
	}

	// Closing the channels gives the handles back.
	for _, r := range raws {
		r.sess.Close()
	}
	conn.Close()
	if _, err := alice.Stat("/d"); err != nil {
		t.Fatal(err)
	}
	ok := false
	for range 100 {
		code, _, err := ad.do("GET", "/d/f0", nil)
		if err == nil && code == http.StatusOK {
			ok = true
			break
		}
		if _, err := alice.Stat("/d"); err != nil { // a round trip for the server to finish the closes
			t.Fatal(err)
		}
	}
	if !ok {
		t.Fatal("alice's handles were not given back after her channels closed")
	}
}
