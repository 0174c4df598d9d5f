package envelope

import (
	"bytes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Keyring holds key-encryption keys (KEKs), each a random 256-bit key whose
// non-zero uint32 id is derived from the key (a fingerprint, docs/FORMAT.md
// section 4), so that a wrong keyring is reported as ErrUnknownKey, not as
// tampering (ErrAuth). One is active: Create and Rewrap wrap new DEKs under it;
// the others only unwrap. A Keyring is safe for concurrent use; Rotate and
// Remove change it in place, so files created afterwards use the new active
// KEK while files already open keep working.
type Keyring struct {
	mu     sync.RWMutex
	keys   map[uint32]*kek
	active uint32
}

type kek struct {
	key  [keySize]byte
	wrap cipher.AEAD // derived once: safe for concurrent use
}

func newKEK(key []byte) (*kek, error) {
	k := &kek{}
	copy(k.key[:], key)
	w, err := newWrapAEAD(k.key[:])
	if err != nil {
		return nil, err
	}
	k.wrap = w
	return k, nil
}

// Limits on keyrings, enforced when parsing (a keyring file is input).
const (
	maxKeyringKeys = 1024
	maxKeyringFile = 256 << 10

	// Argon2id limits for a passphrase-sealed keyring: the parameters come
	// from the file, so a hostile file must not make start-up allocate or
	// compute without bound.
	maxArgon2Time      = 32
	maxArgon2MemoryKiB = 1 << 20 // 1 GiB
	maxArgon2Threads   = 32
	argon2SaltSize     = 16

	plainHeader  = "securefsd-keyring v1"
	sealedHeader = "securefsd-keyring-sealed v1"
)

// NewKeyring returns a keyring with one fresh random KEK, active.
func NewKeyring() (*Keyring, error) {
	k := &Keyring{keys: map[uint32]*kek{}}
	if _, err := k.Rotate(); err != nil {
		return nil, err
	}
	return k, nil
}

// Active returns the id of the active KEK.
func (k *Keyring) Active() uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active
}

// IDs returns the ids of all KEKs, ascending.
func (k *Keyring) IDs() []uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slices.Sorted(maps.Keys(k.keys))
}

// Rotate adds a fresh random KEK and makes it active. It returns the new
// KEK's id (derived from the key; ids are not ordered by age).
func (k *Keyring) Rotate() (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) >= maxKeyringKeys {
		return 0, fmt.Errorf("envelope: keyring: more than %d KEKs", maxKeyringKeys)
	}
	var key [keySize]byte
	defer clear(key[:])
	for range 16 { // an id of 0 or a taken id: 2^-32 each; draw again
		randomBytes(key[:])
		id, err := kekID(key[:])
		if err != nil {
			return 0, fmt.Errorf("envelope: keyring: %w", err)
		}
		if _, taken := k.keys[id]; id == 0 || taken {
			continue
		}
		nk, err := newKEK(key[:])
		if err != nil {
			return 0, fmt.Errorf("envelope: keyring: %w", err)
		}
		if k.keys == nil {
			k.keys = map[uint32]*kek{}
		}
		k.keys[id] = nk
		k.active = id
		return id, nil
	}
	return 0, errors.New("envelope: keyring: cannot draw a KEK with a free id")
}

// Remove drops a KEK. Files whose only key slot it wraps become unreadable
// (ErrUnknownKey): remove a KEK only after every file was re-wrapped
// (Rewrap, KeyIDs). The active KEK cannot be removed.
func (k *Keyring) Remove(id uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	old, ok := k.keys[id]
	if !ok {
		return fmt.Errorf("envelope: keyring: remove KEK %d: %w", id, ErrUnknownKey)
	}
	if id == k.active {
		return fmt.Errorf("envelope: keyring: cannot remove the active KEK %d", id)
	}
	clear(old.key[:])
	delete(k.keys, id)
	return nil
}

