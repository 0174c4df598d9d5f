package sftpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
)

// SFTP packet types (draft-ietf-secsh-filexfer-02) the fast path reads or
// writes.
const (
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpStat          = 17
	fxpExtended      = 200
	fxpExtendedReply = 201
	fxpVersion       = 2
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
)

const (
	// maxPacketLen is the largest SFTP packet accepted (pkg/sftp's limit).
	maxPacketLen = 256 * 1024
	// replyQueue is how many replies the fast path may have produced and
	// not yet written to the channel: enough for the sender to keep the
	// SSH transport busy while the next READ is served, small enough that a
	// downloading session holds a few packets, not the client's 2 MiB
	// window (replies of up to maxTxPacket each).
	replyQueue = 4
	// quietWait bounds how long a file request waits for pkg/sftp to answer
	// the requests passed to it before (see fileMux.waitQuiet).
	quietWait = 10 * time.Second
	// dataHeader is a DATA reply's header: length, type, id, data length.
	dataHeader = 4 + 1 + 4 + 4
	// maxAhead bounds the request bytes read ahead of serving (plus one
	// packet), maxAheadPackets their number: enough that the client's EOF
	// is read behind a full pipeline of READ requests (OpenSSH keeps 64
	// in flight, about 40 bytes each), little next to the channel's 2 MiB
	// window that x/crypto buffers anyway.
	maxAhead        = 64 << 10
	maxAheadPackets = 256
	// eofGrace is how long a reply write may still wait after the client's
	// EOF and the channel close before the connection is closed.
	eofGrace = 10 * time.Second
)

// fileMux is the SFTP fast path for open files, in front of pkg/sftp's
// RequestServer. pkg/sftp's server reads each packet into a fresh buffer,
// passes it through four goroutines (reader, dispatcher, one of eight
// workers, response orderer) and runs the workers' ReadAt/WriteAt calls
// concurrently and out of order; the encrypting vfs file serialises them on
// one lock and, for out-of-order writes, caches chunks it could otherwise
// seal at once. That cost about as much CPU as the SSH transport itself and
// most of a session's memory (the queued packets and half-filled chunks).
//
// fileMux reads every packet from the channel itself, into one reused
// buffer. OPEN, and READ, WRITE and CLOSE on the handles OPEN returned,
// it serves in its own goroutine, in the order the client sent them: writes
// reach vfs sequentially and are not copied before vfs copies them.
// FSTAT and FSETSTAT on its handles become STAT and SETSTAT of the file's
// path (as pkg/sftp does). Everything else (INIT, directories, path
// commands, extensions) is passed, unchanged, through a pipe to the
// RequestServer, which stays the implementation of those. Replies of both
// go to the channel as whole packets, under one lock; the fast path's
// through a small queue and a sender goroutine, so serving the next READ
// overlaps with encrypting the previous reply.
//
// Ordering: a request of the fast path waits until pkg/sftp has answered
// every request passed to it before (normally none are pending, so this is
// one lock), and requests passed to pkg/sftp come after the fast path has
// finished the ones before (it serves them synchronously). So requests take
// effect in the order the client sent them, as SFTP expects of requests on
// the same file.
type fileMux struct {
	ss *session
	h  *handlers
	ch ssh.Channel
	// grant is the rights h.fs was opened with; dispatch swaps both when
	// the user's rights change (access.current).
	grant *grant

	pr *io.PipeReader // pkg/sftp reads its requests here
	pw *io.PipeWriter

	wmu    sync.Mutex // serialises whole packets on ch
	closed bool       // under wmu: serve has returned; ch is the session's again

	// pkg/sftp's side: its replies (written in pieces) and how many of
	// the requests passed to it are unanswered.
	psBuf   []byte // an incomplete reply; pkg/sftp serialises its writes
	qmu     sync.Mutex
	qcond   sync.Cond
	pending int
	psDone  bool // pkg/sftp stopped: nothing pending will be answered

	// Owned by the serving goroutine. behind is the transfer that wrote
	// last, until it was given the chance to write behind (loop).
	files  map[string]*transfer
	seq    uint64
	behind *transfer

	out  chan *[]byte // replies for the sender
	free chan *[]byte // reply buffers for reuse

	// The reader goroutine (readLoop) reads requests ahead of the serving
	// goroutine, so that the client's EOF is seen even while serving is
	// blocked behind a reply the client does not take (see readLoop).
	in     chan *[]byte // requests read, in order
	inFree chan *[]byte // request buffers for reuse
	amu    sync.Mutex
	acond  sync.Cond
	ahead  int   // bytes in in (not yet served)
	stop   bool  // serving ended: the reader stops
	rerr   error // why reading ended (nil: the client's EOF); set before in is closed
	// gone is set when the client sent EOF or the channel broke: it sends
	// no more requests and may not read replies either.
	gone atomic.Bool
	// writing counts writes in progress on ch (the fast path's sender or
	// pkg/sftp's replies); nonzero when the client's EOF arrives means a
	// write may wait forever for window the client will never grant.
	writing atomic.Int32
}

