package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// session is one authenticated connection: the user's confined home and
// what the log needs to say who did what.
type session struct {
	srv    *Server
	conn   *serverConn // for Shutdown's busy count
	acc    *access     // the user's current rights (access.go)
	user   string
	remote string
	log    *slog.Logger // carries user and remote
	id     string       // the session's id in audit records

	read, written atomic.Int64 // bytes transferred, for the session's end record

	start   time.Time
	kill    func()                 // ends the SSH connection
	current atomic.Pointer[string] // the last file a transfer used (Sessions)
}

// Exit statuses sent to clients.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 127 // unknown command, as a shell would say
)

// maxTxPacket is the largest READ reply the SFTP server sends. OpenSSH's
// client asks for 32 KiB (it learns no larger limit from pkg/sftp);
// clients that ask for more (rclone, pkg/sftp) get up to 64 KiB, which
// bounds what one request in flight costs (a pkg/sftp client keeps 64 in
// flight per file: 4 MiB, not 16 MiB at 256 KiB).
const maxTxPacket = 64 * 1024

// serveChannel runs one session channel: it answers its requests and runs
// at most one subsystem, exec or shell on it, then sends the exit status and
// closes the channel.
func (ss *session) serveChannel(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	// The work's context ends when the client closes the channel, so a
	// long checksum stops when nobody waits for it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		work    sync.WaitGroup
		started bool
	)
	run := func(name string, f func() uint32) {
		started = true
		work.Add(1)
		busy := name != "sftp" // SFTP is busy per open handle (handlers.takeHandle)
		if busy {
			ss.conn.acquire()
		}
		go func() {
			defer work.Done()
			if busy {
				defer ss.conn.release()
			}
			code := func() (code uint32) {
				defer func() {
					if v := recover(); v != nil {
						ss.log.Error("panic in channel work", "what", name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
						code = exitFailure
					}
				}()
				return f()
			}()
			// Like sshd: EOF on stdout, then the exit status, then close.
			ch.CloseWrite()
			if _, err := ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code})); err != nil && !errors.Is(err, io.EOF) {
				ss.log.Debug("send exit-status failed", "what", name, "err", err)
			}
			ch.Close()
		}()
	}
	for req := range reqs {
		switch req.Type {
		case "subsystem":
			var p struct{ Name string }
			if started || ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				ss.log.Info("subsystem refused", "name", p.Name)
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			run("sftp", func() uint32 { return ss.serveSFTP(ch) })
		case "exec":
			var p struct{ Command string }
			if started || ssh.Unmarshal(req.Payload, &p) != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			run("exec", func() uint32 { return ss.exec(ctx, ch, p.Command) })
		case "shell":
			if started {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			run("shell", func() uint32 {
				ss.log.Info("shell refused")
				fmt.Fprint(ch.Stderr(), "This service allows SFTP and SCP only; no shell.\r\n")
				return exitFailure
			})
		default:
			// pty-req, env, x11-req, agent forwarding, signals, ...: no.
			// (env's reply is ignored by OpenSSH; pty-req makes it print
			// "PTY allocation request failed" and go on.)
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the channel (or the connection went away): the
	// work sees EOF on the channel and ends.
	cancel()
	work.Wait()
	if !started {
		ch.Close()
	}
}

// serveSFTP runs the SFTP subsystem until the client closes it.
func (ss *session) serveSFTP(ch ssh.Channel) uint32 {
	h := &handlers{s: ss, fs: ss.acc.fs()}
	// No sftp.WithRSAllocator: its 256 KiB pages are kept for the whole
	// session, one per request in flight (OpenSSH keeps 64 in flight, so
	// about 16 MiB per session that never shrinks). Without it each packet
	// is allocated at its own size (32 KiB for OpenSSH) and collected.
	// Open files are served by the fast path (fastpath.go); the rest by
	// pkg/sftp, behind it.
	m := newFileMux(ss, h, ch)
	rs := sftp.NewRequestServer(muxConn{m}, sftp.Handlers{FileGet: opensByFastPath{}, FilePut: opensByFastPath{}, FileCmd: h, FileList: h},
		sftp.WithRSMaxTxPacket(maxTxPacket),
	)
	start := time.Now()
	// serve returns when the client closes its side; rs.Close would close
	// the channel before the exit status is sent, so it is not called.
	err := m.serve(rs)
	if err != nil && !errors.Is(err, io.EOF) {
		ss.log.Info("sftp ended", "err", err, "duration", time.Since(start).Round(time.Millisecond))
		return exitFailure
	}
	ss.log.Debug("sftp ended", "duration", time.Since(start).Round(time.Millisecond))
	return exitOK
}

// exec runs one command line from an exec request.
func (ss *session) exec(ctx context.Context, ch ssh.Channel, line string) uint32 {
	cmd, err := parseCommand(line)
	if err != nil {
		ss.log.Info("exec refused", "command", truncate(line, 200), "err", err)
		fmt.Fprintf(ch.Stderr(), "securefsd: %s: command not supported (only scp, md5sum, sha1sum, sha256sum)\n", truncate(firstWord(line), 64))
		return exitNotFound
	}
	switch cmd.name {
	case "scp":
		return ss.scp(ctx, ch, cmd.scp)
	case "md5sum", "sha1sum", "sha256sum":
		return ss.checksum(ctx, ch, cmd.name, cmd.args)
	case "echo":
		out := make([]byte, 0, 64)
		for i, a := range cmd.args {
			if i > 0 {
				out = append(out, ' ')
			}
			out = append(out, a.s...)
		}
		out = append(out, '\n')
		ch.Write(out)
		return exitOK
	}
	return exitNotFound
}

func firstWord(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			return s[:i]
		}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// logOp writes the one log line of an operation's outcome, and its audit
// record.
func (ss *session) logOp(op, name string, bytes int64, start time.Time, err error, extra ...any) {
	if bytes >= 0 {
		ss.using(name)
	}
	ss.auditOp(op, name, bytes, err, extra)
	if r := ss.recorder(); r != nil {
		if !start.IsZero() {
			r.Op(proto, op, err == nil, time.Since(start))
		}
		if bytes > 0 {
			switch op {
			case "download", "scp-download":
				r.FileIO(proto, false, int(bytes))
			case "upload", "readwrite", "scp-upload":
				r.FileIO(proto, true, int(bytes))
			}
		}
	}
	args := make([]any, 0, 10+len(extra))
	args = append(args, "op", op, "path", name)
	if bytes >= 0 {
		args = append(args, "bytes", bytes)
	}
	if !start.IsZero() {
		args = append(args, "duration", time.Since(start).Round(time.Millisecond))
	}
	args = append(args, extra...)
	if err != nil {
		args = append(args, "result", "error", "err", err)
		ss.log.Info("operation failed", args...)
		return
	}
	args = append(args, "result", "ok")
	ss.log.Info("operation", args...)
}

// recorder is the server's metrics recorder, nil without one.
func (ss *session) recorder() Recorder {
	if ss.srv == nil {
		return nil
	}
	return ss.srv.opts.Recorder
}
