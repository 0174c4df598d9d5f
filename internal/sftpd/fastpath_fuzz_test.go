package sftpd

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// fakeChannel is an ssh.Channel whose client side is a fixed byte stream;
// replies are discarded.
type fakeChannel struct {
	r io.Reader
}

func (c *fakeChannel) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fakeChannel) Write(p []byte) (int, error) { return len(p), nil }
func (c *fakeChannel) Close() error                { return nil }
func (c *fakeChannel) CloseWrite() error           { return nil }
func (c *fakeChannel) SendRequest(string, bool, []byte) (bool, error) {
	return false, nil
}
func (c *fakeChannel) Stderr() io.ReadWriter { return nil }

// FuzzFastPath feeds arbitrary client bytes, after an INIT, to a session's
// fast path with pkg/sftp behind it (the same wiring as serveSFTP): no
// panic, and the session ends promptly when the input does (no request
// left waiting for a reply that never comes).
func FuzzFastPath(f *testing.F) {
	pkt := func(typ byte, body ...[]byte) []byte {
		var b []byte
		for _, x := range body {
			b = append(b, x...)
		}
		return append(append(binary.BigEndian.AppendUint32(nil, uint32(1+len(b))), typ), b...)
	}
	cat := func(ps ...[]byte) []byte { return bytes.Join(ps, nil) }
	h1 := str("s1")
	f.Add(cat(
		pkt(fxpOpen, u32(1), str("/a"), u32(pfWrite|pfCreat|pfTrunc), u32(0)),
		pkt(fxpWrite, u32(2), h1, u64(0), str("hello")),
		pkt(fxpFsetstat, u32(3), h1, u32(1), u64(2)),
		pkt(fxpFstat, u32(4), h1),
		pkt(fxpClose, u32(5), h1),
	))
	f.Add(cat(
		pkt(fxpOpen, u32(1), str("/a"), u32(pfRead), u32(0)),
		pkt(fxpRead, u32(2), h1, u64(0), u32(1<<30)),
		pkt(fxpRead, u32(3), h1, u64(1<<63), u32(10)),
		pkt(fxpClose, u32(4), h1),
		pkt(fxpClose, u32(5), h1),
	))
	f.Add(cat(
		pkt(fxpOpen, u32(1), str("../../x"), u32(pfRead|pfWrite|pfCreat), u32(0)),
		pkt(fxpWrite, u32(2), h1, u64(1<<62), str("x")),
		pkt(11, u32(3), str("/")),
		pkt(fxpRead, u32(4), str("1"), u64(0), u32(10)),
		pkt(fxpSetstat, u32(5), str("/a"), u32(0xffffffff)),
	))
	f.Add(cat( // fsync@openssh.com: on an upload, whole, cut short, on no handle
		pkt(fxpOpen, u32(1), str("/a"), u32(pfWrite|pfCreat|pfTrunc), u32(0)),
		pkt(fxpWrite, u32(2), h1, u64(0), str("hello")),
		pkt(fxpExtended, u32(3), str(extFsync), h1),
		pkt(fxpExtended, u32(4), str(extFsync), u32(9)),
		pkt(fxpExtended, u32(5), str(extFsync)),
		pkt(fxpExtended, u32(6), u32(1<<31)),
		pkt(fxpClose, u32(7), h1),
		pkt(fxpExtended, u32(8), str(extFsync), h1),
	))
	f.Add(cat( // limits@openssh.com: alone, with trailing bytes, between reads
		pkt(fxpExtended, u32(1), str(extLimits)),
		pkt(fxpExtended, u32(2), str(extLimits), u64(7)),
		pkt(fxpOpen, u32(3), str("/a"), u32(pfRead), u32(0)),
		pkt(fxpExtended, u32(4), str(extLimits)),
		pkt(fxpRead, u32(5), h1, u64(0), u32(1<<20)),
	))
	f.Add(pkt(fxpWrite, u32(1), h1, u64(0), u32(100), []byte("abc")))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3})

	kr, err := envelope.NewKeyring()
	if err != nil {
		f.Fatal(err)
	}
	store := fixture.Store(f, f.TempDir(), vfs.Options{Keyring: kr, Logger: slog.New(slog.DiscardHandler)})
	home, err := store.Home("alice", vfs.HomeOptions{Perm: vfs.PermAll, Quota: vfs.Quota{Bytes: 1 << 20, Files: 200}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ss := &session{acc: staticAccess(home, users.PermAll), user: "alice", log: slog.New(slog.DiscardHandler)}
		h := &handlers{s: ss, fs: home}
		ch := &fakeChannel{r: io.MultiReader(bytes.NewReader(pkt(1, u32(3))), bytes.NewReader(in))}
		m := newFileMux(ss, h, ch)
		rs := sftp.NewRequestServer(muxConn{m}, sftp.Handlers{FileGet: opensByFastPath{}, FilePut: opensByFastPath{}, FileCmd: h, FileList: h},
			sftp.WithRSMaxTxPacket(maxTxPacket))
		start := time.Now()
		m.serve(rs)
		if d := time.Since(start); d >= quietWait {
			t.Errorf("session took %v: a request waited for a reply pkg/sftp never sent", d)
		}
		if n := h.handles.Load(); n != 0 {
			t.Errorf("%d handles still open after the session", n)
		}
	})
}
