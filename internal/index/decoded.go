package index

import (
	"bytes"
	"sync"
)

// decodedCacheSize bounds the records an Index keeps decoded: the
// directories and inodes of the paths in use and of a listed directory
// of 10,000 entries or more (some 0.6 KiB each, 20 MiB at most).
const decodedCacheSize = 32768

// decodedCache keeps records as their callers decoded them, each with the
// sealed value it was opened from. A record read again is served from it
// only if its sealed value is byte for byte the one cached, which opened
// under this key: a value changed, put back or forged on disk is opened
// (and authenticated) again, never served from memory.
type decodedCache struct {
	mu sync.Mutex
	m  map[string]decoded
}

type decoded struct {
	sealed []byte
	v      any
}

func (c *decodedCache) get(sk, sealed []byte) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[string(sk)]
	if !ok || !bytes.Equal(d.sealed, sealed) {
		return nil, false
	}
	return d.v, true
}

func (c *decodedCache) put(sk, sealed []byte, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]decoded)
	}
	if _, ok := c.m[string(sk)]; !ok && len(c.m) >= decodedCacheSize {
		for k := range c.m { // any one: map order is random enough here
			delete(c.m, k)
			break
		}
	}
	c.m[string(sk)] = decoded{sealed: bytes.Clone(sealed), v: v}
}

// GetDecoded is Get, with the value decoded by decode. A record read
// again with the same sealed value is neither opened nor decoded again:
// the value decode returned then is returned, shared, so the caller must
// never change it (copy what it changes). A record this transaction
// wrote is decoded like any other, unless PutDecoded wrote it with its
// decoded value.
func (tx *Tx) GetDecoded(kind Kind, key []byte, decode func(plain []byte) (any, error)) (any, error) {
	if p, ok := tx.lookup(storedKey(kind, key)); ok {
		// Not sealed yet: decoded, not cached (the cache holds what was
		// opened from a sealed value, or stored with PutDecoded).
		switch {
		case p.removed:
			return nil, ErrNotFound
		case p.decoded != nil:
			return p.decoded, nil
		}
		return decode(bytes.Clone(p.value))
	}
	sk, sealed, err := tx.sealed(kind, key)
	if err != nil {
		return nil, err
	}
	if v, ok := tx.x.decoded.get(sk, sealed); ok {
		return v, nil
	}
	plain, err := tx.x.open(sk, sealed)
	if err != nil {
		return nil, err
	}
	v, err := decode(plain)
	if err != nil {
		return nil, err
	}
	tx.x.decoded.put(sk, sealed, v)
	return v, nil
}
