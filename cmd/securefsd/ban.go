package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/securefsd/securefsd/internal/shares"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/users"
)

// loginSafelistFlag is serve's --login-safelist (in serveFlags).
var loginSafelistFlag = altsrc.NewStringFlag(&cli.StringFlag{
	Name:    "login-safelist",
	Usage:   "comma-separated addresses or CIDR networks never banned by the login defender (by address or by user name); their failures still count against the name",
	EnvVars: []string{"SECUREFSD_LOGIN_SAFELIST"},
})

// parseSafelist reads "CIDR,ADDR,..." (a bare address is its own /32 or
// /128), the same list form as a share link's --allow-from.
func parseSafelist(s string) ([]netip.Prefix, error) {
	out, err := shares.ParseCIDRs(s)
	if err != nil {
		return nil, fmt.Errorf("--login-safelist: %w", err)
	}
	return out, nil
}

// banCommand lists and lifts the running server's login bans. Bans live
// in the server's memory: without a running server there are none.
func (e *env) banCommand() *cli.Command {
	return &cli.Command{
		Name:  "ban",
		Usage: "list or lift login bans of the running server",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list active bans (addresses and user names)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				Action: func(c *cli.Context) error {
					m, err := e.banManager(c)
					var bans []users.Ban
					switch {
					case errors.Is(err, admin.ErrNoServer):
						fmt.Fprintln(e.stderr, "no server is running: bans live in its memory, so there are none")
					case err != nil:
						return err
					default:
						if bans, err = m.ListBans(c.Context); err != nil {
							return err
						}
					}
					if c.Bool("json") {
						if bans == nil {
							bans = []users.Ban{}
						}
						enc := json.NewEncoder(e.stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(bans)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "KIND\tWHO\tUNTIL")
					for _, b := range bans {
						who := b.Who
						if b.Kind == "user" {
							who = "user:" + who
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Kind, who, b.Until.Local().Format(time.DateTime))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "del",
				Usage:     "lift the ban of an address (IPv6: its /64) or of a user name",
				ArgsUsage: "ADDRESS|user:NAME",
				Action: func(c *cli.Context) error {
					who, err := oneArg(c, "ADDRESS or user:NAME")
					if err != nil {
						return err
					}
					m, err := e.banManager(c)
					if errors.Is(err, admin.ErrNoServer) {
						return errors.New("no server is running: bans live in its memory, so there is none to lift")
					}
					if err != nil {
						return err
					}
					if err := m.Unban(c.Context, who); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "ban of %s lifted\n", who)
					return nil
				},
			},
		},
	}
}

// banManager reaches the running server's admin socket (admin.ErrNoServer
// when none runs).
func (e *env) banManager(c *cli.Context) (admin.BanManager, error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, err
	}
	return admin.Dial(dir)
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("want exactly one argument: %s", what)
	}
	return c.Args().First(), nil
}
