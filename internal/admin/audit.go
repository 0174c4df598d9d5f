package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// Auditor receives one record per management operation that changes
// something or reads user data (an *audit.Log). Listing is not recorded.
type Auditor interface {
	Record(audit.Record)
}

// Audited returns m recording each changing operation into a, with the
// acting administrator from the context (WithActor; the socket sets the
// peer's uid) or else this process's user. The optional interfaces
// (BanManager, ShareManager, UserSetter) are kept when m has them.
func Audited(m Manager, a Auditor) Manager {
	return &audited{Manager: m, a: a}
}

type audited struct {
	Manager
	a Auditor
}

// The wrapper must offer every optional interface a *Local has: callers
// find them by type assertion, and a missing one would turn a command into
// "unsupported" only when the trail is on.
var _ interface {
	Manager
	BanManager
	ShareManager
	UserSetter
	FolderManager
	InviteManager
	TwoFactorResetter
	SessionManager
	BackupManager
	signUpper
} = (*audited)(nil)

type actorKey struct{}

// WithActor names the administrator acting in ctx's operations.
func WithActor(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, actorKey{}, who)
}

// PeerContext is an http.Server ConnContext for the admin socket: it names
// the connection's peer (its uid and user name, SO_PEERCRED) as the actor.
func PeerContext(ctx context.Context, c net.Conn) context.Context {
	if uid, ok := peerUID(c); ok {
		return WithActor(ctx, describeUID(uid))
	}
	return ctx
}

func describeUID(uid int) string {
	s := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		s += " (" + u.Username + ")"
	}
	return s
}

func actor(ctx context.Context) string {
	if s, ok := ctx.Value(actorKey{}).(string); ok {
		return s
	}
	return describeUID(os.Getuid()) + " local"
}

func (m *audited) rec(ctx context.Context, op, target, detail string, err error) {
	m.a.Record(audit.Record{User: target, Admin: actor(ctx), Protocol: "admin", Op: op, Detail: detail,
		Result: audit.Result(err), Error: audit.Class(err)})
}

func (m *audited) AddUser(ctx context.Context, req AddUserRequest) error {
	err := m.Manager.AddUser(ctx, req)
	m.rec(ctx, audit.OpUserAdd, req.Name, fmt.Sprintf("perms=%s read_only=%t quota_bytes=%d quota_files=%d admin=%t keys=%d", req.Perms, req.ReadOnly, req.QuotaBytes, req.QuotaFiles, req.Admin, len(req.Keys)), err)
	return err
}

func (m *audited) SetPassword(ctx context.Context, name string, password []byte) error {
	err := m.Manager.SetPassword(ctx, name, password)
	m.rec(ctx, audit.OpUserPasswd, name, "", err)
	return err
}

func (m *audited) DeleteUser(ctx context.Context, name string, purge bool, progress func(Progress)) error {
	err := m.Manager.DeleteUser(ctx, name, purge, progress)
	m.rec(ctx, audit.OpUserDel, name, fmt.Sprintf("purge=%t", purge), err)
	return err
}

func (m *audited) SetDisabled(ctx context.Context, name string, disabled bool) error {
	err := m.Manager.SetDisabled(ctx, name, disabled)
	m.rec(ctx, audit.OpUserMod, name, fmt.Sprintf("disabled=%t", disabled), err)
	return err
}

func (m *audited) AddKey(ctx context.Context, name, line string) (users.Key, error) {
	k, err := m.Manager.AddKey(ctx, name, line)
	m.rec(ctx, audit.OpKeyAdd, name, k.Fingerprint, err)
	return k, err
}

func (m *audited) DelKey(ctx context.Context, name, fp string) error {
	err := m.Manager.DelKey(ctx, name, fp)
	m.rec(ctx, audit.OpKeyDel, name, fp, err)
	return err
}

func (m *audited) RotateKey(ctx context.Context, progress func(Progress)) error {
	err := m.Manager.RotateKey(ctx, progress)
	m.rec(ctx, audit.OpKeyRotate, "", "", err)
	return err
}

func (m *audited) Verify(ctx context.Context, user string, damaged func(Damage)) (VerifyResult, error) {
	res, err := m.Manager.Verify(ctx, user, damaged)
	m.rec(ctx, audit.OpVerify, user, fmt.Sprintf("checked=%d damaged=%d", res.Checked, res.Damaged), err)
	return res, err
}

// The optional interfaces: present on the wrapper only when m has them,
// so callers' type assertions keep meaning what they meant.

func (m *audited) ListBans(ctx context.Context) ([]users.Ban, error) {
	b, ok := m.Manager.(BanManager)
	if !ok {
		return nil, errUnsupported
	}
	return b.ListBans(ctx)
}

func (m *audited) Unban(ctx context.Context, who string) error {
	b, ok := m.Manager.(BanManager)
	if !ok {
		return errUnsupported
	}
	err := b.Unban(ctx, who)
	m.rec(ctx, audit.OpBanDel, "", who, err)
	return err
}

