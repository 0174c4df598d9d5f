package webui

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The admin page's live sessions: the running server's SSH connections
// and browser sessions (admin.SessionManager, as `securefsd session
// list`), each with a button that ends it (session-kill, field id).

type adminSessionRow struct {
	ID, User, Proto, Remote, Start, Bytes, Current, Node string
	Self                                                 bool // the admin's own browser session
}

func (ui *UI) fillSessions(ctx context.Context, p *adminPage, self string) error {
	ss, err := ui.accounts.opts.Accounts.ListSessions(ctx)
	if err != nil {
		return err
	}
	for _, s := range ss {
		row := adminSessionRow{ID: s.ID, User: s.User, Proto: s.Proto, Remote: s.Remote, Start: s.Start.Local().Format(time.DateTime),
			Current: s.Current, Node: s.Node, Self: s.ID == self}
		p.SessionNodes = p.SessionNodes || s.Node != ""
		if s.Proto == "ssh" {
			row.Bytes = strconv.FormatInt(s.Bytes, 10)
		}
		p.Sessions = append(p.Sessions, row)
	}
	return nil
}

// sessionAction ends a session; ok is false for another action.
func (ui *UI) sessionAction(ctx context.Context, action string, f url.Values) (msg string, attrs []any, err error, ok bool) {
	if action != "session-kill" {
		return "", nil, nil, false
	}
	id := strings.TrimSpace(f.Get("id"))
	err = ui.accounts.opts.Accounts.KillSession(ctx, id)
	return "Session " + id + " ended.", []any{"session", id}, err, true
}
