package users

// The stable "event" attribute of the log lines that tests, alerts and log
// pipelines match on: messages may be reworded, events stay.
const (
	EventLoginFailed = "login_failed"
	EventBanned      = "login_banned"
	EventBanLifted   = "ban_lifted"
)
