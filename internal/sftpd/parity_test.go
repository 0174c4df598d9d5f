package sftpd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"testing"

	"github.com/pkg/sftp"
)

// The fast path (fastpath.go) answers OPEN, READ, WRITE and CLOSE itself
// and so re-implements two pieces of pkg/sftp's request server: the status
// code and message of an error (statusCode, fileMux.status) and the
// cleaning of request paths (cleanRequestPath). These tests run pkg/sftp's
// own RequestServer and check that it answers exactly as the fast path
// does, for every error class the handlers return and for every path form.

// parityHandlers serves only STAT: it records the path pkg/sftp cleaned
// and fails with the error registered for it.
type parityHandlers struct {
	paths chan string
	errs  map[string]error
}

func (p *parityHandlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	p.paths <- r.Filepath
	if err, ok := p.errs[r.Filepath]; ok {
		return nil, err
	}
	return nil, errors.New("no error registered")
}
func (p *parityHandlers) Fileread(*sftp.Request) (io.ReaderAt, error) {
	return nil, sftp.ErrSSHFxOpUnsupported
}
func (p *parityHandlers) Filewrite(*sftp.Request) (io.WriterAt, error) {
	return nil, sftp.ErrSSHFxOpUnsupported
}
func (p *parityHandlers) Filecmd(*sftp.Request) error { return sftp.ErrSSHFxOpUnsupported }

// parityClient is a raw-protocol client of a pkg/sftp RequestServer over pipes.
type parityClient struct {
	t  *testing.T
	w  io.Writer
	r  io.Reader
	id uint32
}

func startParityServer(t *testing.T, h *parityHandlers) *parityClient {
	t.Helper()
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	rs := sftp.NewRequestServer(struct {
		io.Reader
		io.WriteCloser
	}{sr, sw}, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
	done := make(chan struct{})
	go func() { defer close(done); rs.Serve() }()
	t.Cleanup(func() { cw.Close(); rs.Close(); <-done })
	c := &parityClient{t: t, w: cw, r: cr}
	c.send(1, binary.BigEndian.AppendUint32(nil, 3)) // INIT, version 3
	if typ, _ := c.recv(); typ != 2 {
		t.Fatalf("INIT answered with packet type %d, want VERSION", typ)
	}
	return c
}

func (c *parityClient) send(typ byte, payload []byte) {
	c.t.Helper()
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)))
	b = append(append(b, typ), payload...)
	if _, err := c.w.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *parityClient) recv() (byte, []byte) {
	c.t.Helper()
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	return hdr[4], body
}

// stat sends STAT of name and returns the STATUS reply's code and message.
func (c *parityClient) stat(name string) (code uint32, msg string) {
	c.t.Helper()
	c.id++
	b := binary.BigEndian.AppendUint32(nil, c.id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	c.send(17, append(b, name...)) // SSH_FXP_STAT
	typ, body := c.recv()
	if typ != 101 {
		c.t.Fatalf("STAT %q answered with packet type %d, want STATUS", name, typ)
	}
	id, body, _ := getUint32(body)
	if id != c.id {
		c.t.Fatalf("reply id %d, want %d", id, c.id)
	}
	code, body, _ = getUint32(body)
	msg, _, ok := getString(body)
	if !ok {
		c.t.Fatalf("malformed STATUS %x", body)
	}
	return code, msg
}

// TestStatusParityWithPkgSFTP: for every error class, pkg/sftp's STATUS
// reply has the code and message the fast path sends for it.
func TestStatusParityWithPkgSFTP(t *testing.T) {
	errs := map[string]error{}
	var names []string
	add := func(err error) {
		name := fmt.Sprintf("/e%d", len(names))
		errs[name] = err
		names = append(names, name)
	}
	// What the handlers return: every entry of the one error table, as vfs
	// returns it (wrapped in a PathError), through clientError.
	for _, m := range errorMap {
		add(clientError(&fs.PathError{Op: "stat", Path: "/x", Err: m.target}))
		add(m.status)
	}
	add(clientError(errors.New("anything else"))) // errFailure
	add(clientError(fmt.Errorf("wrapped: %w", context.Canceled)))
	add(io.EOF) // clientError passes it through
	// Errors the fast path produces itself.
	add(errors.New("bad file flags"))
	for _, c := range fxCodes {
		add(c.err)
	}
	h := &parityHandlers{paths: make(chan string, 1), errs: errs}
	c := startParityServer(t, h)
	for _, name := range names {
		err := errs[name]
		code, msg := c.stat(name)
		<-h.paths
		if want := statusCode(err); code != want {
			t.Errorf("%v: pkg/sftp sends code %d, the fast path %d", err, code, want)
		}
		if msg != err.Error() {
			t.Errorf("%v: pkg/sftp sends message %q, the fast path %q", err, msg, err.Error())
		}
	}
}

// TestPathParityWithPkgSFTP: pkg/sftp's request server hands its handlers
// every path form cleaned as cleanRequestPath cleans the fast path's OPEN.
func TestPathParityWithPkgSFTP(t *testing.T) {
	forms := []string{
		"", ".", "..", "/", "//", "/..", "../..", "/../..", "a", "./a", "a/", "/a/", "//a//b",
		"/a/./b/../c", "a/../../b", "/../x", "a/b/..", "...", "a/.../b", ".a", "a\\b", "a\\..\\b",
		" leading", "trailing ", "/ü/ñ", "a/./././b", "/a/b/../../../../c/", "\x00nul",
	}
	h := &parityHandlers{paths: make(chan string, 1), errs: map[string]error{}}
	c := startParityServer(t, h)
	for _, p := range forms {
		c.stat(p)
		if got, want := <-h.paths, cleanRequestPath(p); got != want {
			t.Errorf("path %q: pkg/sftp hands the handler %q, the fast path %q", p, got, want)
		}
	}
	if cleanRequestPath(os.DevNull) != os.DevNull {
		t.Error("an absolute clean path changed")
	}
}
