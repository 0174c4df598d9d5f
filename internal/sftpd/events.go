package sftpd

// The stable "event" attribute of log lines tests and alerts match on
// (messages may be reworded, events stay).
const (
	// eventSSHLoginFailed: one per connection that ended without a login
	// (users logs each failed attempt as users.EventLoginFailed).
	eventSSHLoginFailed    = "ssh_login_failed"
	eventClosedBeforeLogin = "closed_before_login"
)