// With returns a copy of k that also holds other's KEKs, k's active KEK
// staying active: a file written under a keyring a rotation replaced can
// still unwrap what it wrote, and re-wraps it under the new active KEK.
func (k *Keyring) With(other *Keyring) *Keyring {
	c := k.Clone()
	if other == nil || other == k {
		return c
	}
	other.mu.RLock()
	defer other.mu.RUnlock()
	for id, v := range other.keys {
		if _, ok := c.keys[id]; !ok {
			nv := *v
			c.keys[id] = &nv
		}
	}
	return c
}

// Clone returns an independent copy (e.g. to rotate, save, then swap in).
func (k *Keyring) Clone() *Keyring {
	k.mu.RLock()
	defer k.mu.RUnlock()
	c := &Keyring{keys: make(map[uint32]*kek, len(k.keys)), active: k.active}
	for id, v := range k.keys {
		nv := *v // the wrap AEAD is immutable and may be shared
		c.keys[id] = &nv
	}
	return c
}

func (k *Keyring) wrapAEAD(id uint32) cipher.AEAD {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if v := k.keys[id]; v != nil {
		return v.wrap
	}
	return nil
}

func (k *Keyring) activeAEAD() (uint32, cipher.AEAD) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if v := k.keys[k.active]; v != nil {
		return k.active, v.wrap
	}
	return 0, nil
}

// Argon2Params are the Argon2id cost parameters of a passphrase-sealed
// keyring; they are stored in the keyring file.
type Argon2Params struct {
	Time, MemoryKiB uint32
	Threads         uint8
}

// DefaultArgon2Params returns t=3, m=64 MiB, p=4 (docs/PERFORMANCE.md
// has its cost).
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}
}

// argon2Limits caps the parameters accepted from a keyring file.
type argon2Limits struct{ time, memoryKiB uint32 }

var defaultArgon2Limits = argon2Limits{time: maxArgon2Time, memoryKiB: maxArgon2MemoryKiB}

func (p Argon2Params) check(lim argon2Limits) error {
	switch {
	case p.Time < 1 || p.Time > lim.time:
		return fmt.Errorf("argon2id time %d outside [1, %d]: %w", p.Time, lim.time, ErrFormat)
	case p.Threads < 1 || p.Threads > maxArgon2Threads:
		return fmt.Errorf("argon2id threads %d outside [1, %d]: %w", p.Threads, maxArgon2Threads, ErrFormat)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > lim.memoryKiB:
		return fmt.Errorf("argon2id memory %d KiB outside [8*threads, %d]: %w", p.MemoryKiB, lim.memoryKiB, ErrFormat)
	}
	return nil
}

// MarshalKeyring encodes k as a key file (docs/FORMAT.md, section 4). With
// a nil passphrase the encoding is plain (secret: store it mode 0600):
//
//	securefsd-keyring v1
//	active <id>
//	kek <id> <base64 of 32 bytes>
//	...
//
// With a passphrase (not empty: ErrPassphrase) it is sealed under a key
// derived from the passphrase by Argon2id with parameters p (zero value:
// DefaultArgon2Params; ignored without a passphrase):
//
//	securefsd-keyring-sealed v1
//	argon2id t=<time> m=<KiB> p=<threads>
//	salt <base64 of 16 bytes>
//	nonce <base64 of 24 bytes>
//	data <base64 of XChaCha20-Poly1305(plain encoding), AAD = the 4 lines above>
//
// The caller should clear the result after use.
func MarshalKeyring(k *Keyring, passphrase []byte, p Argon2Params) ([]byte, error) {
	var b []byte
	var err error
	if passphrase == nil {
		b, err = marshalPlain(k)
	} else {
		b, err = marshalSealed(k, passphrase, p)
	}
	if err != nil {
		return nil, fmt.Errorf("envelope: keyring: %w", err)
	}
	return b, nil
}

func marshalPlain(k *Keyring) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if len(k.keys) == 0 || k.keys[k.active] == nil {
		return nil, errors.New("no active KEK")
	}
	// Sized once and built in place, so that no copy of a key is left in
	// memory the caller cannot clear.
	b := make([]byte, 0, len(plainHeader)+32+len(k.keys)*(16+base64.StdEncoding.EncodedLen(keySize)))
	b = append(b, plainHeader+"\n"...)
	b = fmt.Appendf(b, "active %d\n", k.active)
	for _, id := range slices.Sorted(maps.Keys(k.keys)) {
		b = fmt.Appendf(b, "kek %d ", id)
		b = base64.StdEncoding.AppendEncode(b, k.keys[id].key[:])
		b = append(b, '\n')
	}
	return b, nil
}

