package users

// The stable "event" attribute of the log lines that tests, alerts and log
// pipelines match on: messages may be reworded, events stay.
const (
	EventLoginFailed = "login_failed"
	EventBanned      = "login_banned"
	EventBanLifted   = "ban_lifted"
	// EventFolderGrant and EventFolderRevoke: a folder's access changed;
	// the line names the folder, the grantee ("to") and, when a member
	// did it in the browser, the member ("user").
	EventFolderGrant  = "folder_grant"
	EventFolderRevoke = "folder_revoke"
)
