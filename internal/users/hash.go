package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Default Argon2id cost (RFC 9106 "second recommended option", with p=4).
const (
	DefaultArgon2Time    = 3
	DefaultArgon2Memory  = 64 * 1024 // KiB
	DefaultArgon2Threads = 4
)

// Caps applied to parameters read from a stored hash, so a tampered or
// foreign record cannot make one login allocate gigabytes or run for
// minutes (age caps its scrypt work factor the same way).
const (
	maxArgon2Time    = 16
	maxArgon2Memory  = 1024 * 1024 // KiB = 1 GiB
	maxArgon2Threads = 64
	minSaltLen       = 8
	maxSaltLen       = 64
	minHashLen       = 16
	maxHashLen       = 64

	saltLen = 16
	hashLen = 32

	// maxPasswordLen bounds accepted passwords (bytes).
	maxPasswordLen = 1024
)

var b64 = base64.RawStdEncoding

func (p Argon2Params) withDefaults() Argon2Params {
	if p.Time == 0 {
		p.Time = DefaultArgon2Time
	}
	if p.Memory == 0 {
		p.Memory = DefaultArgon2Memory
	}
	if p.Threads == 0 {
		p.Threads = DefaultArgon2Threads
	}
	return p
}

func (p Argon2Params) validate() error {
	if p.Time > maxArgon2Time || p.Memory > maxArgon2Memory || p.Threads > maxArgon2Threads {
		return fmt.Errorf("users: argon2 parameters t=%d m=%d p=%d above the caps t=%d m=%d p=%d: %w",
			p.Time, p.Memory, p.Threads, maxArgon2Time, maxArgon2Memory, maxArgon2Threads, ErrInvalid)
	}
	if p.Memory < 8*uint32(p.Threads) {
		return fmt.Errorf("users: argon2 memory %d KiB below 8×threads: %w", p.Memory, ErrInvalid)
	}
	return nil
}

// weakerThan reports whether any cost in p is below the one in q.
func (p Argon2Params) weakerThan(q Argon2Params) bool {
	return p.Time < q.Time || p.Memory < q.Memory || p.Threads < q.Threads
}

// phc is a parsed "$argon2id$v=19$m=...,t=...,p=...$salt$hash" string.
type phc struct {
	params Argon2Params
	salt   []byte
	hash   []byte
}

// hashPassword returns the PHC string of password under params with a fresh
// random salt.
func hashPassword(password []byte, params Argon2Params) string {
	salt := make([]byte, saltLen)
	rand.Read(salt) // never returns an error (crypto/rand, Go 1.24+)
	h := argon2.IDKey(password, salt, params.Time, params.Memory, params.Threads, hashLen)
	return encodePHC(phc{params: params, salt: salt, hash: h})
}

func encodePHC(p phc) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.params.Memory, p.params.Time, p.params.Threads,
		b64.EncodeToString(p.salt), b64.EncodeToString(p.hash))
}

// parsePHC parses and bounds-checks an encoded hash. The error never
// includes the hash itself.
func parsePHC(s string) (phc, error) {
	bad := func(what string) (phc, error) {
		return phc{}, fmt.Errorf("users: password hash: %s: %w", what, ErrInvalid)
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return bad("not a PHC string")
	}
	if f[1] != "argon2id" {
		return bad("algorithm is not argon2id")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported argon2 version")
	}
	var p phc
	var seen [3]bool
	for kv := range strings.SplitSeq(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad("malformed parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return bad("malformed parameter " + k)
		}
		switch k {
		case "m":
			if seen[0] || n > maxArgon2Memory {
				return bad("bad m")
			}
			seen[0], p.params.Memory = true, uint32(n)
		case "t":
			if seen[1] || n < 1 || n > maxArgon2Time {
				return bad("bad t")
			}
			seen[1], p.params.Time = true, uint32(n)
		case "p":
			if seen[2] || n < 1 || n > maxArgon2Threads {
				return bad("bad p")
			}
			seen[2], p.params.Threads = true, uint8(n)
		default:
			return bad("unknown parameter " + k)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return bad("missing parameter")
	}
	if p.params.Memory < 8*uint32(p.params.Threads) {
		return bad("m below 8×p")
	}
	var err error
	if p.salt, err = b64.Strict().DecodeString(f[4]); err != nil || len(p.salt) < minSaltLen || len(p.salt) > maxSaltLen {
		return bad("bad salt")
	}
	if p.hash, err = b64.Strict().DecodeString(f[5]); err != nil || len(p.hash) < minHashLen || len(p.hash) > maxHashLen {
		return bad("bad hash")
	}
	return p, nil
}

// verify recomputes the hash of password under p's salt and parameters and
// compares in constant time.
func (p phc) verify(password []byte) bool {
	h := argon2.IDKey(password, p.salt, p.params.Time, p.params.Memory, p.params.Threads, uint32(len(p.hash)))
	return subtle.ConstantTimeCompare(h, p.hash) == 1
}
