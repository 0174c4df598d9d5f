package davd

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/securefsd/securefsd/internal/audit"
)

// Auditor receives one record per WebDAV request that reads or changes a
// user's data (an *audit.Log; nil: none). Logins are recorded by users'
// login hook, not here.
type Auditor interface {
	Record(audit.Record)
}

// davOps: the methods that touch data. HEAD, OPTIONS, LOCK, UNLOCK and
// PROPFIND with Depth 0 (a stat) are not recorded.
var davOps = map[string]string{
	http.MethodGet: audit.OpRead, http.MethodPut: audit.OpWrite, http.MethodDelete: audit.OpRemove,
	"MKCOL": audit.OpMkdir, "COPY": audit.OpCopy, "MOVE": audit.OpRename, "PROPFIND": audit.OpList,
	"PROPPATCH": audit.OpSetattr,
}

func (s *Server) auditRequest(r *http.Request, h *handler, lw *logWriter, err error) {
	if s.audit == nil {
		return
	}
	op := davOps[r.Method]
	if op == "" || (r.Method == "PROPFIND" && r.Header.Get("Depth") == "0") {
		return
	}
	rec := audit.Record{User: h.user, Remote: r.RemoteAddr, Protocol: "webdav", Op: op, Path: cleanName(r.URL.Path),
		Result: audit.Result(err), Error: davClass(err)}
	switch r.Method {
	case http.MethodGet:
		rec.Bytes = lw.bytes
	case http.MethodPut:
		rec.Bytes = lw.in(r)
	case "COPY", "MOVE":
		if dst, derr := h.destination(r); derr == nil {
			rec.Path2 = dst
		}
	}
	s.audit.Record(rec)
}

// davClass is audit.Class, with the statuses the handler chose itself.
func davClass(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		switch se.code {
		case http.StatusNotFound:
			return "not-found"
		case http.StatusForbidden:
			return "permission"
		case http.StatusPreconditionFailed:
			return "precondition"
		case http.StatusConflict:
			return "conflict"
		case http.StatusLocked:
			return "locked"
		}
		return "http-" + strconv.Itoa(se.code)
	}
	return audit.Class(err)
}
