package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/sftpd"
	"github.com/securefsd/securefsd/internal/webui"
)

// sessionHub gathers the running server's live sessions from the
// protocols that hold them (SSH, the browser) for the admin socket and the
// admin page. Servers register as they start.
type sessionHub struct {
	mu  sync.Mutex
	ssh *sftpd.Server
	web *webui.UI
}

func (h *sessionHub) addSSH(s *sftpd.Server) { h.mu.Lock(); h.ssh = s; h.mu.Unlock() }
func (h *sessionHub) addWeb(u *webui.UI)     { h.mu.Lock(); h.web = u; h.mu.Unlock() }

func (h *sessionHub) servers() (*sftpd.Server, *webui.UI) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ssh, h.web
}

// Sessions implements admin.SessionSource.
func (h *sessionHub) Sessions() []admin.SessionInfo {
	ssh, web := h.servers()
	var out []admin.SessionInfo
	if ssh != nil {
		for _, s := range ssh.Sessions() {
			out = append(out, admin.SessionInfo{ID: s.ID, User: s.User, Proto: "ssh", Remote: s.Remote, Start: s.Start, Bytes: s.Bytes, Current: s.Current})
		}
	}
	if web != nil {
		for _, s := range web.Sessions() {
			out = append(out, admin.SessionInfo{ID: s.ID, User: s.User, Proto: "web", Remote: s.Remote, Start: s.Start})
		}
	}
	return out
}

// KillSession implements admin.SessionSource.
func (h *sessionHub) KillSession(id string) bool {
	ssh, web := h.servers()
	return (ssh != nil && ssh.KillSession(id)) || (web != nil && web.KillSession(id))
}

// KillUserSessions implements admin.SessionSource.
func (h *sessionHub) KillUserSessions(user string) int {
	ssh, web := h.servers()
	n := 0
	if ssh != nil {
		n += ssh.KillUserSessions(user)
	}
	if web != nil {
		n += web.KillUserSessions(user)
	}
	return n
}

func (e *env) sessionCommand() *cli.Command {
	return &cli.Command{
		Name:  "session",
		Usage: "list and end the running server's live sessions (SSH connections, browser sessions)",
		Subcommands: e.mgmtCommands(
			mgmtCmd{
				name: "list", usage: "list live sessions: id, user, protocol, address, start, bytes, current file",
				flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				run: with("sessions", func(c *cli.Context, m admin.SessionManager, _ []string) error {
					ss, err := m.ListSessions(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if ss == nil {
							ss = []admin.SessionInfo{}
						}
						enc := json.NewEncoder(e.stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(ss)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tUSER\tPROTO\tREMOTE\tSTART\tBYTES\tCURRENT")
					for _, s := range ss {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.User, s.Proto, dash(s.Remote), s.Start.Local().Format(time.DateTime), s.Bytes, dash(s.Current))
					}
					return tw.Flush()
				}),
			},
			mgmtCmd{
				name: "kill", usage: "end a session (ID) or every session of a user (--user NAME): SSH connections close, browser sessions sign out", args: "[ID]",
				flags: []cli.Flag{&cli.StringFlag{Name: "user", Usage: "end every session of this user"}},
				run:   with("sessions", e.killSessions),
			},
		),
	}
}

func (e *env) killSessions(c *cli.Context, m admin.SessionManager, a []string) error {
	user := c.String("user")
	switch {
	case user != "" && len(a) > 0 && a[0] != "":
		return errors.New("an ID or --user, not both")
	case user != "":
		n, err := m.KillUserSessions(c.Context, user)
		if err != nil {
			return err
		}
		return e.printf("ended %d session(s) of %s\n", n, user)
	case len(a) == 0 || a[0] == "":
		return errors.New("give a session ID (see `securefsd session list`) or --user NAME")
	}
	if err := m.KillSession(c.Context, a[0]); err != nil {
		return err
	}
	return e.printf("ended session %s\n", a[0])
}
