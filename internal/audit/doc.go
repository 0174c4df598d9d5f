// Package audit keeps securefsd's audit trail: one Record per operation on a
// user's data or an account, sealed and hash-chained in append-only segment
// files under the audit directory (docs/AUDIT.md is the reference).
//
// Keys. The trail has one random 256-bit audit key, stored in the audit
// directory as a small envelope file ("key") wrapped by the keyring like any
// stored file; `key rotate` re-wraps it, so rotating the KEK keeps every old
// segment readable. Records are sealed with XChaCha20-Poly1305 under a key
// derived from the audit key by HKDF-SHA256; the operational log's name
// tokens (--log-names hash) use a second derived key.
//
// Chain. A segment is a magic string followed by frames (a 4-byte length, a
// random 24-byte nonce, the sealed JSON). Frame 0 is the segment header; it
// carries the previous segment's final chain value, record count and size.
// The chain value after a frame is SHA-256(previous value || frame) and the
// associated data of every frame binds its segment number, its index and the
// chain value before it, so deleting, editing, reordering or truncating a
// record, and dropping or rolling back a whole segment, make Verify fail at a
// named segment and record. Retention removes whole segments after writing a
// sealed anchor that names the first kept segment and the chain value it
// starts from; a sealed head file names the last position written, so that
// cutting the newest records is also seen. An attacker holding no key cannot
// forge a frame; one who restores the whole directory (head included) from
// an older backup is not detected here: ship the trail to a SIEM
// (--audit-forward) for an external copy.
//
// Imports: the standard library, golang.org/x/crypto and internal/envelope
// (for the key file) only; never a protocol, vfs or users
// (scripts/check-imports.sh). The protocols hand records to a small
// interface of their own that *Log satisfies. No global state: every Log is a
// value built from Options.
package audit
