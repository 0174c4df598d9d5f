package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/users"
)

// withFolders adapts a FolderManager operation to a mgmtCmd's run.
func withFolders(fn func(c *cli.Context, f admin.FolderManager, a []string) error) func(*cli.Context, admin.Manager, []string) error {
	return with("shared folders", fn)
}

func (e *env) folderCommand() *cli.Command {
	return &cli.Command{
		Name:  "folder",
		Usage: "manage shared folders: trees several users work in, at /Shared/NAME in their view (works while the server runs)",
		Subcommands: e.mgmtCommands(
			mgmtCmd{
				name: "add", usage: "add a shared folder", args: "NAME",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "quota", Usage: "byte quota of the folder, e.g. 10G (default: none)"},
					&cli.Int64Flag{Name: "quota-files", Usage: "file count quota of the folder (default: none)"},
				},
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					req := admin.FolderRequest{Name: a[0], QuotaFiles: c.Int64("quota-files")}
					if c.IsSet("quota") {
						q, err := parseSize(c.String("quota"))
						if err != nil {
							return fmt.Errorf("--quota: %w", err)
						}
						req.QuotaBytes = q
					}
					if req.QuotaFiles < 0 {
						return errors.New("--quota-files: negative")
					}
					if err := f.AddFolder(c.Context, req); err != nil {
						return err
					}
					return e.printf("added folder %s\n", a[0])
				}),
			},
			mgmtCmd{
				name: "del", usage: "delete a shared folder: every member loses it at once; --purge also removes its files (run again to resume)", args: "NAME",
				flags: []cli.Flag{&cli.BoolFlag{Name: "purge", Usage: "also delete the folder's files"}},
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					if err := f.DeleteFolder(c.Context, a[0], c.Bool("purge")); err != nil {
						return err
					}
					return e.printf("deleted folder %s\n", a[0])
				}),
			},
			mgmtCmd{
				name: "list", usage: "list shared folders and who may reach them",
				flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				run: withFolders(func(c *cli.Context, f admin.FolderManager, _ []string) error {
					fs, err := f.ListFolders(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if fs == nil {
							fs = []users.Folder{}
						}
						return e.printJSON(fs)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "FOLDER\tQUOTA\tQUOTA-FILES\tGRANTS")
					for _, fo := range fs {
						var gs []string
						for _, g := range fo.Grants {
							p := g.Perms.String()
							if g.Manage {
								p += ",manage"
							}
							gs = append(gs, g.To+"="+p)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", fo.Name, quotaText(fo.QuotaBytes), quotaText(fo.QuotaFiles), strings.Join(gs, " "))
					}
					return tw.Flush()
				}),
			},
			mgmtCmd{
				name: "grant", usage: "give a user or @group rights on a folder (replacing their grant); open sessions take them at their next request", args: "NAME USER|@GROUP",
				flags: []cli.Flag{&cli.StringFlag{Name: "perms", Required: true, Usage: "rights, comma-separated: list,download,upload,overwrite,delete,rename,mkdir,chmod, all, ro, plus manage (may grant and revoke others in the browser)"}},
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					if _, _, err := users.ParseGrantPerms(c.String("perms")); err != nil {
						return fmt.Errorf("--perms: %w", err)
					}
					if err := f.Grant(c.Context, a[0], a[1], c.String("perms")); err != nil {
						return err
					}
					return e.printf("granted %s on %s to %s\n", c.String("perms"), a[0], a[1])
				}),
			},
			mgmtCmd{
				name: "revoke", usage: "remove a user's or @group's grant on a folder; their open sessions lose it at their next request", args: "NAME USER|@GROUP",
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					if err := f.Revoke(c.Context, a[0], a[1]); err != nil {
						return err
					}
					return e.printf("revoked %s on %s\n", a[1], a[0])
				}),
			},
		),
	}
}

func (e *env) groupCommand() *cli.Command {
	return &cli.Command{
		Name:  "group",
		Usage: "manage groups of users, for folder grants to @GROUP (works while the server runs)",
		Subcommands: e.mgmtCommands(
			mgmtCmd{
				name: "add", usage: "add an empty group", args: "NAME",
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					if err := f.AddGroup(c.Context, a[0]); err != nil {
						return err
					}
					return e.printf("added group %s\n", a[0])
				}),
			},
			mgmtCmd{
				name: "del", usage: "delete a group and every grant made to it", args: "NAME",
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					if err := f.DeleteGroup(c.Context, a[0]); err != nil {
						return err
					}
					return e.printf("deleted group %s\n", a[0])
				}),
			},
			mgmtCmd{
				name: "members", usage: "add and remove members", args: "NAME",
				flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "add", Usage: "users to add (repeat or comma-separate)"},
					&cli.StringSliceFlag{Name: "del", Usage: "users to remove (repeat or comma-separate)"},
				},
				run: withFolders(func(c *cli.Context, f admin.FolderManager, a []string) error {
					add, del := c.StringSlice("add"), c.StringSlice("del")
					if len(add) == 0 && len(del) == 0 {
						return errors.New("group members: nothing to change (--add, --del)")
					}
					if err := f.SetMembers(c.Context, a[0], add, del); err != nil {
						return err
					}
					return e.printf("changed members of %s\n", a[0])
				}),
			},
			mgmtCmd{
				name: "list", usage: "list groups and their members",
				flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				run: withFolders(func(c *cli.Context, f admin.FolderManager, _ []string) error {
					gs, err := f.ListGroups(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if gs == nil {
							gs = []users.Group{}
						}
						return e.printJSON(gs)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "GROUP\tMEMBERS")
					for _, g := range gs {
						fmt.Fprintf(tw, "%s\t%s\n", g.Name, strings.Join(g.Members, ","))
					}
					return tw.Flush()
				}),
			},
		),
	}
}

func quotaText(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
