package sftpd

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/securefsd/securefsd/internal/audit"
)

// Auditor receives one record per operation on a user's data and per
// session start and end (an *audit.Log; nil: none). Record must not block
// for long: it is called on the request's goroutine.
type Auditor interface {
	Record(audit.Record)
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "ssh-" + hex.EncodeToString(b[:])
}

// auditor is the server's Auditor; nil without one (and for the sessions
// the fuzz tests make without a server).
func (ss *session) auditor() Auditor {
	if ss.srv == nil {
		return nil
	}
	return ss.srv.opts.Audit
}

// audit fills the session's fields into r and records it.
func (ss *session) audit(r audit.Record) {
	a := ss.auditor()
	if a == nil {
		return
	}
	r.User, r.Remote, r.Session = ss.user, ss.remote, ss.id
	a.Record(r)
}

func (ss *session) auditEnd() {
	rd, wr := ss.read.Load(), ss.written.Load()
	ss.audit(audit.Record{Protocol: "ssh", Op: audit.OpSessionEnd, Result: audit.ResultOK, Bytes: rd + wr,
		Detail: fmt.Sprintf("read=%d written=%d", rd, wr)})
}

// auditOps maps the log's operation names (logOp) to the audit's.
var auditOps = map[string]string{
	"download": audit.OpRead, "upload": audit.OpWrite, "readwrite": audit.OpWrite,
	"rename": audit.OpRename, "rmdir": audit.OpRmdir, "remove": audit.OpRemove, "mkdir": audit.OpMkdir,
	"symlink": audit.OpLink, "link": audit.OpLink, "setstat": audit.OpSetattr, "opendir": audit.OpList, "list": audit.OpList,
	"scp-mkdir": audit.OpMkdir, "scp-upload": audit.OpWrite, "scp-download": audit.OpRead, "scp-download-dir": audit.OpList,
	"md5sum": audit.OpChecksum, "sha1sum": audit.OpChecksum, "sha256sum": audit.OpChecksum,
}

// auditOp records what logOp logs: one record per operation. extra may
// carry the second path as "target".
func (ss *session) auditOp(op, name string, bytes int64, err error, extra []any) {
	switch op {
	case "download", "scp-download":
		ss.read.Add(max(bytes, 0))
	case "upload", "readwrite", "scp-upload":
		ss.written.Add(max(bytes, 0))
	}
	if ss.auditor() == nil {
		return
	}
	r := audit.Record{Protocol: "sftp", Op: auditOps[op], Path: name, Bytes: max(bytes, 0),
		Result: audit.Result(err), Error: audit.Class(err)}
	if r.Op == "" {
		r.Op = op
	}
	switch {
	case strings.HasPrefix(op, "scp-"):
		r.Protocol = "scp"
	case strings.HasSuffix(op, "sum"):
		r.Protocol, r.Detail = "ssh", op
	case op == "symlink":
		// pkg/sftp: Filepath is the link's target, Target the new link.
		r.Detail = "symlink"
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if k, _ := extra[i].(string); k == "target" {
			r.Path2, _ = extra[i+1].(string)
		}
	}
	if err == errInterrupted {
		r.Error = "interrupted"
	}
	ss.audit(r)
}