func (m *audited) SetUser(ctx context.Context, name string, req SetUserRequest) error {
	s, ok := m.Manager.(UserSetter)
	if !ok {
		return errUnsupported
	}
	err := s.SetUser(ctx, name, req)
	m.rec(ctx, audit.OpUserMod, name, describeSet(req), err)
	return err
}

func (m *audited) CreateShare(ctx context.Context, req ShareRequest) (ShareCreated, error) {
	s, ok := m.Manager.(ShareManager)
	if !ok {
		return ShareCreated{}, errUnsupported
	}
	c, err := s.CreateShare(ctx, req)
	r := audit.Record{User: req.User, Admin: actor(ctx), Protocol: "admin", Op: audit.OpShareCreate, Path: req.Path,
		Link: c.Link.ID, Result: audit.Result(err), Error: audit.Class(err)}
	m.a.Record(r)
	return c, err
}

func (m *audited) ListShares(ctx context.Context, user string) ([]shares.Public, error) {
	s, ok := m.Manager.(ShareManager)
	if !ok {
		return nil, errUnsupported
	}
	return s.ListShares(ctx, user)
}

func (m *audited) RevokeShare(ctx context.Context, id string) error {
	s, ok := m.Manager.(ShareManager)
	if !ok {
		return errUnsupported
	}
	err := s.RevokeShare(ctx, id)
	m.a.Record(audit.Record{Admin: actor(ctx), Protocol: "admin", Op: audit.OpShareDelete, Link: id, Result: audit.Result(err), Error: audit.Class(err)})
	return err
}

func describeSet(r SetUserRequest) string {
	var parts []string
	if r.Perms != nil {
		parts = append(parts, "perms="+*r.Perms)
	}
	if r.ReadOnly {
		parts = append(parts, "read_only=true")
	}
	if r.QuotaBytes != nil {
		parts = append(parts, fmt.Sprintf("quota_bytes=%d", *r.QuotaBytes))
	}
	if r.QuotaFiles != nil {
		parts = append(parts, fmt.Sprintf("quota_files=%d", *r.QuotaFiles))
	}
	if r.Admin != nil {
		parts = append(parts, fmt.Sprintf("admin=%t", *r.Admin))
	}
	return strings.Join(parts, " ")
}

var errUnsupported = fmt.Errorf("admin: %w", errors.ErrUnsupported)

func (m *audited) folders() (FolderManager, error) {
	f, ok := m.Manager.(FolderManager)
	if !ok {
		return nil, errUnsupported
	}
	return f, nil
}

func (m *audited) AddFolder(ctx context.Context, req FolderRequest) error {
	f, err := m.folders()
	if err == nil {
		err = f.AddFolder(ctx, req)
	}
	m.rec(ctx, audit.OpFolderAdd, "", fmt.Sprintf("folder=%s quota_bytes=%d quota_files=%d", req.Name, req.QuotaBytes, req.QuotaFiles), err)
	return err
}

func (m *audited) DeleteFolder(ctx context.Context, name string, purge bool) error {
	f, err := m.folders()
	if err == nil {
		err = f.DeleteFolder(ctx, name, purge)
	}
	m.rec(ctx, audit.OpFolderDel, "", fmt.Sprintf("folder=%s purge=%t", name, purge), err)
	return err
}

func (m *audited) ListFolders(ctx context.Context) ([]users.Folder, error) {
	f, err := m.folders()
	if err != nil {
		return nil, err
	}
	return f.ListFolders(ctx)
}

func (m *audited) Grant(ctx context.Context, folder, to, perms string) error {
	f, err := m.folders()
	if err == nil {
		err = f.Grant(ctx, folder, to, perms)
	}
	m.rec(ctx, audit.OpFolderGrant, grantUser(to), fmt.Sprintf("folder=%s to=%s perms=%s", folder, to, perms), err)
	return err
}

func (m *audited) Revoke(ctx context.Context, folder, to string) error {
	f, err := m.folders()
	if err == nil {
		err = f.Revoke(ctx, folder, to)
	}
	m.rec(ctx, audit.OpFolderRevoke, grantUser(to), fmt.Sprintf("folder=%s to=%s", folder, to), err)
	return err
}

// grantUser is the record's user for a grant: the grantee when a user, ""
// for a group (named in Detail).
func grantUser(to string) string {
	if strings.HasPrefix(to, users.GroupPrefix) {
		return ""
	}
	return to
}

func (m *audited) AddGroup(ctx context.Context, name string) error {
	f, err := m.folders()
	if err == nil {
		err = f.AddGroup(ctx, name)
	}
	m.rec(ctx, audit.OpGroupAdd, "", "group="+name, err)
	return err
}

