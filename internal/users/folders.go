package users

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Shared folders and groups (issue 16). A folder is a tree of its own in
// the store (vfs opens it); here live its record (quota) and its grants:
// to a user ("alice") or to a group ("@staff"). A user's rights on a
// folder are the union of their own grant and their groups' grants
// (Access). Every change bumps the revision, like a user change, so open
// sessions re-read their rights at their next request and a revoked member
// loses the folder at once.
//
// The buckets are created on first write: databases without folders need
// no migration.
var (
	bucketFolders = []byte("folders")
	bucketGroups  = []byte("groups")
)

// GroupPrefix marks a grant's grantee as a group: "@staff".
const GroupPrefix = "@"

// Folder is a shared folder's record.
type Folder struct {
	Name       string    `json:"name"`
	QuotaBytes int64     `json:"quota_bytes,omitempty"`
	QuotaFiles int64     `json:"quota_files,omitempty"`
	Grants     []Grant   `json:"grants,omitempty"` // sorted by To
	Created    time.Time `json:"created"`
}

// Grant gives one user or group (To: "alice" or "@staff") rights on a
// folder. Manage lets them grant and revoke others on it (browser).
type Grant struct {
	To     string `json:"to"`
	Perms  Perm   `json:"perms"`
	Manage bool   `json:"manage,omitempty"`
}

// Group is a named set of users.
type Group struct {
	Name    string    `json:"name"`
	Members []string  `json:"members,omitempty"` // sorted
	Created time.Time `json:"created"`
}