// errBadPacket ends a session whose client sent a malformed packet (as
// pkg/sftp does).
var errBadPacket = errors.New("sftpd: malformed SFTP packet")

func newFileMux(ss *session, h *handlers, ch ssh.Channel) *fileMux {
	pr, pw := io.Pipe()
	m := &fileMux{
		ss: ss, h: h, ch: ch, pr: pr, pw: pw,
		files:  make(map[string]*transfer),
		out:    make(chan *[]byte, replyQueue),
		free:   make(chan *[]byte, replyQueue+2),
		in:     make(chan *[]byte, maxAheadPackets),
		inFree: make(chan *[]byte, 4),
	}
	m.qcond.L = &m.qmu
	m.acond.L = &m.amu
	m.grant, _ = ss.acc.current()
	h.fs = m.grant.fs
	return m
}

// rwc is the connection pkg/sftp's RequestServer is given.
type muxConn struct{ m *fileMux }

func (c muxConn) Read(p []byte) (int, error)  { return c.m.pr.Read(p) }
func (c muxConn) Write(p []byte) (int, error) { return c.m.psWrite(p) }

// Close is called by pkg/sftp when it fails (a malformed packet): like
// before the fast path, the channel is closed, which ends the session.
func (c muxConn) Close() error {
	c.m.pr.CloseWithError(io.ErrClosedPipe)
	c.m.stopPS()
	return c.m.ch.Close()
}

// psWrite takes pkg/sftp's output (a reply's header and payload come in
// separate writes) and writes each complete reply to the channel at once.
func (m *fileMux) psWrite(p []byte) (int, error) {
	n := len(p)
	if len(m.psBuf) == 0 && len(p) >= 4 && int(binary.BigEndian.Uint32(p))+4 == len(p) {
		err := m.writePacket(withExtensions(p))
		m.answered(1) // written or lost: nobody waits for it any more
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	m.psBuf = append(m.psBuf, p...)
	done := 0
	for len(m.psBuf) >= 4 {
		l := int(binary.BigEndian.Uint32(m.psBuf)) + 4
		if len(m.psBuf) < l {
			break
		}
		if err := m.writePacket(withExtensions(m.psBuf[:l])); err != nil {
			m.answered(done + 1)
			return 0, err
		}
		m.psBuf = m.psBuf[:copy(m.psBuf, m.psBuf[l:])]
		done++
	}
	if len(m.psBuf) == 0 && cap(m.psBuf) > 64<<10 {
		m.psBuf = nil // a large listing; do not keep its buffer
	}
	m.answered(done)
	return n, nil
}

// The OpenSSH extensions the fast path adds to pkg/sftp's: fsync of an
// open handle (`sftp -f`, `put -f`), and the server's limits, from which
// OpenSSH's client (8.7 and later) takes the size of its READ and WRITE
// requests (else 32 KiB: a file of 32-64 KiB takes one more round trip
// each way).
const (
	extFsync  = "fsync@openssh.com"
	extLimits = "limits@openssh.com"
)

// withExtensions adds fsync@openssh.com and limits@openssh.com (version
// "1" each) to pkg/sftp's VERSION reply, which lists the extensions the
// server answers; any other packet is returned as it is.
func withExtensions(p []byte) []byte {
	if len(p) < 9 || p[4] != fxpVersion {
		return p
	}
	out := make([]byte, 0, len(p)+2*(4+4+1)+len(extFsync)+len(extLimits))
	out = append(out, p...)
	for _, name := range []string{extFsync, extLimits} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(name)))
		out = append(out, name...)
		out = binary.BigEndian.AppendUint32(out, 1)
		out = append(out, '1')
	}
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out
}

