package webui

import (
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"strings"

	"github.com/securefsd/securefsd/internal/audit"
)

// Auditor receives one record per browser operation on a user's data, per
// browser session start and end, and per share-link visit (an *audit.Log;
// nil: none). Logins are recorded by users' login hook.
type Auditor interface {
	Record(audit.Record)
}

// sessionID names a browser session in audit records: a prefix of the
// session's key (itself the SHA-256 of the cookie), so it correlates the
// records of one session without revealing the cookie.
func sessionID(key [32]byte) string { return "web-" + hex.EncodeToString(key[:8]) }

func (ui *UI) audit(r *http.Request, s *sessionView, op, path, path2 string, bytes int64, err error) {
	if ui.opts.Audit == nil {
		return
	}
	ui.opts.Audit.Record(audit.Record{User: s.user.Name, Remote: r.RemoteAddr, Protocol: "web", Session: sessionID(s.key),
		Op: op, Path: path, Path2: path2, Bytes: bytes, Result: audit.Result(err), Error: audit.Class(err)})
}

// auditChange records an account-level change made in the browser (a
// folder grant by a member with manage), its arguments in detail.
func (ui *UI) auditChange(r *http.Request, s *sessionView, op, target, detail string, err error) {
	if ui.opts.Audit == nil {
		return
	}
	ui.opts.Audit.Record(audit.Record{User: target, Admin: s.user.Name, Remote: r.RemoteAddr, Protocol: "web", Session: sessionID(s.key),
		Op: op, Detail: detail, Result: audit.Result(err), Error: audit.Class(err)})
}

func (ui *UI) auditLink(r *http.Request, s *sessionView, op, path, link string) {
	if ui.opts.Audit == nil {
		return
	}
	ui.opts.Audit.Record(audit.Record{User: s.user.Name, Remote: r.RemoteAddr, Protocol: "web", Session: sessionID(s.key),
		Op: op, Path: path, Link: link, Result: audit.ResultOK})
}

// auditSession records the start of the session whose cookie is id.
func (ui *UI) auditSession(r *http.Request, user, cookie, op string) {
	if ui.opts.Audit == nil {
		return
	}
	ui.opts.Audit.Record(audit.Record{User: user, Remote: r.RemoteAddr, Protocol: "web", Session: sessionID(keyOf(cookie)),
		Op: op, Result: audit.ResultOK})
}

// failOps maps the operation names of UI.fail to audit operations.
var failOps = map[string]string{
	"download": audit.OpRead, "list": audit.OpList, "mkdir": audit.OpMkdir, "rename": audit.OpRename,
	"delete": audit.OpRemove, "share": audit.OpShareCreate,
}

// auditFail records a failed operation; the path is the request's.
func (ui *UI) auditFail(r *http.Request, s *sessionView, op string, err error) {
	if a, ok := failOps[op]; ok && s != nil {
		ui.audit(r, s, a, ui.nameOf(r), "", 0, err)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// keyOf is the session key of a cookie value (see newSession).
func keyOf(cookie string) [32]byte {
	raw, _ := base64.RawURLEncoding.DecodeString(cookie)
	return sessionKey(raw)
}

// nameOf is the file name a request under the prefix is about, as
// ServeHTTP routes it.
func (ui *UI) nameOf(r *http.Request) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, ui.opts.Prefix), "/")
	_, name, _ := strings.Cut(rest, "/")
	return cleanName(name)
}

// audit records a visitor's operation through a share link: the user is
// the link's owner (whose data it is), the remote the visitor's address.
func (c *linkReq) audit(r *http.Request, op, path string, bytes int64, err error) {
	a := c.ui.opts.Audit
	if a == nil {
		return
	}
	a.Record(audit.Record{User: c.res.Owner.Name, Remote: r.RemoteAddr, Protocol: "share", Op: op, Path: path,
		Bytes: bytes, Link: c.res.Link.ID, Result: audit.Result(err), Error: audit.Class(err)})
}
