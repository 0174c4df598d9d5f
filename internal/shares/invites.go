package shares

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/securefsd/securefsd/internal/perm"
	"github.com/securefsd/securefsd/internal/users"
)

// Invitations are one-time sign-up links: whoever holds the token may
// create one account, with exactly the rights the invitation carries.
// Tokens are made and stored as a link's (192 bits from crypto/rand, kept
// only as SHA-256); records live in their own bucket of the users database.
// A used invitation stays (marked used, with the account it made) so its
// page can say so and the admin sees who signed up; revoking deletes it.

// Invitation errors. The sign-up page shows a distinct message for each,
// which is safe: only a token's holder can learn its state, and an
// unknown token reveals nothing.
var (
	ErrInviteUsed    = errors.New("shares: invitation already used")
	ErrInviteExpired = errors.New("shares: invitation expired")
	// ErrInviteGroup is returned when the group an invitation puts its
	// account in does not exist: at creation, or at sign-up when the group
	// was deleted since (then no account is made: it would get fewer
	// rights than the invitation says).
	ErrInviteGroup = errors.New("shares: the invitation's group does not exist")
)

// Invite is one invitation's record. The token is not part of it.
type Invite struct {
	ID         string    `json:"id"` // public, for list and revoke
	Perms      perm.Perm `json:"perms"`
	QuotaBytes int64     `json:"quota_bytes,omitempty"`
	QuotaFiles int64     `json:"quota_files,omitempty"`
	Group      string    `json:"group,omitempty"`  // the account joins it (and so its folders)
	Expires    time.Time `json:"expires,omitzero"` // zero: never
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by,omitempty"` // admin's name, "" for the command line
	Used       time.Time `json:"used,omitzero"`
	UsedBy     string    `json:"used_by,omitempty"` // the account it made
}

// State is "open", "used" or "expired" at now.
func (iv Invite) State(now time.Time) string {
	switch {
	case !iv.Used.IsZero():
		return "used"
	case !iv.Expires.IsZero() && !now.Before(iv.Expires):
		return "expired"
	}
	return "open"
}

// check is nil for an invitation that can still be used at now.
func (iv Invite) check(now time.Time) error {
	switch iv.State(now) {
	case "used":
		return ErrInviteUsed
	case "expired":
		return ErrInviteExpired
	}
	return nil
}

// InviteBackend stores invitation records and creates the account of a
// sign-up; *users.DB implements it.
type InviteBackend interface {
	PutInvite(ctx context.Context, key string, val []byte) error
	Invite(ctx context.Context, key string) ([]byte, error)
	Invites(ctx context.Context, fn func(key string, val []byte) error) error
	DeleteInvite(ctx context.Context, key string) error
	AddClaiming(ctx context.Context, u users.User, password []byte, key string, groups []string, claim func(val []byte) ([]byte, error)) error
	Groups(ctx context.Context) ([]users.Group, error)
}

// Invites creates, lists, revokes and redeems invitations. Safe for
// concurrent use.
type Invites struct {
	b   InviteBackend
	now func() time.Time
}

// NewInvites returns an Invites over b.
func NewInvites(b InviteBackend, opts Options) *Invites {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Invites{b: b, now: now}
}

// InviteSpec describes a new invitation.
type InviteSpec struct {
	Perms      perm.Perm
	QuotaBytes int64
	QuotaFiles int64
	Group      string // "" or an existing group the account joins
	TTL        time.Duration
	CreatedBy  string
}

// Create stores a new invitation and returns its token (shown once) and
// record.
func (m *Invites) Create(ctx context.Context, s InviteSpec) (string, Invite, error) {
	switch {
	case s.TTL < 0 || s.QuotaBytes < 0 || s.QuotaFiles < 0:
		return "", Invite{}, fmt.Errorf("shares: negative expiry or quota: %w", ErrInvalid)
	case s.Perms&^perm.All != 0:
		return "", Invite{}, fmt.Errorf("shares: unknown rights: %w", ErrInvalid)
	}
	if s.Group != "" {
		gs, err := m.b.Groups(ctx)
		if err != nil {
			return "", Invite{}, fmt.Errorf("shares: groups: %w", err)
		}
		if !slices.ContainsFunc(gs, func(g users.Group) bool { return g.Name == s.Group }) {
			return "", Invite{}, fmt.Errorf("%w (group %q)", ErrInviteGroup, s.Group)
		}
	}
	iv := Invite{Perms: s.Perms, QuotaBytes: s.QuotaBytes, QuotaFiles: s.QuotaFiles, Group: s.Group, CreatedBy: s.CreatedBy, Created: m.now().UTC()}
	if s.TTL > 0 {
		iv.Expires = iv.Created.Add(s.TTL)
	}
	id := make([]byte, 8)
	rand.Read(id) // crypto/rand.Read never fails (Go 1.24+)
	iv.ID = hex.EncodeToString(id)
	tok := make([]byte, tokenBytes)
	rand.Read(tok)
	token := base64.RawURLEncoding.EncodeToString(tok)
	v, err := json.Marshal(iv)
	if err != nil {
		return "", Invite{}, fmt.Errorf("shares: encode: %w", err)
	}
	if err := m.b.PutInvite(ctx, keyOf(token), v); err != nil {
		return "", Invite{}, fmt.Errorf("shares: store invitation: %w", err)
	}
	return token, iv, nil
}