// extendedRequest parses an EXTENDED request's id and name; rest is what
// follows the name.
func extendedRequest(body []byte) (id uint32, name string, rest []byte, ok bool) {
	id, rest, ok = getUint32(body)
	if ok {
		name, rest, ok = getString(rest)
	}
	return id, name, rest, ok
}

// limits queues the EXTENDED_REPLY to limits@openssh.com (OpenSSH's
// PROTOCOL, section 4.8): the largest packet accepted, the largest READ
// and WRITE lengths served whole, and the open handles a session may hold.
// READ and WRITE are maxTxPacket, a whole chunk of the at-rest format, so
// what one request in flight costs stays what it was (session.go).
func (m *fileMux) limits(id uint32) {
	bp := m.buf(4 + 1 + 4 + 4*8)
	b := (*bp)[:0]
	b = binary.BigEndian.AppendUint32(b, 1+4+4*8)
	b = append(b, fxpExtendedReply)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint64(b, maxPacketLen)
	b = binary.BigEndian.AppendUint64(b, maxTxPacket)
	b = binary.BigEndian.AppendUint64(b, maxTxPacket)
	b = binary.BigEndian.AppendUint64(b, maxHandles)
	*bp = b
	m.out <- bp
}

func (m *fileMux) writePacket(b []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.closed {
		return io.ErrClosedPipe
	}
	// After the client's EOF no reply is written (handleEOF): the order
	// of the two atomics makes sure that either handleEOF sees this write
	// and closes the channel, or this write sees the EOF.
	// A dropped reply counts as written, so that requests waiting for
	// pkg/sftp's answers (waitQuiet) go on.
	m.writing.Add(1)
	defer m.writing.Add(-1)
	if m.gone.Load() {
		return nil
	}
	_, err := m.ch.Write(b)
	return err
}

// passed counts a request handed to pkg/sftp; answered counts its replies.
func (m *fileMux) passed() {
	m.qmu.Lock()
	m.pending++
	m.qmu.Unlock()
}

func (m *fileMux) answered(n int) {
	if n == 0 {
		return
	}
	m.qmu.Lock()
	m.pending = max(m.pending-n, 0)
	if m.pending == 0 {
		m.qcond.Broadcast()
	}
	m.qmu.Unlock()
}

func (m *fileMux) stopPS() {
	m.qmu.Lock()
	m.psDone = true
	m.qcond.Broadcast()
	m.qmu.Unlock()
}

// waitQuiet waits until pkg/sftp has answered the requests passed to it,
// so that a file request does not overtake them. Every request gets one
// reply; the bound only keeps a session going should pkg/sftp ever not
// answer one.
func (m *fileMux) waitQuiet() {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if m.pending == 0 || m.psDone {
		return
	}
	deadline := time.Now().Add(quietWait)
	t := time.AfterFunc(quietWait, func() {
		m.qmu.Lock()
		m.qcond.Broadcast()
		m.qmu.Unlock()
	})
	defer t.Stop()
	for m.pending > 0 && !m.psDone && time.Now().Before(deadline) {
		m.qcond.Wait()
	}
}

