package sftpd

import (
	"context"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
)

// TestAppPasswordSessions (issue 18): once a user has two-factor login,
// SFTP password logins take only an app password allowing sftp (the
// account password and a webdav-only app password are refused); a key
// login keeps working; revoking the app password, or resetting 2FA, ends
// open sessions made with it, busy or idle; turning 2FA on ends a session
// made with the account password.
func TestAppPasswordSessions(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	u := ts.addUser("appy", users.PermAll)
	// A session with the account password, before 2FA.
	before := ts.dialAs(u, pwLogin(u))

	k, err := users.NewTOTPKey("test", u.name)
	must(t, err)
	code, err := totp.GenerateCode(k.Secret(), time.Now())
	must(t, err)
	_, err = ts.db.EnableTwoFactor(ctx, u.name, k.Secret(), code)
	must(t, err)
	connEnds(t, before, "the account-password session when 2FA was turned on")

	sftpAP, sftpPW, err := ts.db.AddAppPassword(ctx, u.name, "sftp client", []string{users.ProtoSFTP})
	must(t, err)
	_, davPW, err := ts.db.AddAppPassword(ctx, u.name, "dav client", []string{users.ProtoWebDAV})
	must(t, err)
	for what, pw := range map[string]string{"account password": u.password, "webdav-only app password": davPW, "nonsense": "x"} {
		_, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{User: u.name, Auth: []ssh.AuthMethod{ssh.Password(pw)},
			HostKeyCallback: ssh.FixedHostKey(ts.hostKey), Timeout: 10 * time.Second})
		if err == nil {
			t.Fatalf("SFTP login with the %s succeeded", what)
		}
	}
	byKey := ts.dialAs(u, keyLogin(u))
	busy := ts.dialAs(u, ssh.Password(sftpPW))
	idle := ts.dialAs(u, ssh.Password(sftpPW))
	c, err := sftp.NewClient(busy)
	must(t, err)
	must(t, put(c, "/with-app-password", []byte("ok")))

	must(t, ts.db.RevokeAppPassword(ctx, u.name, sftpAP.ID))
	if err := put(c, "/after-revoke", []byte("too late")); err == nil {
		t.Fatal("an upload after the revocation succeeded")
	}
	connEnds(t, busy, "the busy app-password session")
	connEnds(t, idle, "the idle app-password session")
	ck, err := sftp.NewClient(byKey)
	must(t, err)
	must(t, put(ck, "/by-key", []byte("ok")))

	// A new app password, then an admin's reset of 2FA ends its session.
	_, pw2, err := ts.db.AddAppPassword(ctx, u.name, "second", []string{users.ProtoSFTP, users.ProtoWebDAV})
	must(t, err)
	s2 := ts.dialAs(u, ssh.Password(pw2))
	must(t, ts.db.ResetTwoFactor(ctx, u.name))
	connEnds(t, s2, "the app-password session after the 2FA reset")
	must(t, put(ck, "/by-key-2", []byte("ok")))
}
