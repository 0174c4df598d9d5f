// Package shares keeps share links: a token that lets someone without an
// account download a file or folder of a user's home, or drop files into a
// folder (upload-only, a "file request").
//
// A link is only a policy (owner, path, kind, expiry, download cap,
// optional password, address ranges); the bytes are served by the public
// pages of internal/webui through the owner's own view of the store, so the
// owner's rights and quota apply. Protocol packages never learn about
// tokens. Records live in the users database behind Backend (only users may
// import bbolt).
//
// Tokens carry 192 bits from crypto/rand and are stored only as their
// SHA-256: a copy of the database does not reveal a working link. A slow
// hash (Argon2id) is not needed for that, because a token is not a
// human-chosen secret: with 2^192 possibilities, inverting SHA-256 is as
// hard as guessing the token itself. The lookup by hash needs no
// constant-time comparison either: timing can reveal at most something
// about the hash of a guess, never about a stored token.
package shares

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/perm"
	"github.com/securefsd/securefsd/internal/users"
)

// Sentinel errors.
var (
	// ErrNotFound is the one answer for a link that does not resolve:
	// unknown token, expired, used up, revoked, owner disabled or deleted,
	// owner without the needed right, address not allowed. Public pages
	// answer 404 for all of them so a holder cannot tell which.
	ErrNotFound = errors.New("shares: no such link")
	// ErrPassword means the link needs a password and the one given (or
	// none) is wrong.
	ErrPassword = errors.New("shares: wrong link password")
	// ErrBanned means too many wrong passwords for this link or from this
	// address: like a login ban.
	ErrBanned = errors.New("shares: too many wrong passwords, try again later")
	// ErrInvalid is returned for a bad argument when creating a link.
	ErrInvalid = errors.New("shares: invalid argument")
)

// Kind is what a link points at.
type Kind string

// The kinds.
const (
	File   Kind = "file"
	Folder Kind = "folder"
)

// tokenBytes is a token's entropy: 192 bits (at least 128 required).
const tokenBytes = 24

// TokenLen is the length of a token in its URL form (base64url, no padding).
var TokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// Link is one share link's record. The token is not part of it.
type Link struct {
	ID           string         `json:"id"`    // public, for list and revoke; not a secret
	Owner        string         `json:"owner"` // user name
	Path         string         `json:"path"`  // clean, absolute within the owner's home
	Kind         Kind           `json:"kind"`
	UploadOnly   bool           `json:"upload_only,omitempty"`
	Expires      time.Time      `json:"expires,omitzero"`        // zero: never
	MaxDownloads int64          `json:"max_downloads,omitempty"` // 0: unlimited
	Downloads    int64          `json:"downloads"`
	PasswordHash string         `json:"password_hash,omitempty"` // Argon2id PHC; "" = none
	AllowFrom    []netip.Prefix `json:"allow_from,omitempty"`    // empty: any address
	Created      time.Time      `json:"created"`
}

// Public is a link without its password hash, for listings.
type Public struct {
	ID           string         `json:"id"`
	Owner        string         `json:"owner"`
	Path         string         `json:"path"`
	Kind         Kind           `json:"kind"`
	UploadOnly   bool           `json:"upload_only"`
	Expires      time.Time      `json:"expires,omitzero"`
	MaxDownloads int64          `json:"max_downloads,omitempty"`
	Downloads    int64          `json:"downloads"`
	Password     bool           `json:"password"`
	AllowFrom    []netip.Prefix `json:"allow_from,omitempty"`
	Created      time.Time      `json:"created"`
}

// Public returns l without its password hash.
func (l Link) Public() Public {
	return Public{ID: l.ID, Owner: l.Owner, Path: l.Path, Kind: l.Kind, UploadOnly: l.UploadOnly,
		Expires: l.Expires, MaxDownloads: l.MaxDownloads, Downloads: l.Downloads,
		Password: l.PasswordHash != "", AllowFrom: l.AllowFrom, Created: l.Created}
}

// Need is the owner's rights a link depends on: Upload for an upload-only
// link, Download for a file link, Download and List for a folder link (its
// page lists the folder and its zip walks it). A link dies when its owner
// loses one of them, before any byte is sent: a folder zip whose walk
// failed half way would already be answered 200.
func (l Link) Need() perm.Perm {
	switch {
	case l.UploadOnly:
		return perm.Upload
	case l.Kind == Folder:
		return perm.Download | perm.List
	}
	return perm.Download
}

// Backend stores link records and checks secrets; *users.DB implements it.
type Backend interface {
	PutLink(ctx context.Context, key string, val []byte) error
	Link(ctx context.Context, key string) ([]byte, error)
	Links(ctx context.Context, fn func(key string, val []byte) error) error
	UpdateLink(ctx context.Context, key string, fn func(val []byte) ([]byte, error)) error
	DeleteLink(ctx context.Context, key string) error
	HashSecret(ctx context.Context, secret []byte) (string, error)
	VerifySecret(ctx context.Context, proto, remote, key, hash string, secret []byte) error
	Get(ctx context.Context, name string) (users.User, error)
}

