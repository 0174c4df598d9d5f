// Package pwpolicy decides whether a new password is acceptable: long
// enough, not one of the most common passwords, and not containing the
// user's name. It is applied where a password is chosen (user add, user
// passwd, through the admin socket too), never at login: an existing
// password keeps working until it is changed.
package pwpolicy

//go:generate go run gen.go $GOMODCACHE/github.com/trustelem/zxcvbn@v1.0.1/data/passwords.txt

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors; every refusal wraps ErrWeak and one of the others.
var (
	ErrWeak         = errors.New("password refused by the password policy")
	ErrTooShort     = errors.New("password too short")
	ErrCommon       = errors.New("password is one of the most common passwords")
	ErrContainsName = errors.New("password contains the user name")
	ErrBadSpec      = errors.New("bad --password-policy setting")
)

// DefaultMinLength is the minimum length in characters (not bytes) unless
// the policy says otherwise: NIST SP 800-63B asks for at least 8; 12 makes
// an offline guess against Argon2id hopeless for anything not in a list.
const DefaultMinLength = 12

// Policy is a password policy. The zero value is not useful: use Default
// or Parse.
type Policy struct {
	MinLength int  // in Unicode code points
	Common    bool // refuse passwords on the common list
	Name      bool // refuse passwords containing the user name
}

// Default is the policy used when none is given.
func Default() Policy {
	return Policy{MinLength: DefaultMinLength, Common: true, Name: true}
}

// common is the list as a set, built once on first use per process; the
// array itself is immutable data, so this is not mutable global state.
var common = func() map[string]struct{} {
	m := make(map[string]struct{}, len(commonList))
	for _, w := range commonList {
		m[w] = struct{}{}
	}
	return m
}()

// Parse reads a policy from "min-length=12,common=on,name=on"; settings
// not named keep their default. "" is the default policy.
func Parse(spec string) (Policy, error) {
	p := Default()
	if strings.TrimSpace(spec) == "" {
		return p, nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Policy{}, fmt.Errorf("%w: %q is not key=value", ErrBadSpec, kv)
		}
		switch k {
		case "min-length":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1024 {
				return Policy{}, fmt.Errorf("%w: min-length %q (1..1024)", ErrBadSpec, v)
			}
			p.MinLength = n
		case "common", "name":
			b, err := onOff(v)
			if err != nil {
				return Policy{}, fmt.Errorf("%w: %s: %w", ErrBadSpec, k, err)
			}
			if k == "common" {
				p.Common = b
			} else {
				p.Name = b
			}
		default:
			return Policy{}, fmt.Errorf("%w: unknown setting %q (min-length, common, name)", ErrBadSpec, k)
		}
	}
	return p, nil
}

func onOff(v string) (bool, error) {
	switch v {
	case "on", "true", "yes":
		return true, nil
	case "off", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", v)
}

// String is the policy in Parse's syntax.
func (p Policy) String() string {
	f := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	return fmt.Sprintf("min-length=%d,common=%s,name=%s", p.MinLength, f(p.Common), f(p.Name))
}

// Check returns nil if password is acceptable for user name, or an error
// wrapping ErrWeak and the reason. The error never contains the password.
func (p Policy) Check(name string, password []byte) error {
	if n := utf8.RuneCount(password); n < p.MinLength {
		return fmt.Errorf("%w: %w: %d characters, at least %d needed", ErrWeak, ErrTooShort, n, p.MinLength)
	}
	lower := strings.ToLower(string(password))
	if p.Common {
		if _, ok := common[lower]; ok {
			return fmt.Errorf("%w: %w", ErrWeak, ErrCommon)
		}
	}
	// Names of one or two characters would refuse too many good passwords.
	if p.Name && utf8.RuneCountInString(name) >= 3 && strings.Contains(lower, strings.ToLower(name)) {
		return fmt.Errorf("%w: %w", ErrWeak, ErrContainsName)
	}
	return nil
}