// List returns every invitation (open, used and expired), by creation.
func (m *Invites) List(ctx context.Context) ([]Invite, error) {
	var out []Invite
	err := m.b.Invites(ctx, func(_ string, v []byte) error {
		var iv Invite
		if err := json.Unmarshal(v, &iv); err != nil {
			return fmt.Errorf("shares: decode: %w", err)
		}
		out = append(out, iv)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shares: list invitations: %w", err)
	}
	slices.SortFunc(out, func(a, b Invite) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Revoke deletes the invitation with id; its token then answers
// ErrNotFound.
func (m *Invites) Revoke(ctx context.Context, id string) error {
	var key string
	err := m.b.Invites(ctx, func(k string, v []byte) error {
		var iv Invite
		if json.Unmarshal(v, &iv) == nil && iv.ID == id {
			key = k
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("shares: find invitation %s: %w", id, err)
	}
	if key == "" {
		return fmt.Errorf("shares: invitation %q: %w", id, ErrNotFound)
	}
	if err := m.b.DeleteInvite(ctx, key); err != nil {
		if errors.Is(err, users.ErrNotFound) {
			return fmt.Errorf("shares: invitation %q: %w", id, ErrNotFound)
		}
		return fmt.Errorf("shares: revoke invitation %s: %w", id, err)
	}
	return nil
}

// Lookup returns the invitation of token: ErrNotFound for a malformed,
// unknown or revoked token, ErrInviteUsed or ErrInviteExpired (with the
// record) for one that can no longer be used.
func (m *Invites) Lookup(ctx context.Context, token string) (Invite, error) {
	if !ValidToken(token) {
		return Invite{}, ErrNotFound
	}
	v, err := m.b.Invite(ctx, keyOf(token))
	if errors.Is(err, users.ErrNotFound) {
		return Invite{}, ErrNotFound
	}
	if err != nil {
		return Invite{}, fmt.Errorf("shares: invitation: %w", err)
	}
	var iv Invite
	if err := json.Unmarshal(v, &iv); err != nil {
		return Invite{}, fmt.Errorf("shares: decode: %w", err)
	}
	return iv, iv.check(m.now())
}

// Redeem creates the account name with password and the invitation's
// rights, and marks the invitation used, atomically: see
// users.DB.AddClaiming. Errors: those of Lookup (also when another
// sign-up used the invitation first), users.ErrExists for a taken name,
// users.ErrInvalid for a bad name. The caller checks the password policy
// and that no files of a deleted user wait under the name's home.
func (m *Invites) Redeem(ctx context.Context, token, name string, password []byte) (users.User, error) {
	iv, err := m.Lookup(ctx, token)
	if err != nil {
		return users.User{}, err
	}
	u := users.User{Name: name, Home: name, Perms: iv.Perms, QuotaBytes: iv.QuotaBytes, QuotaFiles: iv.QuotaFiles}
	var groups []string
	if iv.Group != "" {
		groups = []string{iv.Group}
	}
	err = m.b.AddClaiming(ctx, u, password, keyOf(token), groups, func(v []byte) ([]byte, error) {
		var cur Invite
		if err := json.Unmarshal(v, &cur); err != nil {
			return nil, fmt.Errorf("shares: decode: %w", err)
		}
		if err := cur.check(m.now()); err != nil {
			return nil, err
		}
		// The rights are those read before the hash was computed; an
		// invitation is never edited, only revoked (which AddClaiming
		// sees as ErrNotFound), so they are still the record's.
		cur.Used, cur.UsedBy = m.now().UTC(), name
		return json.Marshal(cur)
	})
	switch {
	case errors.Is(err, users.ErrNotFound):
		return users.User{}, ErrNotFound
	case errors.Is(err, users.ErrNoGroup):
		return users.User{}, fmt.Errorf("%w (group %q): %w", ErrInviteGroup, iv.Group, err)
	case err != nil:
		return users.User{}, err
	}
	return u, nil
}
