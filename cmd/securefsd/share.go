package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/shares"
)

func shareManager(m admin.Manager) (admin.ShareManager, error) {
	return optional[admin.ShareManager](m, "share links")
}

// shareBaseURL is where printed links point: --public-url, else the
// configured WebDAV address over https.
func shareBaseURL(c *cli.Context) string {
	if u := c.String("public-url"); u != "" {
		return strings.TrimRight(u, "/")
	}
	addr := c.String("dav-addr")
	if addr == "" {
		addr = "127.0.0.1:8443"
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("localhost", port)
	}
	return "https://" + addr
}

func (e *env) shareCommand() *cli.Command {
	return &cli.Command{
		Name:  "share",
		Usage: "manage share links: a file or folder for people without an account (works while the server runs)",
		Subcommands: e.mgmtCommands(
			mgmtCmd{
				name: "create", usage: "create a link to a file or folder of a user's home and print it", args: "USER PATH",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "expires", Usage: "lifetime, e.g. 7d, 12h (default: never)"},
					&cli.Int64Flag{Name: "max-downloads", Usage: "the link dies after this many completed downloads (default: no cap)"},
					passwordStdinFlag(),
					&cli.BoolFlag{Name: "upload-only", Usage: "a file request: outsiders drop files into the folder, cannot list or download"},
					&cli.StringFlag{Name: "allow-from", Usage: "comma-separated addresses or CIDR ranges the link works from (default: any)"},
					&cli.StringFlag{Name: "public-url", Usage: "base URL printed links start with (default: https:// and --dav-addr)", EnvVars: []string{"SECUREFSD_PUBLIC_URL"}},
					&cli.StringFlag{Name: "dav-addr", Hidden: true, EnvVars: []string{"SECUREFSD_DAV_ADDR"}},
				},
				prepare: e.prepareShare,
			},
			mgmtCmd{
				name: "list", usage: "list share links",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "user", Usage: "only this user's links"},
					&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"},
				},
				run: e.listShares,
			},
			mgmtCmd{
				name: "revoke", usage: "delete a share link (it answers 404 from now on)", args: "ID",
				run: with("share links", func(c *cli.Context, s admin.ShareManager, a []string) error {
					if err := s.RevokeShare(c.Context, a[0]); err != nil {
						return err
					}
					return e.printf("revoked link %s\n", a[0])
				}),
			},
		),
	}
}

// prepareShare checks the flags and reads the password before the manager
// opens.
func (e *env) prepareShare(c *cli.Context, a []string) (prepared, error) {
	req := admin.ShareRequest{User: a[0], Path: a[1], Expires: c.String("expires"), MaxDownloads: c.Int64("max-downloads"), UploadOnly: c.Bool("upload-only")}
	if _, err := shares.ParseTTL(req.Expires); err != nil {
		return prepared{}, fmt.Errorf("--expires: %w", err)
	}
	if f := c.String("allow-from"); f != "" {
		if _, err := shares.ParseCIDRs(f); err != nil {
			return prepared{}, fmt.Errorf("--allow-from: %w", err)
		}
		req.AllowFrom = strings.Split(f, ",")
	}
	if c.Bool("password-stdin") {
		var err error
		if req.Password, err = e.readPassword(c); err != nil {
			return prepared{}, err
		}
	}
	base := shareBaseURL(c)
	return prepared{secret: req.Password, run: func(m admin.Manager) error {
		s, err := shareManager(m)
		if err != nil {
			return err
		}
		res, err := s.CreateShare(c.Context, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "link %s: %s %s of %s%s\n", res.Link.ID, res.Link.Kind, res.Link.Path, res.Link.Owner, describeShare(res.Link))
		return e.printf("%s/s/%s\n", base, res.Token)
	}}, nil
}

func describeShare(l shares.Public) string {
	var parts []string
	if l.UploadOnly {
		parts = append(parts, "upload-only")
	}
	if !l.Expires.IsZero() {
		parts = append(parts, "expires "+l.Expires.Local().Format(time.DateTime))
	}
	if l.MaxDownloads > 0 {
		parts = append(parts, fmt.Sprintf("max %d downloads", l.MaxDownloads))
	}
	if l.Password {
		parts = append(parts, "password")
	}
	if len(l.AllowFrom) > 0 {
		parts = append(parts, fmt.Sprintf("from %v", l.AllowFrom))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (e *env) listShares(c *cli.Context, m admin.Manager, _ []string) error {
	s, err := shareManager(m)
	if err != nil {
		return err
	}
	ls, err := s.ListShares(c.Context, c.String("user"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if ls == nil {
			ls = []shares.Public{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ls)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tKIND\tPATH\tDOWNLOADS\tEXPIRES\tOPTIONS")
	for _, l := range ls {
		kind := string(l.Kind)
		if l.UploadOnly {
			kind = "upload"
		}
		dl := fmt.Sprint(l.Downloads)
		if l.MaxDownloads > 0 {
			dl += fmt.Sprintf("/%d", l.MaxDownloads)
		}
		exp := "never"
		if !l.Expires.IsZero() {
			exp = l.Expires.Local().Format(time.DateTime)
		}
		var opts []string
		if l.Password {
			opts = append(opts, "password")
		}
		for _, p := range l.AllowFrom {
			opts = append(opts, p.String())
		}
		o := strings.Join(opts, ",")
		if o == "" {
			o = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.Owner, kind, l.Path, dl, exp, o)
	}
	return tw.Flush()
}