// serve runs the session until the client closes the channel; rs serves
// what is passed to it. It returns the error that ended the session (nil
// for a clean end).
func (m *fileMux) serve(rs *sftp.RequestServer) error {
	psErr := make(chan error, 1)
	go func() {
		err := rs.Serve()
		m.pr.Close()
		m.stopPS()
		psErr <- err
	}()
	sent := make(chan struct{})
	go m.sender(sent)
	go m.readLoop()

	err := m.loop()
	m.stopReading()

	// Like pkg/sftp at the end of a session: handles still open were
	// interrupted (the client went away, or closed the channel first).
	m.pw.Close()
	for handle, t := range m.files {
		terr := err
		if terr == nil {
			terr = io.ErrUnexpectedEOF
		}
		t.TransferError(terr)
		t.Close()
		delete(m.files, handle)
	}
	close(m.out)
	<-sent
	perr := <-psErr
	// rs.Serve returns before pkg/sftp's packet manager has necessarily
	// written its last replies (its controller goroutine is not waited
	// for), and the caller half-closes the channel next: from here on
	// late replies are dropped rather than raced with CloseWrite. The
	// client has already closed its side, so nobody is waiting for them.
	m.wmu.Lock()
	m.closed = true
	m.wmu.Unlock()
	if err == nil && perr != nil && !errors.Is(perr, io.EOF) && !errors.Is(perr, io.ErrClosedPipe) {
		err = perr
	}
	return err
}

// sender writes the fast path's replies in order and recycles their
// buffers. After a write error it drops the rest (the session is ending).
func (m *fileMux) sender(done chan<- struct{}) {
	defer close(done)
	var err error
	for b := range m.out {
		if err == nil {
			err = m.writePacket(*b)
		}
		select {
		case m.free <- b:
		default:
		}
	}
}

// buf returns a reply buffer of length n.
func (m *fileMux) buf(n int) *[]byte {
	select {
	case b := <-m.free:
		if cap(*b) >= n {
			*b = (*b)[:n]
			return b
		}
	default:
	}
	b := make([]byte, n, max(n, 64))
	return &b
}

// loop serves the requests readLoop reads, until the channel ends.
func (m *fileMux) loop() error {
	for bp := range m.in {
		m.amu.Lock()
		m.ahead -= len(*bp)
		m.acond.Broadcast()
		m.amu.Unlock()
		err := m.dispatch(*bp)
		select {
		case m.inFree <- bp:
		default:
		}
		if err != nil {
			return err
		}
		if m.behind != nil && len(m.in) == 0 {
			// Nothing to serve: the file writes out now what the
			// next write would otherwise wait for, while its reply
			// travels and the client sends that write. The sender
			// goes first: the reply it was just handed waits for
			// this goroutine's turn to end, and must not wait for
			// the write-out.
			runtime.Gosched()
			m.behind.writeBehind()
			m.behind = nil
		}
	}
	return m.rerr
}

