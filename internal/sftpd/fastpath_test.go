package sftpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"testing"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/users"
)

// rawSFTP speaks the SFTP wire protocol on one session channel, so tests
// can pipeline requests and send malformed ones.
type rawSFTP struct {
	t      *testing.T
	stdin  io.Writer
	stdout io.Reader
}

func newRawSFTP(t *testing.T, ts *testServer, u *testUser) *rawSFTP {
	t.Helper()
	sess, err := ts.dial(u).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	r := &rawSFTP{t: t, stdin: stdin, stdout: stdout}
	r.send(1, u32(3)) // INIT
	if typ, _ := r.recv(); typ != 2 {
		t.Fatalf("no VERSION reply: %d", typ)
	}
	return r
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func str(s string) []byte { return append(u32(uint32(len(s))), s...) }

func (r *rawSFTP) send(typ byte, body ...[]byte) {
	r.t.Helper()
	var b []byte
	for _, x := range body {
		b = append(b, x...)
	}
	out := append(binary.BigEndian.AppendUint32(nil, uint32(1+len(b))), typ)
	if _, err := r.stdin.Write(append(out, b...)); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

func (r *rawSFTP) recv() (byte, []byte) {
	r.t.Helper()
	var hdr [5]byte
	if _, err := io.ReadFull(r.stdout, hdr[:]); err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(r.stdout, body); err != nil {
		r.t.Fatal(err)
	}
	return hdr[4], body
}

// expectStatus reads a STATUS reply for id and returns its code.
func (r *rawSFTP) expectStatus(id uint32) uint32 {
	r.t.Helper()
	typ, body := r.recv()
	if typ != fxpStatus || binary.BigEndian.Uint32(body) != id {
		r.t.Fatalf("want STATUS for %d, got type %d body %x", id, typ, body)
	}
	return binary.BigEndian.Uint32(body[4:])
}

func (r *rawSFTP) open(id uint32, name string, pflags uint32) string {
	r.t.Helper()
	r.send(fxpOpen, u32(id), str(name), u32(pflags), u32(0))
	typ, body := r.recv()
	if typ != fxpHandle || binary.BigEndian.Uint32(body) != id {
		r.t.Fatalf("open %s: type %d body %x", name, typ, body)
	}
	return string(body[8:])
}

const (
	pfRead  = 0x01
	pfWrite = 0x02
	pfCreat = 0x08
	pfTrunc = 0x10
)

// TestFastPathProtocol drives the open-file fast path (fastpath.go) with
// raw packets: replies, status codes, pipelined requests in client order,
// handles it does not own, and a malformed packet.
func TestFastPathProtocol(t *testing.T) {
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)

	t.Run("pipelined writes, fsetstat, read, close", func(t *testing.T) {
		r := newRawSFTP(t, ts, u)
		h := r.open(10, "/p", pfRead|pfWrite|pfCreat|pfTrunc)
		// All sent before any reply is read: FSETSTAT (passed to
		// pkg/sftp) must take effect between the two writes.
		r.send(fxpWrite, u32(11), str(h), u64(0), str("0123456789"))
		r.send(fxpFsetstat, u32(12), str(h), u32(0x1), u64(3)) // size 3
		r.send(fxpWrite, u32(13), str(h), u64(3), str("abc"))
		r.send(fxpFstat, u32(14), str(h))
		r.send(fxpRead, u32(15), str(h), u64(0), u32(1000))
		r.send(fxpRead, u32(16), str(h), u64(6), u32(1000))
		r.send(fxpClose, u32(17), str(h))
		r.send(fxpClose, u32(18), str(h)) // no longer open
		seen := map[uint32]bool{}
		for range 8 {
			typ, body := r.recv()
			id := binary.BigEndian.Uint32(body)
			seen[id] = true
			switch id {
			case 11, 12, 13, 17:
				if typ != fxpStatus || binary.BigEndian.Uint32(body[4:]) != 0 {
					t.Errorf("request %d: type %d body %x", id, typ, body)
				}
			case 14: // ATTRS: flags, then size first
				if typ != 105 || binary.BigEndian.Uint32(body[4:])&1 == 0 || binary.BigEndian.Uint64(body[8:]) != 6 {
					t.Errorf("fstat: type %d body %x", typ, body)
				}
			case 15:
				if typ != fxpData || string(body[8:]) != "012abc" {
					t.Errorf("read: type %d body %q", typ, body)
				}
			case 16:
				if typ != fxpStatus || binary.BigEndian.Uint32(body[4:]) != 1 { // EOF
					t.Errorf("read at end: type %d body %x", typ, body)
				}
			case 18:
				if typ != fxpStatus || binary.BigEndian.Uint32(body[4:]) == 0 {
					t.Errorf("second close: type %d body %x", typ, body)
				}
			default:
				t.Errorf("reply to unknown request %d", id)
			}
		}
		if len(seen) != 8 {
			t.Errorf("replies: %v", seen)
		}
		if got := readVFS(t, ts.home("alice"), "p"); string(got) != "012abc" {
			t.Errorf("stored %q", got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		r := newRawSFTP(t, ts, u)
		r.send(fxpOpen, u32(20), str("/missing"), u32(pfRead), u32(0))
		if c := r.expectStatus(20); c != 2 {
			t.Errorf("open missing: code %d, want NO_SUCH_FILE", c)
		}
		r.send(fxpOpen, u32(21), str("/x"), u32(0), u32(0))
		if c := r.expectStatus(21); c != 4 {
			t.Errorf("open without flags: code %d, want FAILURE", c)
		}
		r.send(fxpRead, u32(22), str("s999"), u64(0), u32(10))
		if c := r.expectStatus(22); c != 4 {
			t.Errorf("read of unknown handle: code %d, want FAILURE", c)
		}
		// A directory handle belongs to pkg/sftp: READDIR and CLOSE on
		// it go there.
		r.send(11, u32(23), str("/"))
		typ, body := r.recv()
		if typ != fxpHandle {
			t.Fatalf("opendir: %d %x", typ, body)
		}
		dh := string(body[8:])
		r.send(12, u32(24), str(dh))
		if typ, body := r.recv(); typ != 104 || binary.BigEndian.Uint32(body) != 24 { // NAME
			t.Errorf("readdir: type %d body %x", typ, body)
		}
		r.send(fxpClose, u32(25), str(dh))
		if c := r.expectStatus(25); c != 0 {
			t.Errorf("close dir: code %d", c)
		}
		// Reading a write-only handle fails; the handle stays usable.
		h := r.open(26, "/w", pfWrite|pfCreat|pfTrunc)
		r.send(fxpRead, u32(27), str(h), u64(0), u32(10))
		if c := r.expectStatus(27); c == 0 {
			t.Errorf("read of a write-only handle succeeded")
		}
		r.send(fxpWrite, u32(28), str(h), u64(0), str("ok"))
		if c := r.expectStatus(28); c != 0 {
			t.Errorf("write: code %d", c)
		}
		r.send(fxpClose, u32(29), str(h))
		if c := r.expectStatus(29); c != 0 {
			t.Errorf("close: code %d", c)
		}
	})

	t.Run("malformed write ends the session", func(t *testing.T) {
		r := newRawSFTP(t, ts, u)
		h := r.open(30, "/m", pfWrite|pfCreat|pfTrunc)
		// Claims 100 bytes of data, carries 3.
		r.send(fxpWrite, u32(31), str(h), u64(0), u32(100), []byte("abc"))
		var b [1]byte
		if _, err := io.ReadFull(r.stdout, b[:]); !errors.Is(err, io.EOF) {
			t.Errorf("after a malformed packet: %v, want EOF", err)
		}
	})

	t.Run("big reads are capped", func(t *testing.T) {
		data := randomBytes(t, 3*maxTxPacket)
		c := ts.sftpClient(u)
		f, err := c.Create("/big")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		f.Close()
		r := newRawSFTP(t, ts, u)
		h := r.open(40, "/big", pfRead)
		r.send(fxpRead, u32(41), str(h), u64(5), u32(1<<20))
		typ, body := r.recv()
		if typ != fxpData || len(body)-8 != maxTxPacket || string(body[8:]) != string(data[5:5+maxTxPacket]) {
			t.Errorf("read of 1 MiB: type %d, %d bytes", typ, len(body)-8)
		}
	})
}

func TestStatusCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want uint32
	}{
		{nil, 0},
		{io.EOF, 1},
		{clientError(fs.ErrNotExist), 2},
		{clientError(fs.ErrPermission), 3},
		{clientError(errors.New("disk on fire")), 4},
		{clientError(errBadMessage), 5},
		{clientError(errors.ErrUnsupported), 8},
		{sftp.ErrSSHFxConnectionLost, 7},
		{errors.New("bad file flags"), 4},
	} {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			if got := statusCode(tc.err); got != tc.want {
				t.Errorf("statusCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
