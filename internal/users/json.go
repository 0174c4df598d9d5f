package users

import (
	"encoding/json"
	"time"
)

// PublicUser is the JSON view of a User: everything but the password hash
// (HasPassword says whether there is one). `securefsd user list --json`
// prints a list of these.
type PublicUser struct {
	Name        string    `json:"name"`
	HasPassword bool      `json:"has_password"`
	Keys        []Key     `json:"keys"`
	Home        string    `json:"home"`
	Perms       Perm      `json:"perms"` // "list,download,..."
	QuotaBytes  int64     `json:"quota_bytes"`
	QuotaFiles  int64     `json:"quota_files"`
	Disabled    bool      `json:"disabled"`
	Admin       bool      `json:"admin,omitempty"`
	Created     time.Time `json:"created"`
	LastLogin   time.Time `json:"last_login,omitzero"`
	// TwoFactor says whether TOTP is set up; the secret never leaves the
	// database.
	TwoFactor    bool                `json:"two_factor,omitempty"`
	RecoveryLeft int                 `json:"recovery_codes_left,omitempty"`
	AppPasswords []PublicAppPassword `json:"app_passwords,omitempty"`
	RecentLogins []LoginRecord       `json:"recent_logins,omitempty"`
}

// PublicAppPassword is an app password without its hash.
type PublicAppPassword struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Protocols []string  `json:"protocols"`
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// Public returns u without its password hash.
func (u User) Public() PublicUser {
	keys := u.Keys
	if keys == nil {
		keys = []Key{}
	}
	p := PublicUser{Name: u.Name, HasPassword: u.PasswordHash != "", Keys: keys, Home: u.Home, Perms: u.Perms,
		QuotaBytes: u.QuotaBytes, QuotaFiles: u.QuotaFiles, Disabled: u.Disabled, Created: u.Created, LastLogin: u.LastLogin,
		Admin: u.Admin, TwoFactor: u.TwoFactor != nil, RecentLogins: u.Logins}
	if u.TwoFactor != nil {
		p.RecoveryLeft = len(u.TwoFactor.Recovery)
	}
	for _, a := range u.AppPasswords {
		p.AppPasswords = append(p.AppPasswords, PublicAppPassword{ID: a.ID, Name: a.Name, Protocols: a.Protocols, Created: a.Created, LastUsed: a.LastUsed})
	}
	return p
}

// MarshalJSON encodes u as its Public view, so a User can never leak its
// hash through JSON.
func (u User) MarshalJSON() ([]byte, error) { return json.Marshal(u.Public()) }

// UnmarshalJSON decodes the Public view; PasswordHash, the TOTP secret and
// the app passwords' hashes stay empty (TwoFactor is a non-nil empty
// enrolment when the view says 2FA is on).
func (u *User) UnmarshalJSON(b []byte) error {
	var p PublicUser
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*u = User{Name: p.Name, Keys: p.Keys, Home: p.Home, Perms: p.Perms, QuotaBytes: p.QuotaBytes,
		QuotaFiles: p.QuotaFiles, Disabled: p.Disabled, Created: p.Created, LastLogin: p.LastLogin,
		Admin: p.Admin, Logins: p.RecentLogins}
	if p.TwoFactor {
		u.TwoFactor = &TwoFactor{Recovery: make([]string, p.RecoveryLeft)}
	}
	for _, a := range p.AppPasswords {
		u.AppPasswords = append(u.AppPasswords, AppPassword{ID: a.ID, Name: a.Name, Protocols: a.Protocols, Created: a.Created, LastUsed: a.LastUsed})
	}
	return nil
}