// readLoop reads whole request packets from the channel into buffers of
// their own and hands them to loop, at most maxAhead bytes (plus one
// packet) ahead of it. Reading is separate from serving so that it never
// waits behind a reply: when the client stops reading replies (a killed
// sftp whose ssh process lives on), serving blocks on the full reply
// queue, but the reader still reaches the client's EOF behind the few
// requests in flight and ends the session (see handleEOF). Before it
// closes in, rerr says why reading ended: nil for the client's EOF.
func (m *fileMux) readLoop() {
	defer close(m.in)
	var hdr [4]byte
	for {
		m.amu.Lock()
		for !m.stop && (m.ahead >= maxAhead || len(m.in) == cap(m.in)) {
			m.acond.Wait()
		}
		stop := m.stop
		m.amu.Unlock()
		if stop {
			return
		}
		if _, err := io.ReadFull(m.ch, hdr[:]); err != nil {
			if err != io.EOF {
				m.rerr = fmt.Errorf("read packet length: %w", err)
			}
			m.handleEOF()
			return
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l == 0 || l > maxPacketLen {
			m.rerr = fmt.Errorf("%w: length %d", errBadPacket, l)
			return
		}
		bp := m.inBuf(int(l) + 4)
		pkt := *bp
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(m.ch, pkt[4:]); err != nil {
			m.rerr = fmt.Errorf("read packet: %w", err)
			m.handleEOF()
			return
		}
		m.amu.Lock()
		m.ahead += len(pkt)
		m.amu.Unlock()
		m.in <- bp // never blocks: len(in) < cap(in) was checked
	}
}

// handleEOF: the client sends no more requests, and takes no more
// replies: like OpenSSH's sftp-server, which exits on EOF without writing
// what is queued, replies are dropped from now on (real clients send EOF
// only once every reply arrived). A reply being written now may wait for
// window the client never grants (a killed sftp whose ssh process lives
// on): closing the channel ends that wait when the peer answers with its
// CLOSE, and if it does not within eofGrace, the connection is closed.
// The requests already read are still served (an upload's last WRITE and
// CLOSE take effect), then the session ends.
func (m *fileMux) handleEOF() {
	m.gone.Store(true)
	if m.writing.Load() == 0 {
		return
	}
	m.ss.log.Debug("sftp: client sent EOF while a reply was being written; closing the channel")
	m.ch.Close()
	if m.ss.conn == nil {
		return
	}
	time.AfterFunc(eofGrace, func() {
		if m.writing.Load() > 0 {
			m.ss.log.Info("sftp: client does not close the channel after EOF; closing the connection")
			m.ss.conn.nc.Close()
		}
	})
}

// stopReading tells readLoop that nothing more will be served.
func (m *fileMux) stopReading() {
	m.amu.Lock()
	m.stop = true
	m.acond.Broadcast()
	m.amu.Unlock()
}

// inBuf returns a request buffer of length n.
func (m *fileMux) inBuf(n int) *[]byte {
	select {
	case b := <-m.inFree:
		if cap(*b) >= n {
			*b = (*b)[:n]
			return b
		}
	default:
	}
	b := make([]byte, n, max(n, 512))
	return &b
}

// dispatch serves pkt (length prefix included) or passes it on. Every
// request first takes the user's current rights: a revoked connection ends
// here, changed rights apply from this request on.
func (m *fileMux) dispatch(pkt []byte) error {
	g, err := m.ss.acc.current()
	if err != nil {
		return err
	}
	if g != m.grant {
		if err := m.regrant(g); err != nil {
			return err
		}
	}
	typ, body := pkt[4], pkt[5:]
	switch typ {
	case fxpOpen:
		m.waitQuiet()
		return m.open(body)
	case fxpExtended:
		// limits@openssh.com, and fsync@openssh.com on one of the fast
		// path's handles; any other extension (and fsync of a handle
		// pkg/sftp holds, which it refuses) is pkg/sftp's.
		id, name, rest, ok := extendedRequest(body)
		switch {
		case ok && name == extLimits:
			m.waitQuiet()
			m.limits(id)
			return nil
		case ok && name == extFsync:
			handle, _, ok := getString(rest)
			if t := m.files[handle]; ok && t != nil {
				m.waitQuiet()
				m.status(id, t.Sync())
				return nil
			}
		}
	case fxpRead, fxpWrite, fxpClose, fxpFstat, fxpFsetstat:
		id, handle, rest, ok := idHandle(body)
		if !ok {
			return fmt.Errorf("%w: type %d", errBadPacket, typ)
		}
		t := m.files[string(handle)] // no allocation for the lookup
		if t == nil {
			// A directory handle, or unknown: pkg/sftp answers. It runs
			// READ and WRITE in other workers than OPENDIR, and a
			// client that sends one on the handle OPENDIR is about to
			// return (handles are guessable) would race with the
			// opening (pkg/sftp sets the request's method there).
			// Waiting for pkg/sftp's pending replies rules that out.
			if typ == fxpRead || typ == fxpWrite {
				m.waitQuiet()
			}
			break
		}
		m.waitQuiet()
		switch typ {
		case fxpRead:
			if !m.grant.rightsAt(t.path).Has(users.PermDownload) {
				m.status(id, clientError(errRevoked))
				return nil
			}
			return m.read(id, t, rest)
		case fxpWrite:
			if r := m.grant.rightsAt(t.path); !r.Has(users.PermUpload) && !r.Has(users.PermOverwrite) {
				// The upload lost its right to write: it must not be
				// published by the CLOSE that follows (an overwrite
				// keeps the previous content).
				t.ioErr.CompareAndSwap(nil, &errRevoked)
				m.status(id, clientError(errRevoked))
				return nil
			}
			return m.write(id, t, rest)
		case fxpClose:
			delete(m.files, string(handle))
			if m.behind == t {
				m.behind = nil
			}
			m.status(id, t.Close())
			return nil
		case fxpFstat:
			return m.pass(pathPacket(fxpStat, id, t.path, nil))
		case fxpFsetstat:
			return m.pass(pathPacket(fxpSetstat, id, t.path, rest))
		}
	}
	return m.pass(pkt)
}

// errRightsBusy: the rights changed while pkg/sftp kept a request
// unanswered past quietWait, so its handlers could not switch safely.
var errRightsBusy = errors.New("sftpd: rights changed while a request was running")

// regrant makes pkg/sftp's handlers use g's home view from the next
// request on. pkg/sftp reads h.fs in its worker goroutines; it is swapped
// only when every request passed to pkg/sftp has been answered (the qmu
// hand-off and the request pipe order the accesses), else the session
// ends (fail closed).
func (m *fileMux) regrant(g *grant) error {
	m.waitQuiet()
	m.qmu.Lock()
	busy := m.pending > 0 && !m.psDone
	m.qmu.Unlock()
	if busy {
		return errRightsBusy
	}
	m.h.fs = g.fs
	m.grant = g
	return nil
}

// pass hands a request to pkg/sftp. It fails only when pkg/sftp has
// stopped (the session is ending).
func (m *fileMux) pass(pkt []byte) error {
	m.passed()
	if _, err := m.pw.Write(pkt); err != nil {
		m.answered(1)
		return fmt.Errorf("pass request: %w", err)
	}
	return nil
}

// open serves OPEN like pkg/sftp's Request.open: the flags choose the
// handler, the path is cleaned the same way.
func (m *fileMux) open(body []byte) error {
	id, b, ok := getUint32(body)
	var (
		name   string
		pflags uint32
	)
	if ok {
		name, b, ok = getString(b)
	}
	if ok {
		pflags, _, ok = getUint32(b)
	}
	if !ok {
		return fmt.Errorf("%w: open", errBadPacket)
	}
	r := sftp.NewRequest("Get", cleanRequestPath(name))
	r.Flags = pflags
	f := r.Pflags()
	var (
		t   *transfer
		err error
	)
	switch {
	case f.Write, f.Append, f.Creat, f.Trunc:
		if f.Read {
			r.Method = "Open"
			t, err = m.h.openWrite(r, os.O_RDWR)
		} else {
			r.Method = "Put"
			t, err = m.h.openWrite(r, os.O_WRONLY)
		}
	case f.Read:
		t, err = m.h.openRead(r)
	default:
		err = errors.New("bad file flags")
	}
	if err != nil {
		m.status(id, err)
		return nil
	}
	m.seq++
	handle := "s" + strconv.FormatUint(m.seq, 10)
	m.files[handle] = t
	bp := m.buf(4 + 1 + 4 + 4 + len(handle))
	b = (*bp)[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(1+4+4+len(handle)))
	b = append(b, fxpHandle)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(handle)))
	b = append(b, handle...)
	*bp = b
	m.out <- bp
	return nil
}

