package webui

import "time"

// SessionInfo describes one live browser session (`securefsd session
// list`, the admin page).
type SessionInfo struct {
	ID       string // as in audit records: "web-" and a prefix of the cookie's hash
	User     string
	Remote   string // the address that signed in
	Start    time.Time
	LastSeen time.Time
}

// Sessions lists the browser sessions that have not expired.
func (ui *UI) Sessions() []SessionInfo {
	now := ui.now()
	ui.mu.Lock()
	defer ui.mu.Unlock()
	var out []SessionInfo
	for k, s := range ui.sessions {
		if ui.expiredLocked(s, now) {
			continue
		}
		out = append(out, SessionInfo{ID: sessionID(k), User: s.user.Name, Remote: s.remote, Start: s.created, LastSeen: s.lastSeen})
	}
	return out
}

// KillSession ends the browser session id (its next request goes to the
// sign-in page); false if there is none.
func (ui *UI) KillSession(id string) bool {
	ui.mu.Lock()
	var ended []endedSession
	for k := range ui.sessions {
		if sessionID(k) == id {
			ended = append(ended, ui.endLocked(k, "killed"))
		}
	}
	ui.mu.Unlock()
	ui.recordEnded(ended)
	return len(ended) > 0
}

// KillUserSessions ends every browser session of user.
func (ui *UI) KillUserSessions(user string) int { return ui.endUserSessions(user, "killed") }