// Options configures New.
type Options struct {
	Now func() time.Time // nil: time.Now (tests inject a clock for expiry)
}

// Manager creates, lists, revokes and resolves links. Safe for concurrent use.
type Manager struct {
	b   Backend
	now func() time.Time
}

// New returns a Manager over b.
func New(b Backend, opts Options) *Manager {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Manager{b: b, now: now}
}

// Spec describes a new link.
type Spec struct {
	Owner        string
	Path         string
	Kind         Kind // File or Folder (the caller stats the path)
	UploadOnly   bool // needs Kind Folder
	TTL          time.Duration
	MaxDownloads int64
	Password     []byte // empty: none
	AllowFrom    []netip.Prefix
}

// CleanPath makes p absolute and clean; ErrInvalid for a path that would
// climb above the root or holds a NUL.
func CleanPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("shares: path with NUL: %w", ErrInvalid)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("shares: path %q climbs: %w", p, ErrInvalid)
		}
	}
	return path.Clean("/" + p), nil
}

// keyOf is the database key of a token: hex SHA-256.
func keyOf(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Create stores a new link and returns its token (shown once: only its hash
// is kept) and record.
func (m *Manager) Create(ctx context.Context, s Spec) (string, Link, error) {
	p, err := CleanPath(s.Path)
	if err != nil {
		return "", Link{}, err
	}
	switch {
	case s.Kind != File && s.Kind != Folder:
		return "", Link{}, fmt.Errorf("shares: kind %q: %w", s.Kind, ErrInvalid)
	case s.UploadOnly && s.Kind != Folder:
		return "", Link{}, fmt.Errorf("shares: an upload-only link needs a folder: %w", ErrInvalid)
	case s.UploadOnly && s.MaxDownloads != 0:
		return "", Link{}, fmt.Errorf("shares: an upload-only link has no downloads to cap: %w", ErrInvalid)
	case s.TTL < 0 || s.MaxDownloads < 0:
		return "", Link{}, fmt.Errorf("shares: negative expiry or cap: %w", ErrInvalid)
	}
	u, err := m.b.Get(ctx, s.Owner)
	if err != nil {
		return "", Link{}, fmt.Errorf("shares: owner %q: %w", s.Owner, err)
	}
	l := Link{Owner: u.Name, Path: p, Kind: s.Kind, UploadOnly: s.UploadOnly, MaxDownloads: s.MaxDownloads,
		AllowFrom: slices.Clone(s.AllowFrom), Created: m.now().UTC()}
	if !u.Perms.Has(l.Need()) {
		return "", Link{}, fmt.Errorf("shares: %s lacks the %s right: %w", u.Name, l.Need(), ErrInvalid)
	}
	if s.TTL > 0 {
		l.Expires = l.Created.Add(s.TTL)
	}
	if len(s.Password) > 0 {
		if l.PasswordHash, err = m.b.HashSecret(ctx, s.Password); err != nil {
			return "", Link{}, fmt.Errorf("shares: password: %w", err)
		}
	}
	id := make([]byte, 8)
	rand.Read(id) // crypto/rand.Read never fails (Go 1.24+)
	l.ID = hex.EncodeToString(id)
	tok := make([]byte, tokenBytes)
	rand.Read(tok)
	token := base64.RawURLEncoding.EncodeToString(tok)
	v, err := json.Marshal(l)
	if err != nil {
		return "", Link{}, fmt.Errorf("shares: encode: %w", err)
	}
	if err := m.b.PutLink(ctx, keyOf(token), v); err != nil {
		return "", Link{}, fmt.Errorf("shares: store: %w", err)
	}
	return token, l, nil
}

// List returns the links, of owner only if owner is not "", by creation.
func (m *Manager) List(ctx context.Context, owner string) ([]Link, error) {
	var out []Link
	err := m.b.Links(ctx, func(_ string, v []byte) error {
		var l Link
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("shares: decode: %w", err)
		}
		if owner == "" || l.Owner == owner {
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shares: list: %w", err)
	}
	slices.SortFunc(out, func(a, b Link) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// findKey returns the database key of the link with id.
func (m *Manager) findKey(ctx context.Context, id string) (string, Link, error) {
	var key string
	var found Link
	err := m.b.Links(ctx, func(k string, v []byte) error {
		var l Link
		if err := json.Unmarshal(v, &l); err == nil && l.ID == id {
			key, found = k, l
		}
		return nil
	})
	if err != nil {
		return "", Link{}, fmt.Errorf("shares: find %s: %w", id, err)
	}
	if key == "" {
		return "", Link{}, fmt.Errorf("shares: link %q: %w", id, ErrNotFound)
	}
	return key, found, nil
}

// Revoke deletes the link with id (owner "" = any owner; otherwise the link
// must be owner's, so a user revokes only their own).
func (m *Manager) Revoke(ctx context.Context, owner, id string) error {
	key, l, err := m.findKey(ctx, id)
	if err != nil {
		return err
	}
	if owner != "" && l.Owner != owner {
		return fmt.Errorf("shares: link %q: %w", id, ErrNotFound)
	}
	if err := m.b.DeleteLink(ctx, key); err != nil {
		if errors.Is(err, users.ErrNotFound) {
			return fmt.Errorf("shares: link %q: %w", id, ErrNotFound)
		}
		return fmt.Errorf("shares: revoke %s: %w", id, err)
	}
	return nil
}

// Resolved is a live link with its owner's current record.
type Resolved struct {
	Link  Link
	Owner users.User
	key   string
}

// ValidToken reports whether s has a token's form, so garbage is refused
// before any database work.
func ValidToken(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == tokenBytes
}

// Resolve returns the live link of token for a request from remote
// ("ip:port" or "ip"). Every reason a link is dead gives ErrNotFound:
// unknown token, expired, used up, owner deleted or disabled, owner without
// the link's right (Need), remote outside AllowFrom. Whether the path still
// exists is for the caller to find out by opening it through the owner's
// view (and to answer the same 404).
func (m *Manager) Resolve(ctx context.Context, token, remote string) (Resolved, error) {
	if !ValidToken(token) {
		return Resolved{}, ErrNotFound
	}
	key := keyOf(token)
	v, err := m.b.Link(ctx, key)
	if errors.Is(err, users.ErrNotFound) {
		return Resolved{}, ErrNotFound
	}
	if err != nil {
		return Resolved{}, fmt.Errorf("shares: resolve: %w", err)
	}
	var l Link
	if err := json.Unmarshal(v, &l); err != nil {
		return Resolved{}, fmt.Errorf("shares: decode: %w", err)
	}
	if !l.live(m.now()) || !allowed(l.AllowFrom, remote) {
		return Resolved{}, ErrNotFound
	}
	u, err := m.b.Get(ctx, l.Owner)
	if errors.Is(err, users.ErrNotFound) {
		return Resolved{}, ErrNotFound
	}
	if err != nil {
		return Resolved{}, fmt.Errorf("shares: owner: %w", err)
	}
	if u.Disabled || !u.Perms.Has(l.Need()) {
		return Resolved{}, ErrNotFound
	}
	return Resolved{Link: l, Owner: u, key: key}, nil
}

// live reports whether l is neither expired nor used up at now.
func (l Link) live(now time.Time) bool {
	if !l.Expires.IsZero() && !now.Before(l.Expires) {
		return false
	}
	return l.MaxDownloads == 0 || l.Downloads < l.MaxDownloads
}

func allowed(nets []netip.Prefix, remote string) bool {
	if len(nets) == 0 {
		return true
	}
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false // fail closed
	}
	a = a.Unmap().WithZone("")
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// CheckPassword verifies password for r's link if it has one (nil if not),
// through the login defender keyed by the link and remote's address:
// ErrPassword for a wrong one, ErrBanned once guessing is banned.
func (m *Manager) CheckPassword(ctx context.Context, r Resolved, proto, remote string, password []byte) error {
	if r.Link.PasswordHash == "" {
		return nil
	}
	err := m.b.VerifySecret(ctx, proto, remote, r.Link.ID, r.Link.PasswordHash, password)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, users.ErrBanned):
		return ErrBanned
	case errors.Is(err, users.ErrAuthFailed):
		return ErrPassword
	}
	return fmt.Errorf("shares: password: %w", err)
}

// CountDownload counts one completed download of r's link. It is
// ErrNotFound if the link died meanwhile (revoked, expired, or its cap
// reached by downloads that finished first).
func (m *Manager) CountDownload(ctx context.Context, r Resolved) error {
	err := m.b.UpdateLink(ctx, r.key, func(v []byte) ([]byte, error) {
		var l Link
		if err := json.Unmarshal(v, &l); err != nil {
			return nil, fmt.Errorf("shares: decode: %w", err)
		}
		if !l.live(m.now()) {
			return nil, ErrNotFound
		}
		l.Downloads++
		return json.Marshal(l)
	})
	if errors.Is(err, users.ErrNotFound) || errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("shares: count: %w", err)
	}
	return nil
}

// ParseTTL parses an expiry like "7d", "12h", "90m" (Go durations plus a
// "d" suffix for days); "" or "0" is no expiry.
func ParseTTL(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(d, 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("shares: expiry %q: %w", s, ErrInvalid)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	t, err := time.ParseDuration(s)
	if err != nil || t <= 0 {
		return 0, fmt.Errorf("shares: expiry %q: %w", s, ErrInvalid)
	}
	return t, nil
}

// ParseCIDRs parses a comma-separated list of addresses or CIDR ranges.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("shares: address range %q: %w", f, ErrInvalid)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
