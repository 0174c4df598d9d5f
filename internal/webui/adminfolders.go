package webui

import (
	"context"
	"net/url"
	"strings"

	"github.com/securefsd/securefsd/internal/admin"
)

// The admin page's shared folders and groups: the same operations as
// `securefsd folder` and `securefsd group` (admin.FolderManager), so a
// grant or a removed member takes effect at the next request of every open
// session, as from the command line.
//
// Actions: folder-add (name, quota, quota_files), folder-delete (name,
// purge), folder-grant (name, to, perms), folder-revoke (name, to),
// group-add (name), group-delete (name), group-members (name, add, del:
// comma-separated user names).

type adminGrantRow struct {
	To, Rights string
}

type adminFolderRow struct {
	Name, Quota string
	Grants      []adminGrantRow
}

type adminGroupRow struct {
	Name, Members string
}

// fillFolders adds the folders and groups tables to p.
func (ui *UI) fillFolders(ctx context.Context, p *adminPage) error {
	m := ui.accounts.opts.Accounts
	fs, err := m.ListFolders(ctx)
	if err != nil {
		return err
	}
	for _, f := range fs {
		row := adminFolderRow{Name: f.Name, Quota: "none"}
		if f.QuotaBytes > 0 {
			row.Quota = humanSize(f.QuotaBytes)
		}
		for _, g := range f.Grants {
			row.Grants = append(row.Grants, adminGrantRow{To: g.To, Rights: rightsText(g.Perms, g.Manage)})
		}
		p.Folders = append(p.Folders, row)
	}
	gs, err := m.ListGroups(ctx)
	if err != nil {
		return err
	}
	for _, g := range gs {
		p.Groups = append(p.Groups, adminGroupRow{Name: g.Name, Members: strings.Join(g.Members, ", ")})
	}
	return nil
}

// folderAction runs one of the folder and group actions; ok is false for
// an action that is not one of them.
func (ui *UI) folderAction(ctx context.Context, action string, f url.Values) (msg string, attrs []any, err error, ok bool) {
	m := ui.accounts.opts.Accounts
	name := strings.TrimSpace(f.Get("name"))
	to := strings.TrimSpace(f.Get("to"))
	switch action {
	case "folder-add":
		req := admin.FolderRequest{Name: name}
		if req.QuotaBytes, err = parseQuota(f.Get("quota")); err != nil {
			break
		}
		err = m.AddFolder(ctx, req)
		msg = "Shared folder " + name + " added; grant access to users or groups below."
		attrs = []any{"folder", name, "quota", req.QuotaBytes}
	case "folder-delete":
		purge := f.Get("purge") != ""
		err = m.DeleteFolder(ctx, name, purge)
		msg = "Shared folder " + name + " deleted."
		if !purge {
			msg += " Its files are kept in the store."
		}
		attrs = []any{"folder", name, "purge", purge}
	case "folder-grant":
		perms := strings.TrimSpace(f.Get("perms"))
		err = m.Grant(ctx, name, to, perms)
		msg = "Access to " + name + " granted to " + to + "."
		attrs = []any{"folder", name, "to", to, "perms", perms}
	case "folder-revoke":
		err = m.Revoke(ctx, name, to)
		msg = "Access of " + to + " to " + name + " revoked."
		attrs = []any{"folder", name, "to", to}
	case "group-add":
		err = m.AddGroup(ctx, name)
		msg = "Group " + name + " added."
		attrs = []any{"group", name}
	case "group-delete":
		err = m.DeleteGroup(ctx, name)
		msg = "Group " + name + " deleted, with its grants."
		attrs = []any{"group", name}
	case "group-members":
		add, del := splitNames(f.Get("add")), splitNames(f.Get("del"))
		err = m.SetMembers(ctx, name, add, del)
		msg = "Members of " + name + " changed."
		attrs = []any{"group", name, "added", add, "removed", del}
	default:
		return "", nil, nil, false
	}
	return msg, attrs, err, true
}

// splitNames reads "alice, bob,carol" as a list, without empty entries.
func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