func marshalSealed(k *Keyring, passphrase []byte, p Argon2Params) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("empty passphrase: %w", ErrPassphrase)
	}
	if p == (Argon2Params{}) {
		p = DefaultArgon2Params()
	}
	if err := p.check(defaultArgon2Limits); err != nil {
		return nil, err
	}
	plain, err := marshalPlain(k)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	salt := make([]byte, argon2SaltSize)
	randomBytes(salt)
	nonce := make([]byte, nonceSize)
	randomBytes(nonce)
	head := sealedHead(p, salt, nonce)
	aead, err := passphraseAEAD(passphrase, salt, p)
	if err != nil {
		return nil, err
	}
	ct := aead.Seal(nil, nonce, plain, []byte(head))
	return []byte(head + "data " + base64.StdEncoding.EncodeToString(ct) + "\n"), nil
}

func sealedHead(p Argon2Params, salt, nonce []byte) string {
	return fmt.Sprintf("%s\nargon2id t=%d m=%d p=%d\nsalt %s\nnonce %s\n", sealedHeader,
		p.Time, p.MemoryKiB, p.Threads,
		base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(nonce))
}

func passphraseAEAD(passphrase, salt []byte, p Argon2Params) (cipher.AEAD, error) {
	key := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, keySize)
	defer clear(key)
	return newPassphraseAEAD(key)
}

// ParseKeyring decodes a key file made by MarshalKeyring, plain (passphrase
// nil) or sealed. A sealed keyring with a wrong passphrase, or
// without one, is ErrPassphrase; a plain one given a passphrase is refused
// (ErrFormat), as that is most likely the wrong file. Argon2id parameters
// outside the limits in docs/FORMAT.md are refused before any work.
func ParseKeyring(data []byte, passphrase []byte) (*Keyring, error) {
	k, err := parseKeyring(data, passphrase, defaultArgon2Limits)
	if err != nil {
		return nil, fmt.Errorf("envelope: keyring: %w", err)
	}
	return k, nil
}

// MaxKeyringSize is the largest key file ParseKeyring accepts (a reader of
// key files need read no more than one byte beyond it).
const MaxKeyringSize = maxKeyringFile

func parseKeyring(data []byte, passphrase []byte, lim argon2Limits) (*Keyring, error) {
	if len(data) > maxKeyringFile {
		return nil, fmt.Errorf("larger than %d bytes: %w", maxKeyringFile, ErrFormat)
	}
	first, _, _ := bytes.Cut(data, []byte("\n"))
	switch string(first) {
	case plainHeader:
		if passphrase != nil {
			return nil, fmt.Errorf("a passphrase was given but the key file is not passphrase-protected: %w", ErrFormat)
		}
		return parsePlain(data)
	case sealedHeader:
		if passphrase == nil {
			return nil, fmt.Errorf("key file is passphrase-protected and no passphrase was given: %w", ErrPassphrase)
		}
		return parseSealed(data, passphrase, lim)
	default:
		return nil, fmt.Errorf("not a securefsd keyring: %w", ErrFormat)
	}
}

// lines splits data into lines (sharing its memory: no copies of secrets);
// the last line must end in "\n".
func lines(data []byte) ([][]byte, error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("missing final newline: %w", ErrFormat)
	}
	return bytes.Split(data[:len(data)-1], []byte("\n")), nil
}

// parseID parses a canonical decimal non-zero uint32.
func parseID(s string) (uint32, bool) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 || strconv.FormatUint(v, 10) != s {
		return 0, false
	}
	return uint32(v), true
}

