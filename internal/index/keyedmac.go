package index

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
)

// keyedMAC makes HMAC-SHA256 instances under one key. hmac.New hashes
// the key's inner and outer pads for every instance and allocates both
// digests; an index computes several keyed hashes per operation (a name
// key per path element, a root-hash term per record written), so new
// clones one instance that has already absorbed both pads instead (its
// Reset keeps the pads' hash states, as FIPS 198-1 section 6 allows, so a
// clone's Sum starts the outer hash from that state too).
type keyedMAC struct {
	key   []byte
	proto hash.Cloner // nil if the hash cannot be cloned: new uses hmac.New
}

func newKeyedMAC(key []byte) keyedMAC {
	k := keyedMAC{key: key}
	m := hmac.New(sha256.New, key)
	m.Reset()
	if c, ok := m.(hash.Cloner); ok {
		if _, err := c.Clone(); err == nil {
			k.proto = c
		}
	}
	return k
}

// new returns a fresh HMAC-SHA256 under the key. The prototype is only
// ever cloned, never written, so concurrent callers may share it.
func (k keyedMAC) new() hash.Hash {
	if k.proto != nil {
		if c, err := k.proto.Clone(); err == nil {
			return c
		}
	}
	return hmac.New(sha256.New, k.key)
}
