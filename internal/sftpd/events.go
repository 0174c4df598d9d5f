package sftpd

// The stable "event" attribute of log lines tests and alerts match on
// (messages may be reworded, events stay).
const (
	// eventSSHLoginFailed: one per connection that ended without a login
	// (users logs each failed attempt as users.EventLoginFailed).
	eventSSHLoginFailed    = "ssh_login_failed"
	eventClosedBeforeLogin = "closed_before_login"
	eventSessionStart      = "session_start"
	eventSessionEnd        = "session_end"
	// eventRevoked: the connection was closed because the user's record
	// changed (disabled, deleted, credentials changed).
	eventRevoked = "access_revoked"
)