func parsePlain(data []byte) (*Keyring, error) {
	ls, err := lines(data)
	if err != nil {
		return nil, err
	}
	bad := func(n int, what string) error {
		return fmt.Errorf("line %d: %s: %w", n+1, what, ErrFormat)
	}
	if len(ls) < 3 || string(ls[0]) != plainHeader {
		return nil, fmt.Errorf("too short: %w", ErrFormat)
	}
	if len(ls)-2 > maxKeyringKeys {
		return nil, fmt.Errorf("more than %d KEKs: %w", maxKeyringKeys, ErrFormat)
	}
	rest, ok := bytes.CutPrefix(ls[1], []byte("active "))
	active, ok2 := parseID(string(rest))
	if !ok || !ok2 {
		return nil, bad(1, "want \"active <id>\"")
	}
	k := &Keyring{keys: map[uint32]*kek{}, active: active}
	// Decode needs room for DecodedLen bytes (33 for 44 characters), even
	// though only 32 are valid.
	key := make([]byte, base64.StdEncoding.DecodedLen(base64.StdEncoding.EncodedLen(keySize)))
	defer clear(key)
	for n := 2; n < len(ls); n++ {
		f := bytes.Split(ls[n], []byte(" "))
		if len(f) != 3 || string(f[0]) != "kek" {
			return nil, bad(n, "want \"kek <id> <base64 key>\"")
		}
		id, ok := parseID(string(f[1]))
		if !ok {
			return nil, bad(n, "bad KEK id")
		}
		if _, dup := k.keys[id]; dup {
			return nil, bad(n, "duplicate KEK id")
		}
		if len(f[2]) != base64.StdEncoding.EncodedLen(keySize) {
			return nil, bad(n, "KEK is not 32 bytes")
		}
		if m, err := base64.StdEncoding.Strict().Decode(key, f[2]); err != nil || m != keySize {
			return nil, bad(n, "bad base64")
		}
		if want, err := kekID(key[:keySize]); err != nil || want != id {
			return nil, bad(n, "KEK id does not match the key (damaged key file?)")
		}
		nk, err := newKEK(key[:keySize])
		if err != nil {
			return nil, err
		}
		k.keys[id] = nk
	}
	if k.keys[active] == nil {
		return nil, fmt.Errorf("active KEK %d not present: %w", active, ErrFormat)
	}
	return k, nil
}

func parseSealed(data []byte, passphrase []byte, lim argon2Limits) (*Keyring, error) {
	ls, err := lines(data)
	if err != nil {
		return nil, err
	}
	if len(ls) != 5 {
		return nil, fmt.Errorf("sealed: want 5 lines, have %d: %w", len(ls), ErrFormat)
	}
	var p Argon2Params
	var t, m, th uint64
	if _, err := fmt.Sscanf(string(ls[1]), "argon2id t=%d m=%d p=%d", &t, &m, &th); err != nil ||
		t > math.MaxUint32 || m > math.MaxUint32 || th > math.MaxUint8 {
		return nil, fmt.Errorf("sealed: bad argon2id line: %w", ErrFormat)
	}
	p = Argon2Params{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(th)}
	if err := p.check(lim); err != nil {
		return nil, err
	}
	field := func(line, name string, size int) ([]byte, error) {
		v, ok := strings.CutPrefix(line, name+" ")
		b, err := base64.StdEncoding.Strict().DecodeString(v)
		if !ok || err != nil || (size > 0 && len(b) != size) {
			return nil, fmt.Errorf("sealed: bad %s line: %w", name, ErrFormat)
		}
		return b, nil
	}
	salt, err := field(string(ls[2]), "salt", argon2SaltSize)
	if err != nil {
		return nil, err
	}
	nonce, err := field(string(ls[3]), "nonce", nonceSize)
	if err != nil {
		return nil, err
	}
	ct, err := field(string(ls[4]), "data", 0)
	if err != nil {
		return nil, err
	}
	head := sealedHead(p, salt, nonce)
	if !strings.HasPrefix(string(data), head) {
		// Non-canonical spelling of a parameter: refuse rather than
		// authenticate something other than what is stored.
		return nil, fmt.Errorf("sealed: non-canonical header: %w", ErrFormat)
	}
	aead, err := passphraseAEAD(passphrase, salt, p)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nonce, ct, []byte(head))
	if err != nil {
		return nil, fmt.Errorf("wrong passphrase or damaged key file: %w", ErrPassphrase)
	}
	defer clear(plain)
	return parsePlain(plain)
}
