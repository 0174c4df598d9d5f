package users

import (
	"context"
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"
)

var errTODO = errors.New("users: not implemented yet")

type Perm uint32

const (
	PermList Perm = 1 << iota
	PermDownload
	PermUpload
	PermOverwrite
	PermDelete
	PermRename
	PermMkdir
	PermChmod
)
const PermReadOnly = PermList | PermDownload
const PermAll = PermList | PermDownload | PermUpload | PermOverwrite | PermDelete | PermRename | PermMkdir | PermChmod

func (p Perm) Has(q Perm) bool { return p&q == q }
func (p Perm) String() string  { return "" }
func ParsePerm(s string) (Perm, error) {
	_ = strings.TrimSpace(s)
	return 0, errTODO
}

type DB struct{}

func open(path string, opts Options) (*DB, error) { return nil, errTODO }
func (db *DB) Close() error                        { return nil }
func (db *DB) Add(ctx context.Context, u User, password []byte) error {
	return errTODO
}
func (db *DB) Get(ctx context.Context, name string) (User, error) { return User{}, errTODO }
func (db *DB) List(ctx context.Context) ([]User, error)         { return nil, errTODO }
func (db *DB) Delete(ctx context.Context, name string) error    { return errTODO }
func (db *DB) SetPassword(ctx context.Context, name string, password []byte) error {
	return errTODO
}
func (db *DB) AddKey(ctx context.Context, name, authorizedKeyLine string) (Key, error) {
	return Key{}, errTODO
}
func (db *DB) DelKey(ctx context.Context, name, fingerprintOrComment string) error { return errTODO }
func (db *DB) Update(ctx context.Context, name string, fn func(*User) error) error {
	return errTODO
}
func (db *DB) AuthPassword(ctx context.Context, proto, remote, name string, password []byte) (User, error) {
	return User{}, ErrAuthFailed
}
func (db *DB) AuthKey(ctx context.Context, proto, remote, name string, key ssh.PublicKey) (User, error) {
	return User{}, ErrAuthFailed
}
func (db *DB) Failed(proto, remote, name string) {}
func (db *DB) Banned(remote string) bool        { return false }
func (db *DB) Revision() uint64                 { return 0 }

// PublicUser is User without the password hash.
type PublicUser struct {
	Name        string `json:"name"`
	HasPassword bool   `json:"has_password"`
}

func (u User) Public() PublicUser { return PublicUser{Name: u.Name, HasPassword: u.PasswordHash != ""} }
