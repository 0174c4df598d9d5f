package users

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Invitations (internal/shares) are stored here because only this package
// may import bbolt. As with links, the records are opaque bytes: their
// meaning belongs to shares. What this file adds beyond storage is
// AddClaiming, which creates a user and consumes an invitation in one
// transaction, so one invitation can never make two accounts. The bucket
// is created on first write: no migration.
var bucketInvites = []byte("invites")

// PutInvite stores a new invitation record under key; ErrExists if one is
// there.
func (db *DB) PutInvite(ctx context.Context, key string, val []byte) error {
	if err := checkLinkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: put invite: %w", err)
	}
	return db.update(func(tx *txn) error {
		b, err := tx.CreateBucketIfNotExists(bucketInvites)
		if err != nil {
			return fmt.Errorf("users: invites bucket: %w", err)
		}
		if b.Get([]byte(key)) != nil {
			return fmt.Errorf("users: put invite: %w", ErrExists)
		}
		return b.Put([]byte(key), val)
	})
}

// Invite returns the invitation record under key; ErrNotFound if none.
func (db *DB) Invite(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("users: invite: %w", err)
	}
	var out []byte
	err := db.view(func(tx *txn) error {
		b := tx.Bucket(bucketInvites)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// Invites calls fn with every invitation record, in key order. The value is
// a copy.
func (db *DB) Invites(ctx context.Context, fn func(key string, val []byte) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: invites: %w", err)
	}
	return db.view(func(tx *txn) error {
		b := tx.Bucket(bucketInvites)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error { return fn(string(k), append([]byte(nil), v...)) })
	})
}

// DeleteInvite removes the invitation record under key; ErrNotFound if none.
func (db *DB) DeleteInvite(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: delete invite: %w", err)
	}
	return db.update(func(tx *txn) error {
		b := tx.Bucket(bucketInvites)
		if b == nil || b.Get([]byte(key)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(key))
	})
}

// AddClaiming creates u with password (as Add; the password is required)
// and, in the same bbolt transaction, replaces the invitation record under
// key with claim's result. claim sees the record as it is inside the
// transaction, so of two sign-ups racing with one invitation the second
// sees it used; an error from claim (returned as is), a missing record
// (ErrNotFound) or an existing user of that name (ErrExists) aborts both:
// no account without a consumed invitation, no consumed invitation
// without an account. The new user joins each of groups in the same
// transaction; a group that no longer exists aborts it (ErrNoGroup). The Argon2id hash is computed before the
// transaction, which stays short. claim must not call back into db.
func (db *DB) AddClaiming(ctx context.Context, u User, password []byte, key string, groups []string, claim func(val []byte) ([]byte, error)) error {
	if err := checkLinkKey(key); err != nil {
		return err
	}
	if len(password) == 0 || u.PasswordHash != "" {
		return fmt.Errorf("users: add %s: a sign-up needs a password: %w", u.Name, ErrInvalid)
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	now := db.now()
	u.LastLogin = time.Time{}
	if err := db.normalize(&u, now); err != nil {
		return err
	}
	exists := false
	if err := db.read(ctx, func(b *bucket) error { exists = b.Get([]byte(u.Name)) != nil; return nil }); err != nil {
		return fmt.Errorf("users: add %s: %w", u.Name, err)
	}
	if exists { // fail before paying for the hash; the transaction checks again
		return fmt.Errorf("users: add %s: %w", u.Name, ErrExists)
	}
	h, err := db.hash(ctx, password)
	if err != nil {
		return fmt.Errorf("users: add %s: %w", u.Name, err)
	}
	u.PasswordHash = h
	var rev uint64
	err = db.update(func(tx *txn) error {
		ib := tx.Bucket(bucketInvites)
		if ib == nil {
			return ErrNotFound
		}
		v := ib.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		nv, err := claim(append([]byte(nil), v...))
		if err != nil {
			return err
		}
		ub := tx.Bucket(bucketUsers)
		if ub.Get([]byte(u.Name)) != nil {
			return ErrExists
		}
		if err := putRecord(ub, toRecord(u)); err != nil {
			return err
		}
		for _, name := range groups {
			g, err := getJSON[Group](tx.Bucket(bucketGroups), name)
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("group %s: %w", name, ErrNoGroup)
			}
			if err != nil {
				return err
			}
			if !slices.Contains(g.Members, u.Name) {
				g.Members = append(g.Members, u.Name)
				slices.Sort(g.Members)
			}
			if err := putJSON(tx, bucketGroups, name, g); err != nil {
				return err
			}
		}
		if err := ib.Put([]byte(key), nv); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		rev, _ = getU64(meta, keyRevision)
		rev++
		return putU64(meta, keyRevision, rev)
	})
	if err != nil {
		return fmt.Errorf("users: add %s: %w", u.Name, err)
	}
	db.noteRev(rev)
	db.log.Info("users: user added", "user", u.Name, "perms", u.Perms.String(), "keys", len(u.Keys), "password", true, "via", "invitation", "groups", groups)
	return nil
}

// ChargeSignup counts one sign-up attempt from remote against the address's
// budget in the login defender, as a failed login would: an open sign-up
// page cannot make accounts (and Argon2id runs) faster than the defender
// lets one address guess passwords. It reports ErrBanned when the address
// is banned (then the attempt is not counted again).
func (db *DB) ChargeSignup(remote string) error {
	if db.def.banned(remote) {
		return ErrBanned
	}
	db.def.fail("signup", remote, "", 1)
	db.log.Info("users: sign-up attempt counted", "remote", remote)
	return nil
}
