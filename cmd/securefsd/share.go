package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/shares"
)

func shareManager(m admin.Manager) (admin.ShareManager, error) {
	return optional[admin.ShareManager](m, "share links")
}

// publicURLFlag is serve's --public-url and the same setting of the
// commands that print links (share create, invite create): one flag name,
// one environment variable, one key of the config file.
func publicURLFlag(usage string) cli.Flag {
	return altsrc.NewStringFlag(&cli.StringFlag{Name: "public-url", Usage: usage, EnvVars: []string{"SECUREFSD_PUBLIC_URL"}})
}

// linkBaseUsage documents --public-url of the commands that print links.
const linkBaseUsage = "base URL printed links start with (default: the running server's --public-url or address; offline https:// and serve's --dav-addr)"

// davAddrFlag is a hidden --dav-addr for the commands that print links:
// offline, with no --public-url, links point at serve's address (from the
// environment or the config file, like serve's).
func davAddrFlag() cli.Flag {
	return altsrc.NewStringFlag(&cli.StringFlag{Name: "dav-addr", Hidden: true, EnvVars: []string{"SECUREFSD_DAV_ADDR"}})
}

// errPublicURL is a --public-url that is not a base URL.
var errPublicURL = errors.New("want an http:// or https:// URL with a host and no query, e.g. https://files.example.org")

// parsePublicURL checks a --public-url and returns it without a trailing
// slash. A path is kept (a proxy that strips it before passing requests
// on); a user, query or fragment is refused, since links are appended.
func parsePublicURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return "", fmt.Errorf("%q: %w", s, errPublicURL)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// localBaseURL turns a listening URL ("https://0.0.0.0:8443") into one a
// browser on this machine can open: a wildcard host becomes localhost.
func localBaseURL(listening string) string {
	u, err := url.Parse(listening)
	if err != nil {
		return listening
	}
	if host, port, err := net.SplitHostPort(u.Host); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			u.Host = net.JoinHostPort("localhost", port)
		}
	}
	return strings.TrimRight(u.String(), "/")
}

// linkBase is where printed links point: the command's own --public-url
// (flag, environment or config file) if given, else the running server's
// setting (server: the BaseURL of its answer; "" offline), else https://
// and --dav-addr.
func linkBase(c *cli.Context, server string) (string, error) {
	if u := c.String("public-url"); u != "" {
		b, err := parsePublicURL(u)
		if err != nil {
			return "", fmt.Errorf("--public-url: %w", err)
		}
		return b, nil
	}
	if server != "" {
		return server, nil
	}
	addr := c.String("dav-addr")
	if addr == "" {
		addr = "127.0.0.1:8443"
	}
	return localBaseURL("https://" + addr), nil
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
					publicURLFlag(linkBaseUsage),
					davAddrFlag(),
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
	if _, err := linkBase(c, ""); err != nil {
		return prepared{}, err
	}
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
		base, _ := linkBase(c, res.BaseURL) // checked above
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
