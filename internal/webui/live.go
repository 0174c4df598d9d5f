package webui

import (
	"context"
	"time"

	"github.com/securefsd/securefsd/internal/etcdsess"
)

// SessionInfo describes one live browser session (`securefsd session
// list`, the admin page).
type SessionInfo struct {
	ID       string // as in audit records: "web-" and a prefix of the cookie's hash
	User     string
	Remote   string // the address that signed in
	Start    time.Time
	LastSeen time.Time
	Node     string // in a cluster, the node that signed it in
}

// Sessions lists the browser sessions that have not expired (in a
// cluster, every node's).
func (ui *UI) Sessions(ctx context.Context) ([]SessionInfo, error) {
	if ui.opts.Shared != nil {
		return ui.sharedSessions(ctx)
	}
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
	return out, nil
}

// KillSession ends the browser session id (its next request goes to the
// sign-in page); false if there is none.
func (ui *UI) KillSession(ctx context.Context, id string) (bool, error) {
	if ui.opts.Shared != nil {
		n, err := ui.endShared(ctx, "killed", func(ws etcdsess.WebSession) bool { return ws.ID == id })
		return n > 0, err
	}
	ui.mu.Lock()
	var ended []endedSession
	for k := range ui.sessions {
		if sessionID(k) == id {
			ended = append(ended, ui.endLocked(k, "killed"))
		}
	}
	ui.mu.Unlock()
	ui.recordEnded(ended)
	return len(ended) > 0, nil
}

// KillUserSessions ends every browser session of user.
func (ui *UI) KillUserSessions(ctx context.Context, user string) (int, error) {
	return ui.endUserSessions(ctx, user, "killed")
}