// FolderAccess is one folder a user may reach, with the union of the
// rights their grants give, and the folder's quota.
type FolderAccess struct {
	Folder     string `json:"folder"`
	Perms      Perm   `json:"perms"`
	Manage     bool   `json:"manage,omitempty"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
	QuotaFiles int64  `json:"quota_files,omitempty"`
}

// ParseGrantPerms parses a grant's rights: the user right words (ParsePerm)
// plus "manage".
func ParseGrantPerms(s string) (Perm, bool, error) {
	var rest []string
	manage := false
	for f := range strings.SplitSeq(s, ",") {
		if strings.EqualFold(strings.TrimSpace(f), "manage") {
			manage = true
			continue
		}
		rest = append(rest, f)
	}
	p, err := ParsePerm(strings.Join(rest, ","))
	return p, manage, err
}

// writeTx runs fn in a read-write transaction and bumps the revision when
// fn returns nil: every change of the database (users, folders, groups)
// goes through it, so sessions watching the revision see them all.
func (db *DB) writeTx(ctx context.Context, fn func(tx *txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var rev uint64
	err := db.update(func(tx *txn) error {
		if err := fn(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		rev, _ = getU64(meta, keyRevision)
		rev++
		return putU64(meta, keyRevision, rev)
	})
	if err != nil {
		return err
	}
	db.noteRev(rev)
	return nil
}

func getJSON[T any](b *bucket, name string) (T, error) {
	var v T
	if b == nil {
		return v, ErrNotFound
	}
	raw := b.Get([]byte(name))
	if raw == nil {
		return v, ErrNotFound
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("users: record %q: %w", name, err)
	}
	return v, nil
}

func putJSON(tx *txn, bucket []byte, name string, v any) error {
	b, err := tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("users: record %q: %w", name, err)
	}
	return b.Put([]byte(name), raw)
}

func checkFolderName(kind, name string) error {
	if !validName(name) {
		return fmt.Errorf("users: %s name %q: want 1-64 of [a-z0-9._-], not starting with '.' or '-': %w", kind, name, ErrInvalid)
	}
	return nil
}

// AddFolder stores a new folder record; ErrExists if the name is taken.
func (db *DB) AddFolder(ctx context.Context, f Folder) error {
	if err := checkFolderName("folder", f.Name); err != nil {
		return err
	}
	if f.QuotaBytes < 0 || f.QuotaFiles < 0 {
		return fmt.Errorf("%w: negative quota", ErrInvalid)
	}
	f.Grants = nil
	f.Created = db.now().UTC().Truncate(time.Second)
	err := db.writeTx(ctx, func(tx *txn) error {
		if b := tx.Bucket(bucketFolders); b != nil && b.Get([]byte(f.Name)) != nil {
			return ErrExists
		}
		return putJSON(tx, bucketFolders, f.Name, f)
	})
	if err != nil {
		return fmt.Errorf("users: add folder %s: %w", f.Name, err)
	}
	db.log.Info("users: folder added", "folder", f.Name)
	return nil
}

// DeleteFolder removes a folder's record and so every grant on it (not its
// files: vfs removes those, `folder del --purge`).
func (db *DB) DeleteFolder(ctx context.Context, name string) error {
	if err := checkFolderName("folder", name); err != nil {
		return err
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		b := tx.Bucket(bucketFolders)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("users: delete folder %s: %w", name, err)
	}
	db.log.Info("users: folder deleted", "folder", name)
	return nil
}

// GetFolder returns one folder record.
func (db *DB) GetFolder(ctx context.Context, name string) (Folder, error) {
	if err := ctx.Err(); err != nil {
		return Folder{}, err
	}
	var f Folder
	err := db.view(func(tx *txn) error {
		var err error
		f, err = getJSON[Folder](tx.Bucket(bucketFolders), name)
		return err
	})
	if err != nil {
		return Folder{}, fmt.Errorf("users: folder %s: %w", name, err)
	}
	return f, nil
}

// Folders lists every folder record by name.
func (db *DB) Folders(ctx context.Context) ([]Folder, error) {
	return listJSON[Folder](ctx, db, bucketFolders)
}

// Groups lists every group by name.
func (db *DB) Groups(ctx context.Context) ([]Group, error) {
	return listJSON[Group](ctx, db, bucketGroups)
}

func listJSON[T any](ctx context.Context, db *DB, bucket []byte) ([]T, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []T{}
	err := db.view(func(tx *txn) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("users: record %q: %w", k, err)
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

// SetGrant gives to ("alice" or "@staff", who must exist) the rights p
// (and manage) on folder, replacing a grant they had. A grant with no
// rights and no manage is refused: revoke instead.
func (db *DB) SetGrant(ctx context.Context, folder, to string, p Perm, manage bool) error {
	if err := checkFolderName("folder", folder); err != nil {
		return err
	}
	if p == 0 && !manage {
		return fmt.Errorf("%w: a grant needs at least one right (use revoke to remove one)", ErrInvalid)
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		if err := grantee(tx, to); err != nil {
			return err
		}
		f, err := getJSON[Folder](tx.Bucket(bucketFolders), folder)
		if err != nil {
			return err
		}
		f.Grants = slices.DeleteFunc(f.Grants, func(g Grant) bool { return g.To == to })
		f.Grants = append(f.Grants, Grant{To: to, Perms: p, Manage: manage})
		slices.SortFunc(f.Grants, func(a, b Grant) int { return strings.Compare(a.To, b.To) })
		return putJSON(tx, bucketFolders, folder, f)
	})
	if err != nil {
		return fmt.Errorf("users: grant %s on %s: %w", to, folder, err)
	}
	db.log.Info("users: folder grant set", "event", EventFolderGrant, "folder", folder, "to", to, "perms", p.String(), "manage", manage)
	return nil
}

// Revoke removes to's own grant on folder; ErrNotFound if there is none.
// (A user who is also in a granted group keeps the group's rights.)
func (db *DB) Revoke(ctx context.Context, folder, to string) error {
	if err := checkFolderName("folder", folder); err != nil {
		return err
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		f, err := getJSON[Folder](tx.Bucket(bucketFolders), folder)
		if err != nil {
			return err
		}
		n := len(f.Grants)
		f.Grants = slices.DeleteFunc(f.Grants, func(g Grant) bool { return g.To == to })
		if len(f.Grants) == n {
			return ErrNotFound
		}
		return putJSON(tx, bucketFolders, folder, f)
	})
	if err != nil {
		return fmt.Errorf("users: revoke %s on %s: %w", to, folder, err)
	}
	db.log.Info("users: folder grant revoked", "event", EventFolderRevoke, "folder", folder, "to", to)
	return nil
}

// grantee checks that a grant's target exists.
func grantee(tx *txn, to string) error {
	if g, ok := strings.CutPrefix(to, GroupPrefix); ok {
		if err := checkFolderName("group", g); err != nil {
			return err
		}
		if _, err := getJSON[Group](tx.Bucket(bucketGroups), g); err != nil {
			return fmt.Errorf("group %s: %w", g, err)
		}
		return nil
	}
	if err := checkName(to); err != nil {
		return err
	}
	if tx.Bucket(bucketUsers).Get([]byte(to)) == nil {
		return fmt.Errorf("user %s: %w", to, ErrNotFound)
	}
	return nil
}

// AddGroup stores a new, empty group.
func (db *DB) AddGroup(ctx context.Context, name string) error {
	if err := checkFolderName("group", name); err != nil {
		return err
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		if b := tx.Bucket(bucketGroups); b != nil && b.Get([]byte(name)) != nil {
			return ErrExists
		}
		return putJSON(tx, bucketGroups, name, Group{Name: name, Created: db.now().UTC().Truncate(time.Second)})
	})
	if err != nil {
		return fmt.Errorf("users: add group %s: %w", name, err)
	}
	db.log.Info("users: group added", "group", name)
	return nil
}

// DeleteGroup removes a group and every grant made to it.
func (db *DB) DeleteGroup(ctx context.Context, name string) error {
	if err := checkFolderName("group", name); err != nil {
		return err
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		b := tx.Bucket(bucketGroups)
		if b == nil || b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		return dropGrants(tx, GroupPrefix+name)
	})
	if err != nil {
		return fmt.Errorf("users: delete group %s: %w", name, err)
	}
	db.log.Info("users: group deleted", "group", name)
	return nil
}

// SetMembers adds and removes members of a group (users who must exist
// to be added; removing a non-member is no error).
func (db *DB) SetMembers(ctx context.Context, group string, add, del []string) error {
	if err := checkFolderName("group", group); err != nil {
		return err
	}
	err := db.writeTx(ctx, func(tx *txn) error {
		g, err := getJSON[Group](tx.Bucket(bucketGroups), group)
		if err != nil {
			return err
		}
		for _, u := range add {
			if err := grantee(tx, u); err != nil {
				return err
			}
			if strings.HasPrefix(u, GroupPrefix) {
				return fmt.Errorf("%w: groups hold users, not groups", ErrInvalid)
			}
			if !slices.Contains(g.Members, u) {
				g.Members = append(g.Members, u)
			}
		}
		g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return slices.Contains(del, m) })
		slices.Sort(g.Members)
		return putJSON(tx, bucketGroups, group, g)
	})
	if err != nil {
		return fmt.Errorf("users: members of %s: %w", group, err)
	}
	db.log.Info("users: group members changed", "group", group, "added", add, "removed", del)
	return nil
}

// dropGrants removes every grant to `to` and, for a user, their group
// memberships: a user deleted and added again under the same name must
// not inherit the old account's folders.
func dropGrants(tx *txn, to string) error {
	if b := tx.Bucket(bucketFolders); b != nil {
		var changed []Folder
		err := b.ForEach(func(k, v []byte) error {
			var f Folder
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("users: record %q: %w", k, err)
			}
			n := len(f.Grants)
			f.Grants = slices.DeleteFunc(f.Grants, func(g Grant) bool { return g.To == to })
			if len(f.Grants) != n {
				changed = append(changed, f)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, f := range changed {
			if err := putJSON(tx, bucketFolders, f.Name, f); err != nil {
				return err
			}
		}
	}
	if strings.HasPrefix(to, GroupPrefix) {
		return nil
	}
	if b := tx.Bucket(bucketGroups); b != nil {
		var changed []Group
		err := b.ForEach(func(k, v []byte) error {
			var g Group
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("users: record %q: %w", k, err)
			}
			if slices.Contains(g.Members, to) {
				g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return m == to })
				changed = append(changed, g)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, g := range changed {
			if err := putJSON(tx, bucketGroups, g.Name, g); err != nil {
				return err
			}
		}
	}
	return nil
}

// Access lists the folders user may reach, by name, each with the union of
// the rights of the user's own grant and their groups' grants, read in one
// transaction. A disabled or missing user reaches none.
func (db *DB) Access(ctx context.Context, user string) ([]FolderAccess, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []FolderAccess
	err := db.view(func(tx *txn) error {
		r, err := getRecord(tx.Bucket(bucketUsers), user)
		if err != nil {
			return err
		}
		if r.Disabled {
			return nil
		}
		mine := map[string]bool{user: true}
		if b := tx.Bucket(bucketGroups); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				var g Group
				if err := json.Unmarshal(v, &g); err != nil {
					return fmt.Errorf("users: record %q: %w", k, err)
				}
				if slices.Contains(g.Members, user) {
					mine[GroupPrefix+g.Name] = true
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketFolders)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var f Folder
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("users: record %q: %w", k, err)
			}
			a := FolderAccess{Folder: f.Name, QuotaBytes: f.QuotaBytes, QuotaFiles: f.QuotaFiles}
			found := false
			for _, g := range f.Grants {
				if mine[g.To] {
					found = true
					a.Perms |= g.Perms
					a.Manage = a.Manage || g.Manage
				}
			}
			if found {
				out = append(out, a)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("users: folders of %s: %w", user, err)
	}
	return out, nil
}