func (m *audited) DeleteGroup(ctx context.Context, name string) error {
	f, err := m.folders()
	if err == nil {
		err = f.DeleteGroup(ctx, name)
	}
	m.rec(ctx, audit.OpGroupDel, "", "group="+name, err)
	return err
}

func (m *audited) SetMembers(ctx context.Context, group string, add, del []string) error {
	f, err := m.folders()
	if err == nil {
		err = f.SetMembers(ctx, group, add, del)
	}
	m.rec(ctx, audit.OpGroupMod, "", fmt.Sprintf("group=%s add=%s del=%s", group, strings.Join(add, ","), strings.Join(del, ",")), err)
	return err
}

func (m *audited) ListGroups(ctx context.Context) ([]users.Group, error) {
	f, err := m.folders()
	if err != nil {
		return nil, err
	}
	return f.ListGroups(ctx)
}

func (m *audited) invites() (InviteManager, error) {
	i, ok := m.Manager.(InviteManager)
	if !ok {
		return nil, errUnsupported
	}
	return i, nil
}

func (m *audited) CreateInvite(ctx context.Context, req InviteRequest) (InviteCreated, error) {
	i, err := m.invites()
	var c InviteCreated
	if err == nil {
		c, err = i.CreateInvite(ctx, req)
	}
	m.rec(ctx, audit.OpInviteCreate, "", fmt.Sprintf("id=%s perms=%s group=%s", c.Invite.ID, c.Invite.Perms, c.Invite.Group), err)
	return c, err
}

func (m *audited) ListInvites(ctx context.Context) ([]shares.Invite, error) {
	i, err := m.invites()
	if err != nil {
		return nil, err
	}
	return i.ListInvites(ctx)
}

func (m *audited) RevokeInvite(ctx context.Context, id string) error {
	i, err := m.invites()
	if err == nil {
		err = i.RevokeInvite(ctx, id)
	}
	m.rec(ctx, audit.OpInviteDel, "", "id="+id, err)
	return err
}

// signUpper is the sign-up page's part of a *Local.
type signUpper interface {
	SignUp(ctx context.Context, req SignUpRequest) (users.User, error)
	LookupInvite(ctx context.Context, token string) (shares.Invite, error)
}

// SignUp records the account a sign-up made (or the refusal), with the
// invitation's id, never its token.
func (m *audited) SignUp(ctx context.Context, req SignUpRequest) (users.User, error) {
	s, ok := m.Manager.(signUpper)
	if !ok {
		return users.User{}, errUnsupported
	}
	detail := "via=open"
	if req.Token != "" {
		detail = "via=invitation"
		if iv, err := s.LookupInvite(ctx, req.Token); err == nil {
			detail += " id=" + iv.ID
		}
	}
	u, err := s.SignUp(ctx, req)
	r := audit.Record{User: req.Name, Protocol: "web", Op: audit.OpSignup, Detail: detail, Result: audit.Result(err), Error: audit.Class(err)}
	if remote, ok := ctx.Value(remoteKey{}).(string); ok {
		r.Remote = remote
	}
	m.a.Record(r)
	return u, err
}

func (m *audited) LookupInvite(ctx context.Context, token string) (shares.Invite, error) {
	s, ok := m.Manager.(signUpper)
	if !ok {
		return shares.Invite{}, errUnsupported
	}
	return s.LookupInvite(ctx, token)
}

type remoteKey struct{}

// WithRemote names the remote address of the client behind ctx's
// operation (the sign-up page's visitor) for its audit record.
func WithRemote(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteKey{}, addr)
}

// ResetTwoFactor records the reset (user.2fa, detail "reset").
func (m *audited) ResetTwoFactor(ctx context.Context, name string) error {
	tr, ok := m.Manager.(TwoFactorResetter)
	if !ok {
		return errUnsupported
	}
	err := tr.ResetTwoFactor(ctx, name)
	m.rec(ctx, audit.OpUser2FA, name, "reset", err)
	return err
}

func (m *audited) sessions() (SessionManager, error) {
	s, ok := m.Manager.(SessionManager)
	if !ok {
		return nil, errUnsupported
	}
	return s, nil
}

func (m *audited) ListSessions(ctx context.Context) ([]SessionInfo, error) {
	s, err := m.sessions()
	if err != nil {
		return nil, err
	}
	return s.ListSessions(ctx)
}

func (m *audited) KillSession(ctx context.Context, id string) error {
	s, err := m.sessions()
	if err == nil {
		err = s.KillSession(ctx, id)
	}
	m.rec(ctx, audit.OpSessionKill, "", describeKill(id, "", 0), err)
	return err
}

func (m *audited) KillUserSessions(ctx context.Context, user string) (int, error) {
	s, err := m.sessions()
	n := 0
	if err == nil {
		n, err = s.KillUserSessions(ctx, user)
	}
	m.rec(ctx, audit.OpSessionKill, user, describeKill("", user, n), err)
	return n, err
}
