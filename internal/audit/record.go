package audit

import (
	"errors"
	"io/fs"
	"strconv"
	"syscall"
	"time"
)

// SchemaVersion is the version of Record's JSON schema (field "v").
// Adding an optional field keeps it; renaming or changing the meaning of a
// field bumps it.
const SchemaVersion = 1

// Record is one audited operation. Its JSON form is the schema of
// docs/AUDIT.md. It never holds a password, token, key or file content.
type Record struct {
	V        int       `json:"v"`
	Time     time.Time `json:"time"`
	User     string    `json:"user,omitempty"`    // whose data or account
	Admin    string    `json:"admin,omitempty"`   // acting administrator, when not User
	Remote   string    `json:"remote,omitempty"`  // client address (IP or IP:port)
	Protocol string    `json:"proto"`             // sftp, scp, webdav, web, share, admin, ssh, audit
	Session  string    `json:"session,omitempty"` // per connection / browser session
	Op       string    `json:"op"`                // see the Op constants
	Path     string    `json:"path,omitempty"`    // the user's path, as the client names it
	Path2    string    `json:"path2,omitempty"`   // the second path of a rename, copy or link
	Bytes    int64     `json:"bytes,omitempty"`   // bytes read or written
	Result   string    `json:"result"`            // ok, fail
	Error    string    `json:"error,omitempty"`   // error class (see Class), never an error's text
	Link     string    `json:"link,omitempty"`    // share link id (never its token)
	Detail   string    `json:"detail,omitempty"`  // operation-specific, never a secret
}

// Operations. Protocols name the same action the same way.
const (
	OpLogin        = "login" // Result ok or fail; Error "banned" for a refused ban
	OpBan          = "ban"   // an address or name was banned by the defender
	OpSessionOpen  = "session.start"
	OpSessionEnd   = "session.end" // Bytes: read+written in the session; Detail: "read=N written=M"
	OpRead         = "read"        // a download or a file opened for reading, Bytes on close
	OpWrite        = "write"       // an upload or a file opened for writing, Bytes on close
	OpList         = "list"
	OpStat         = "stat"
	OpMkdir        = "mkdir"
	OpRemove       = "remove"
	OpRmdir        = "rmdir"
	OpRename       = "rename"
	OpCopy         = "copy"
	OpSetattr      = "setattr"
	OpLink         = "link"
	OpChecksum     = "checksum" // md5sum, sha1sum... over SSH, Detail the algorithm
	OpShareCreate  = "share.create"
	OpShareDelete  = "share.delete"
	OpShareGet     = "share.get" // a visitor downloaded through a link
	OpUserAdd      = "user.add"
	OpUserDel      = "user.del"
	OpUserMod      = "user.mod"
	OpUserPasswd   = "user.passwd"
	OpKeyAdd       = "key.add"
	OpKeyDel       = "key.del"
	OpBanDel       = "ban.del"
	OpVerify       = "verify"
	OpKeyRotate    = "key.rotate"
	OpFolderAdd    = "folder.add"
	OpFolderDel    = "folder.del"    // Detail: purge=BOOL
	OpFolderGrant  = "folder.grant"  // Detail: folder=NAME to=USER|@GROUP perms=LIST
	OpFolderRevoke = "folder.revoke" // Detail: folder=NAME to=USER|@GROUP
	OpGroupAdd     = "group.add"
	OpGroupDel     = "group.del"
	OpGroupMod     = "group.mod"       // Detail: group=NAME add=... del=...
	OpInviteCreate = "invite.create"   // Detail: id=ID perms=LIST group=G
	OpInviteDel    = "invite.del"      // Detail: id=ID
	OpSignup       = "user.signup"     // User: the new account; Detail: via=invitation id=ID or via=open
	OpSessionKill  = "session.kill"    // an admin ended sessions; Detail: id=ID or user=NAME ended=N
	OpUser2FA      = "user.2fa"        // Detail: enrol, off, recovery-new, reset
	OpAppPassword  = "user.apppw"      // Detail: add id=ID protocols=LIST, or revoke id=ID
	OpAuditQuery   = "audit.query"     // an admin read the trail in the browser; Detail: the filter
	OpAuditStart   = "audit.start"     // the trail was opened by a server
	OpBackup       = "backup"          // an admin made a backup; Detail: dir=DIR files=N
	OpAuditRetain  = "audit.retention" // segments were removed by retention; Detail names them
)

// Results.
const (
	ResultOK   = "ok"
	ResultFail = "fail"
)

// Class returns the error class of err for Record.Error: a short fixed word,
// never the error's text (which may hold a name). It relies on errors.Is
// only, so it needs no protocol or store package: vfs's sentinels match
// their errno.
func Class(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, fs.ErrNotExist):
		return "not-found"
	case errors.Is(err, fs.ErrExist):
		return "exists"
	case errors.Is(err, syscall.EDQUOT):
		return "quota"
	case errors.Is(err, syscall.ENOSPC):
		return "no-space"
	case errors.Is(err, syscall.EIO):
		return "integrity"
	case errors.Is(err, syscall.EFBIG):
		return "too-large"
	case errors.Is(err, syscall.EMFILE):
		return "too-many-handles"
	case errors.Is(err, fs.ErrPermission):
		return "permission"
	case errors.Is(err, syscall.ENOTEMPTY):
		return "not-empty"
	case errors.Is(err, syscall.EISDIR):
		return "is-dir"
	case errors.Is(err, syscall.ENOTDIR):
		return "not-dir"
	case errors.Is(err, errors.ErrUnsupported), errors.Is(err, syscall.ENOTSUP):
		return "unsupported"
	case errors.Is(err, fs.ErrInvalid), errors.Is(err, syscall.EINVAL):
		return "invalid"
	case errors.Is(err, fs.ErrClosed):
		return "closed"
	default:
		return "other"
	}
}

// Result returns ResultOK for a nil error, else ResultFail.
func Result(err error) string {
	if err == nil {
		return ResultOK
	}
	return ResultFail
}

// CSVHeader names the columns of CSVRow.
var CSVHeader = []string{"time", "user", "admin", "remote", "proto", "session", "op", "path", "path2", "bytes", "result", "error", "link", "detail"}

// CSVRow is r as one CSV row under CSVHeader (for spreadsheets and SIEM
// imports; the `audit query --csv` and the admin page's export).
func (r Record) CSVRow() []string {
	return []string{r.Time.Format(time.RFC3339Nano), r.User, r.Admin, r.Remote, r.Protocol, r.Session, r.Op,
		r.Path, r.Path2, strconv.FormatInt(r.Bytes, 10), r.Result, r.Error, r.Link, r.Detail}
}
