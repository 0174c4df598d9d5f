package users

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Share links (internal/shares) are stored in this database because only
// this package may import bbolt. The records are opaque bytes here: their
// meaning belongs to shares, which reaches them through this small API.
// The bucket is created on first write, so databases without links need no
// migration and an older securefsd simply ignores it.
var bucketLinks = []byte("links")

// maxLinkKey bounds a link record's key (shares uses a hex SHA-256).
const maxLinkKey = 128

func checkLinkKey(key string) error {
	if key == "" || len(key) > maxLinkKey {
		return fmt.Errorf("users: link key of %d bytes: %w", len(key), ErrInvalid)
	}
	return nil
}

// PutLink stores a new link record under key; ErrExists if one is there.
func (db *DB) PutLink(ctx context.Context, key string, val []byte) error {
	if err := checkLinkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: put link: %w", err)
	}
	return db.update(func(tx *txn) error {
		b, err := tx.CreateBucketIfNotExists(bucketLinks)
		if err != nil {
			return fmt.Errorf("users: links bucket: %w", err)
		}
		if b.Get([]byte(key)) != nil {
			return fmt.Errorf("users: put link: %w", ErrExists)
		}
		return b.Put([]byte(key), val)
	})
}

// Link returns the record stored under key; ErrNotFound if none.
func (db *DB) Link(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("users: link: %w", err)
	}
	var out []byte
	err := db.view(func(tx *txn) error {
		b := tx.Bucket(bucketLinks)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...) // v is only valid inside the transaction
		return nil
	})
	return out, err
}

// Links calls fn with every link record, in key order. The value is a copy.
func (db *DB) Links(ctx context.Context, fn func(key string, val []byte) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: links: %w", err)
	}
	return db.view(func(tx *txn) error {
		b := tx.Bucket(bucketLinks)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error { return fn(string(k), append([]byte(nil), v...)) })
	})
}

// UpdateLink replaces the record under key with fn's result, atomically
// (fn sees the current record); ErrNotFound if none. An error from fn
// aborts the update and is returned as is.
func (db *DB) UpdateLink(ctx context.Context, key string, fn func(val []byte) ([]byte, error)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: update link: %w", err)
	}
	return db.update(func(tx *txn) error {
		b := tx.Bucket(bucketLinks)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		nv, err := fn(append([]byte(nil), v...))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), nv)
	})
}

// DeleteLink removes the record under key; ErrNotFound if none.
func (db *DB) DeleteLink(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: delete link: %w", err)
	}
	return db.update(func(tx *txn) error {
		b := tx.Bucket(bucketLinks)
		if b == nil || b.Get([]byte(key)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(key))
	})
}

// HashSecret hashes a secret that is not a user's password (a share link's)
// with the current Argon2id parameters, in turn with logins.
func (db *DB) HashSecret(ctx context.Context, secret []byte) (string, error) {
	if err := checkPassword(secret); err != nil {
		return "", err
	}
	h, err := db.hash(ctx, secret)
	if err != nil {
		return "", fmt.Errorf("users: hash secret: %w", err)
	}
	return h, nil
}

// errLinkKey is returned by VerifySecret for an empty defender key.
var errLinkKey = errors.New("users: secret key must be non-empty")

// VerifySecret checks secret against hash (from HashSecret) like a login:
// the attempt goes through the login defender keyed by remote's address and
// by key (e.g. a share link's id, banned after Defender.UserThreshold
// failures from anywhere, listed by Bans as kind "link"), serves its delay,
// waits its turn for Argon2id. It returns nil on a match, ErrAuthFailed on a
// mismatch or an unusable hash, ErrBanned when the address or the key is
// banned.
func (db *DB) VerifySecret(ctx context.Context, proto, remote, key, hash string, secret []byte) error {
	if key == "" {
		return errLinkKey
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("users: verify secret: %w", err)
	}
	lk, name := "l:"+key, "link:"+key
	a, delay, err := db.def.beginKeyed(ctx, remote, "", lk)
	if errors.Is(err, ErrBanned) {
		db.log.Debug("users: secret refused while banned", "proto", proto, "remote", remote, "key", key)
		return err
	}
	if err != nil {
		return fmt.Errorf("users: verify secret: %w", err)
	}
	failed := false
	defer func() { db.def.end(a, proto, name, failed) }()
	if delay > 0 {
		if err := db.def.opts.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("users: verify secret: %w", err)
		}
	}
	if err := db.sem.acquire(ctx, a.src); err != nil {
		return fmt.Errorf("users: verify secret: %w", err)
	}
	if err := db.def.recheck(a); err != nil {
		db.sem.release()
		return err
	}
	target, genuine := db.dummy, false
	if p, err := parsePHC(hash); err == nil {
		target, genuine = p, true
	}
	pw := secret
	if len(pw) > maxPasswordLen {
		pw, genuine = pw[:maxPasswordLen], false
	}
	db.verifies.Add(1)
	start := time.Now()
	ok := target.verify(pw) && genuine
	db.noteVerifyCost(time.Since(start))
	db.sem.release()
	if !ok {
		failed = true
		db.log.Info("users: link password failed", "proto", proto, "remote", remote, "link", key)
		return ErrAuthFailed
	}
	return nil
}