// read serves READ: at most maxTxPacket bytes; a short read at the end of
// the file returns what there is, EOF only when there is nothing.
func (m *fileMux) read(id uint32, t *transfer, b []byte) error {
	off, b, ok := getUint64(b)
	var n uint32
	if ok {
		n, _, ok = getUint32(b)
	}
	if !ok {
		return fmt.Errorf("%w: read", errBadPacket)
	}
	n = min(n, maxTxPacket)
	bp := m.buf(dataHeader + int(n))
	got, err := t.ReadAt((*bp)[dataHeader:], int64(off))
	if err != nil && (err != io.EOF || got == 0) {
		m.recycle(bp)
		m.status(id, err)
		return nil
	}
	p := (*bp)[:dataHeader+got]
	binary.BigEndian.PutUint32(p[0:], uint32(dataHeader-4+got))
	p[4] = fxpData
	binary.BigEndian.PutUint32(p[5:], id)
	binary.BigEndian.PutUint32(p[9:], uint32(got))
	*bp = p
	m.out <- bp
	return nil
}

// write serves WRITE from the packet buffer (vfs copies or seals the
// data before WriteAt returns).
func (m *fileMux) write(id uint32, t *transfer, b []byte) error {
	off, b, ok := getUint64(b)
	var n uint32
	if ok {
		n, b, ok = getUint32(b)
	}
	if !ok || uint32(len(b)) < n {
		return fmt.Errorf("%w: write", errBadPacket)
	}
	_, err := t.WriteAt(b[:n], int64(off))
	m.status(id, err)
	m.behind = t
	return nil
}

