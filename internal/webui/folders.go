package webui

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/users"
)

// The access page of a shared folder (issue 16): every member sees who
// has access; a member whose grant includes manage grants and revokes
// there. The folder's record is read, and the member's rights re-checked,
// at every request: a member who lost manage (or the folder) a moment ago
// is refused. Same session, CSRF and same-origin rules as every page.

func parseAccessPage() (*template.Template, error) {
	return template.New("access.html").ParseFS(assetFS, "assets/layout.html", "assets/access.html")
}

type grantRow struct{ To, Perms, Members string }

type accessPage struct {
	base
	Folder, Path, FilesURL, Mine string
	Grants                       []grantRow
	CanManage                    bool
}

// memberOf returns the signed-in user's access to folder, or false when
// they have none (then the folder is "not found", like one that does not
// exist).
func (ui *UI) memberOf(r *http.Request, s *sessionView, folder string) (users.FolderAccess, bool, error) {
	acc, err := ui.opts.Users.Access(r.Context(), s.user.Name)
	if err != nil {
		return users.FolderAccess{}, false, err
	}
	for _, a := range acc {
		if a.Folder == folder {
			return a, true, nil
		}
	}
	return users.FolderAccess{}, false, nil
}

func (ui *UI) sharedPrefix() string { return ui.opts.Store.SharedPrefix() }

func folderArg(name string) string { return strings.TrimPrefix(name, "/") }

func (ui *UI) handleAccess(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	folder := folderArg(name)
	a, ok, err := ui.memberOf(r, s, folder)
	if err == nil && ok {
		var f users.Folder
		if f, err = ui.opts.Users.GetFolder(r.Context(), folder); err == nil {
			mount := "/" + ui.sharedPrefix() + "/" + folder
			p := accessPage{base: ui.base("Access to "+folder, s), Folder: folder, Path: mount,
				FilesURL: ui.opts.Prefix + "files" + escapePath(mount) + "/", Mine: rightsText(a.Perms, a.Manage), CanManage: a.Manage}
			p.Flash = ui.takeFlash(s.key)
			members := map[string]string{} // "@group" -> its members, for "who has access"
			if gs, gerr := ui.opts.Users.Groups(r.Context()); gerr == nil {
				for _, g := range gs {
					members[users.GroupPrefix+g.Name] = strings.Join(g.Members, ", ")
				}
			}
			for _, g := range f.Grants {
				p.Grants = append(p.Grants, grantRow{To: g.To, Perms: rightsText(g.Perms, g.Manage), Members: members[g.To]})
			}
			ui.render(w, r, ui.accessPage, http.StatusOK, p)
			return
		}
	}
	ui.accessFailed(w, r, s, ok, err)
}

func rightsText(p users.Perm, manage bool) string {
	t := p.String()
	if manage {
		if t == "" {
			return "manage"
		}
		t += ", manage"
	}
	return strings.ReplaceAll(t, ",", ", ")
}

func (ui *UI) accessFailed(w http.ResponseWriter, r *http.Request, s *sessionView, member bool, err error) {
	switch {
	case err == nil && !member, errors.Is(err, users.ErrNotFound):
		ui.renderError(w, r, s, http.StatusNotFound, "There is no such shared folder.")
	case errors.Is(err, users.ErrInvalid):
		ui.renderError(w, r, s, http.StatusBadRequest, "That grant is not understood: name an existing user or @group, and rights such as ro, all or list,download,manage.")
	case err == nil:
		ui.renderError(w, r, s, http.StatusForbidden, "Only members who manage this folder may change who has access.")
	default:
		ui.log.Error("webui: folder access", "user", s.user.Name, "err", err)
		ui.renderError(w, r, s, http.StatusInternalServerError, "The folder's access could not be read or changed.")
	}
}

// handleGrant gives a user or group rights on the folder (manage needed).
func (ui *UI) handleGrant(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	folder := folderArg(name)
	a, ok, err := ui.memberOf(r, s, folder)
	if err != nil || !ok || !a.Manage {
		ui.accessFailed(w, r, s, ok, err)
		return
	}
	to := strings.TrimSpace(r.PostForm.Get("to"))
	p, manage, err := users.ParseGrantPerms(r.PostForm.Get("perms"))
	if err == nil {
		err = ui.opts.Users.SetGrant(r.Context(), folder, to, p, manage)
	}
	ui.auditChange(r, s, audit.OpFolderGrant, grantee(to), fmt.Sprintf("folder=%s to=%s perms=%s manage=%t", folder, to, p, manage), err)
	ui.log.Info("webui: folder grant", "event", users.EventFolderGrant, "user", s.user.Name, "folder", folder, "to", to, "perms", p.String(), "manage", manage, "err", err)
	if err != nil {
		ui.accessFailed(w, r, s, true, err)
		return
	}
	ui.setFlash(s.key, "Access granted to "+to+".")
	http.Redirect(w, r, ui.opts.Prefix+"access/"+folder, http.StatusSeeOther)
}

// handleUngrant removes a user's or group's grant (manage needed).
func (ui *UI) handleUngrant(w http.ResponseWriter, r *http.Request, s *sessionView, name string) {
	folder, to, _ := strings.Cut(folderArg(name), "/")
	a, ok, err := ui.memberOf(r, s, folder)
	if err != nil || !ok || !a.Manage {
		ui.accessFailed(w, r, s, ok, err)
		return
	}
	err = ui.opts.Users.Revoke(r.Context(), folder, to)
	ui.auditChange(r, s, audit.OpFolderRevoke, grantee(to), fmt.Sprintf("folder=%s to=%s", folder, to), err)
	ui.log.Info("webui: folder revoke", "event", users.EventFolderRevoke, "user", s.user.Name, "folder", folder, "to", to, "err", err)
	if err != nil {
		ui.accessFailed(w, r, s, true, err)
		return
	}
	ui.setFlash(s.key, "Access of "+to+" revoked.")
	http.Redirect(w, r, ui.opts.Prefix+"access/"+folder, http.StatusSeeOther)
}

// grantee is an audit record's user for a grant to `to`: the user, or ""
// for a group (its name is in the record's detail).
func grantee(to string) string {
	if strings.HasPrefix(to, users.GroupPrefix) {
		return ""
	}
	return to
}
