package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

func inviteManager(m admin.Manager) (admin.InviteManager, error) {
	return optional[admin.InviteManager](m, "invitations")
}

func (e *env) inviteCommand() *cli.Command {
	return &cli.Command{
		Name:  "invite",
		Usage: "manage one-time sign-up links (serve --signup invite) (works while the server runs)",
		Subcommands: e.mgmtCommands(
			mgmtCmd{
				name: "create", usage: "create an invitation and print its one-time sign-up link",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "expires", Value: "7d", Usage: "lifetime, e.g. 7d, 12h; 0 = never"},
					&cli.StringFlag{Name: "perms", Usage: "rights of the account, comma-separated (default: all)"},
					&cli.BoolFlag{Name: "read-only", Usage: "the account may list and download only"},
					&cli.StringFlag{Name: "quota", Usage: "byte quota of the account, e.g. 10G (default: none)"},
					&cli.Int64Flag{Name: "quota-files", Usage: "file count quota of the account (default: none)"},
					&cli.StringFlag{Name: "group", Usage: "a group the account joins (and so gets the group's shared folders)"},
					publicURLFlag(linkBaseUsage),
					davAddrFlag(),
				},
				prepare: e.prepareInvite,
			},
			mgmtCmd{
				name: "list", usage: "list invitations (open, used, expired)",
				flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				run:   e.listInvites,
			},
			mgmtCmd{
				name: "revoke", usage: "delete an invitation (its link stops working)", args: "ID",
				run: with("invitations", func(c *cli.Context, im admin.InviteManager, a []string) error {
					if err := im.RevokeInvite(c.Context, a[0]); err != nil {
						return err
					}
					return e.printf("revoked invitation %s\n", a[0])
				}),
			},
		),
	}
}

// prepareInvite checks the flags before the manager opens.
func (e *env) prepareInvite(c *cli.Context, _ []string) (prepared, error) {
	req := admin.InviteRequest{Expires: c.String("expires"), Perms: c.String("perms"), ReadOnly: c.Bool("read-only"),
		QuotaFiles: c.Int64("quota-files"), Group: c.String("group")}
	if _, err := shares.ParseTTL(req.Expires); err != nil {
		return prepared{}, fmt.Errorf("--expires: %w", err)
	}
	if req.Perms != "" {
		if _, err := users.ParsePerm(req.Perms); err != nil {
			return prepared{}, fmt.Errorf("--perms: %w", err)
		}
	}
	if q := c.String("quota"); q != "" {
		var err error
		if req.QuotaBytes, err = parseSize(q); err != nil {
			return prepared{}, fmt.Errorf("--quota: %w", err)
		}
	}
	if _, err := linkBase(c, ""); err != nil {
		return prepared{}, err
	}
	return prepared{run: func(m admin.Manager) error {
		im, err := inviteManager(m)
		if err != nil {
			return err
		}
		res, err := im.CreateInvite(c.Context, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "invitation %s: %s%s\n", res.Invite.ID, res.Invite.Perms, describeInvite(res.Invite))
		base, _ := linkBase(c, res.BaseURL) // checked above
		return e.printf("%s/ui/signup?token=%s\n", base, res.Token)
	}}, nil
}

func describeInvite(iv shares.Invite) string {
	var parts []string
	if iv.QuotaBytes > 0 {
		parts = append(parts, "quota "+formatSize(iv.QuotaBytes))
	}
	if iv.QuotaFiles > 0 {
		parts = append(parts, fmt.Sprintf("max %d files", iv.QuotaFiles))
	}
	if iv.Group != "" {
		parts = append(parts, "group "+iv.Group)
	}
	if !iv.Expires.IsZero() {
		parts = append(parts, "expires "+iv.Expires.Local().Format(time.DateTime))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (e *env) listInvites(c *cli.Context, m admin.Manager, _ []string) error {
	im, err := inviteManager(m)
	if err != nil {
		return err
	}
	ivs, err := im.ListInvites(c.Context)
	if err != nil {
		return err
	}
	now := time.Now()
	if c.Bool("json") {
		type row struct {
			shares.Invite
			State string `json:"state"`
		}
		rows := []row{}
		for _, iv := range ivs {
			rows = append(rows, row{iv, iv.State(now)})
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPERMS\tGROUP\tQUOTA\tEXPIRES\tUSED BY\tCREATED BY")
	for _, iv := range ivs {
		quota := "-"
		if iv.QuotaBytes > 0 {
			quota = formatSize(iv.QuotaBytes)
		}
		exp := "never"
		if !iv.Expires.IsZero() {
			exp = iv.Expires.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", iv.ID, iv.State(now), iv.Perms, dash(iv.Group), quota, exp, dash(iv.UsedBy), dash(iv.CreatedBy))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
