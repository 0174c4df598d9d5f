package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/etcdsess"
	"github.com/securefsd/securefsd/internal/sftpd"
	"github.com/securefsd/securefsd/internal/webui"
)

// sessionHub gathers the running server's live sessions from the
// protocols that hold them (SSH, the browser) for the admin socket and the
// admin page. Servers register as they start. On a cluster node it also
// lists and ends other nodes' SSH sessions through the registry in etcd
// (cluster); browser sessions are the cluster's already (webui.Options.Shared).
type sessionHub struct {
	mu      sync.Mutex
	ssh     *sftpd.Server
	web     *webui.UI
	cluster *etcdsess.Store // nil on one server
}

func (h *sessionHub) addSSH(s *sftpd.Server) { h.mu.Lock(); h.ssh = s; h.mu.Unlock() }
func (h *sessionHub) addWeb(u *webui.UI)     { h.mu.Lock(); h.web = u; h.mu.Unlock() }

func (h *sessionHub) servers() (*sftpd.Server, *webui.UI) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ssh, h.web
}

func (h *sessionHub) registry() *etcdsess.Store {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cluster
}

// liveInterval is how often a cluster node publishes its live sessions
// (only what changed) for other nodes' `session list`.
const liveInterval = time.Second

// serveLiveSessions, on a cluster node, publishes this node's live
// sessions in the registry and answers other nodes' kill requests.
func serveLiveSessions(core serverCore) error {
	reg := core.remote.liveSessions()
	if reg == nil {
		return nil
	}
	core.sessions.mu.Lock()
	core.sessions.cluster = reg
	core.sessions.mu.Unlock()
	if err := reg.Serve(core.sessions.live, liveInterval, core.sessions.killLocal); err != nil {
		return fmt.Errorf("cluster: session registry: %w", err)
	}
	return nil
}

// live is this node's SSH sessions, for the registry.
func (h *sessionHub) live() []etcdsess.LiveSession {
	ssh, _ := h.servers()
	if ssh == nil {
		return nil
	}
	var out []etcdsess.LiveSession
	for _, s := range ssh.Sessions() {
		out = append(out, etcdsess.LiveSession{ID: s.ID, User: s.User, Proto: "ssh", Remote: s.Remote, Start: s.Start, Bytes: s.Bytes, Current: s.Current})
	}
	return out
}

// killLocal ends this node's SSH sessions a kill request names (another
// node's `session kill`).
func (h *sessionHub) killLocal(req etcdsess.KillRequest) int {
	ssh, _ := h.servers()
	switch {
	case ssh == nil:
		return 0
	case req.ID != "":
		if ssh.KillSession(req.ID) {
			return 1
		}
		return 0
	case req.User != "":
		return ssh.KillUserSessions(req.User)
	}
	return 0
}

// Sessions implements admin.SessionSource: this node's SSH sessions,
// other nodes' from the registry, and the browser sessions.
func (h *sessionHub) Sessions(ctx context.Context) ([]admin.SessionInfo, error) {
	ssh, web := h.servers()
	reg := h.registry()
	var out []admin.SessionInfo
	if ssh != nil {
		for _, s := range h.live() {
			out = append(out, admin.SessionInfo{ID: s.ID, User: s.User, Proto: "ssh", Remote: s.Remote, Start: s.Start, Bytes: s.Bytes, Current: s.Current,
				Node: reg.Node()})
		}
	}
	if reg != nil {
		others, err := reg.ListLive(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range others {
			if !s.Self { // this node's own, listed fresher above
				out = append(out, admin.SessionInfo{ID: s.ID, User: s.User, Proto: s.Proto, Remote: s.Remote, Start: s.Start, Bytes: s.Bytes, Current: s.Current, Node: s.Node})
			}
		}
	}
	if web != nil {
		ws, err := web.Sessions(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range ws {
			out = append(out, admin.SessionInfo{ID: s.ID, User: s.User, Proto: "web", Remote: s.Remote, Start: s.Start, Node: s.Node})
		}
	}
	return out, nil
}

// KillSession implements admin.SessionSource: a session of this node, a
// browser session, or one another node ends on request.
func (h *sessionHub) KillSession(ctx context.Context, id string) (bool, error) {
	ssh, web := h.servers()
	if ssh != nil && ssh.KillSession(id) {
		return true, nil
	}
	if web != nil {
		if ok, err := web.KillSession(ctx, id); ok || err != nil {
			return ok, err
		}
	}
	reg := h.registry()
	if reg == nil {
		return false, nil
	}
	n, err := reg.Kill(ctx, etcdsess.KillRequest{ID: id})
	return n > 0, err
}

// KillUserSessions implements admin.SessionSource.
func (h *sessionHub) KillUserSessions(ctx context.Context, user string) (int, error) {
	ssh, web := h.servers()
	n := 0
	if ssh != nil {
		n += ssh.KillUserSessions(user)
	}
	if web != nil {
		k, err := web.KillUserSessions(ctx, user)
		n += k
		if err != nil {
			return n, err
		}
	}
	if reg := h.registry(); reg != nil {
		k, err := reg.Kill(ctx, etcdsess.KillRequest{User: user})
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
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
					// A cluster's sessions say which node serves them.
					clustered := slices.ContainsFunc(ss, func(s admin.SessionInfo) bool { return s.Node != "" })
					node := func(s admin.SessionInfo) string {
						if clustered {
							return "\t" + dash(s.Node)
						}
						return ""
					}
					head := "ID\tUSER\tPROTO\tREMOTE\tSTART\tBYTES\tCURRENT"
					if clustered {
						head += "\tNODE"
					}
					fmt.Fprintln(tw, head)
					for _, s := range ss {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s%s\n", s.ID, s.User, s.Proto, dash(s.Remote), s.Start.Local().Format(time.DateTime), s.Bytes, dash(s.Current), node(s))
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