func (m *fileMux) recycle(bp *[]byte) {
	select {
	case m.free <- bp:
	default:
	}
}

// status queues a STATUS reply for err, coded as pkg/sftp's statusFromError
// codes the errors of the handlers (which pass them through clientError).
func (m *fileMux) status(id uint32, err error) {
	code, msg := statusCode(err), ""
	if err != nil {
		msg = err.Error()
	}
	bp := m.buf(4 + 1 + 4 + 4 + 4 + len(msg) + 4)
	b := (*bp)[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(1+4+4+4+len(msg)+4))
	b = append(b, fxpStatus)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	b = binary.BigEndian.AppendUint32(b, 0) // language tag: empty, as pkg/sftp
	*bp = b
	m.out <- bp
}

// fxCodes are the status codes of the sftp.ErrSSHFx* errors.
var fxCodes = []struct {
	err  error
	code uint32
}{
	{sftp.ErrSSHFxEOF, 1},
	{sftp.ErrSSHFxNoSuchFile, 2},
	{sftp.ErrSSHFxPermissionDenied, 3},
	{sftp.ErrSSHFxFailure, 4},
	{sftp.ErrSSHFxBadMessage, 5},
	{sftp.ErrSSHFxNoConnection, 6},
	{sftp.ErrSSHFxConnectionLost, 7},
	{sftp.ErrSSHFxOpUnsupported, 8},
}

// statusCode is pkg/sftp's statusFromError for the errors the handlers
// return: nil, io.EOF, or a *statusError wrapping an sftp.ErrSSHFx* code.
func statusCode(err error) uint32 {
	switch {
	case err == nil:
		return 0
	case os.IsNotExist(err):
		return 2
	case errors.Is(err, io.EOF):
		return 1
	}
	for _, c := range fxCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return 4
}

// pathPacket builds a request on a path (STAT, SETSTAT) with rest (the
// attributes) appended.
func pathPacket(typ byte, id uint32, name string, rest []byte) []byte {
	b := make([]byte, 0, 4+1+4+4+len(name)+len(rest))
	b = binary.BigEndian.AppendUint32(b, uint32(1+4+4+len(name)+len(rest)))
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	return append(b, rest...)
}

// cleanRequestPath is pkg/sftp's cleanPathWithBase("/", p).
func cleanRequestPath(p string) string {
	p = path.Clean(p)
	if !path.IsAbs(p) {
		return path.Join("/", p)
	}
	return p
}

func idHandle(b []byte) (id uint32, handle, rest []byte, ok bool) {
	if id, b, ok = getUint32(b); !ok {
		return
	}
	n, b, ok := getUint32(b)
	if !ok || uint32(len(b)) < n {
		return 0, nil, nil, false
	}
	return id, b[:n], b[n:], true
}

func getUint32(b []byte) (uint32, []byte, bool) {
	if len(b) < 4 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint32(b), b[4:], true
}

func getUint64(b []byte) (uint64, []byte, bool) {
	if len(b) < 8 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(b), b[8:], true
}

func getString(b []byte) (string, []byte, bool) {
	n, b, ok := getUint32(b)
	if !ok || uint32(len(b)) < n {
		return "", nil, false
	}
	return string(b[:n]), b[n:], true
}
