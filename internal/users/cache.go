package users

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// pwCache remembers recently verified (name, password) pairs so clients that
// send Basic auth with every request (WebDAV) pay Argon2id once per TTL.
//
// The key is HMAC-SHA256 under a per-process random key of
// name || 0 || password: the plaintext is never stored, and a memory dump
// yields nothing that can be attacked offline without the HMAC key. The
// value is the PasswordHash the password was verified against; a hit counts
// only while the user's current hash is the same string (so SetPassword or a
// rehash invalidates it) and the user is not disabled (checked by the
// caller). Safe for concurrent use.
type pwCache struct {
	ttl  time.Duration
	size int
	key  [32]byte

	mu sync.Mutex
	m  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	hash    string
	expires time.Time
}

func newPWCache(ttl time.Duration, size int) *pwCache {
	c := &pwCache{ttl: ttl, size: size, m: make(map[[32]byte]cacheEntry)}
	rand.Read(c.key[:])
	return c
}

func (c *pwCache) id(name string, password []byte) [32]byte {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(password)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// hit reports whether (name, password) was verified against currentHash
// within the TTL and usable (the user exists and is enabled) is true.
func (c *pwCache) hit(name string, password []byte, currentHash string, usable bool, now time.Time) bool {
	if c == nil {
		return false
	}
	id := c.id(name, password)
	if !usable || currentHash == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return false
	}
	if !now.Before(e.expires) || !hmac.Equal([]byte(e.hash), []byte(currentHash)) {
		delete(c.m, id)
		return false
	}
	return true
}

func (c *pwCache) put(name string, password []byte, hash string, now time.Time) {
	if c == nil || hash == "" {
		return
	}
	id := c.id(name, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= c.size {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m { // still full: drop arbitrary entries (map order)
			if len(c.m) < c.size {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[id] = cacheEntry{hash: hash, expires: now.Add(c.ttl)}
}

func (c *pwCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
