// Package envelope implements securefsd's at-rest file format, version 1, as
// specified in docs/FORMAT.md, and the keyring of key-encryption keys (KEKs)
// that wrap each file's data key.
//
// A file is a fixed-size authenticated header followed by chunks of
// DefaultChunkSize plaintext bytes, each sealed under a fresh random 24-byte
// nonce with the file's content AEAD: XAES-256-GCM (the default for new
// files) or XChaCha20-Poly1305 (files keep the AEAD they were created with).
// Batches of whole chunks are sealed and opened on several goroutines.
// Reads and writes at any offset touch only the chunks involved. Any
// modification of the stored bytes makes the affected reads fail with
// ErrAuth, ErrTruncated or ErrStaleFinal: never wrong bytes.
//
// The package is pure: it does no file-system I/O and knows nothing of
// users, logging or protocols. Callers hand it a Backing (usually an
// *os.File); the only name it sees is the opaque binding context
// (Options.Binding, securefsd's home name); key files on disk are
// internal/keyfile's job.
//
// Outside the standard library it imports only golang.org/x/crypto (and
// golang.org/x/sys/cpu, to pick the AEAD the CPU runs fastest);
// scripts/check-imports.sh fails on anything else. All primitives are
// constructed in primitives.go; the byte layouts are in header.go and
// chunk.go, the size arithmetic in offsets.go, streams in stream.go,
// re-wrapping in rewrap.go and the keyring in keyring.go. The random-access
// File is split by job, each part readable against docs/FORMAT.md, section
// 8.1, on its own: file.go (the type and its locked methods), cache.go (the
// chunk cache), read.go (cache misses and read-ahead), append.go (the
// sequential-append fast path), flush.go (every write to the Backing, in
// the crash-safe order) and parallel.go (how batches are split over CPUs:
// by size, never by timings).
//
// Errors name the package once: "envelope: read: chunk 3: authentication
// failed"; test them with errors.Is against the sentinels below.
//
// Threat notes (docs/FORMAT.md, section 2): the format protects content
// confidentiality and the integrity of every stored byte against anyone
// without a KEK. It does not detect rollback of a file, header or chunk to an
// older valid version of itself, nor whole files swapped or deleted among
// files of the same binding, and it reveals plaintext sizes. A file created
// with a binding context (Options.Binding; securefsd's store binds each file
// to its owner's home) opens only with that same binding: moved to another
// binding it fails with ErrAuth. A *File and a *Keyring are safe for concurrent
// use; the streaming Reader and Writer are not.
package envelope

//go:generate go run gen_vectors.go

import (
	"errors"
	"fmt"
	"io"
)

// Sizes of format version 1 (docs/FORMAT.md).
const (
	// DefaultChunkSize is the plaintext size of every chunk but the last.
	// Format version 1 has exactly this chunk size.
	DefaultChunkSize = 64 << 10
	// HeaderSize is the fixed size of the on-disk header in bytes.
	HeaderSize = fixedSize + 2*slotSize
	// ChunkOverhead is what each chunk adds to its plaintext: a 24-byte
	// random nonce before the ciphertext and a 16-byte tag after it.
	ChunkOverhead = nonceSize + tagSize
	// FormatVersion is the version byte this package writes and reads.
	FormatVersion = 1
)

// AEAD identifies the content AEAD of a file (docs/FORMAT.md, header byte
// 9). A file keeps the AEAD it was created with for its whole life: writes,
// truncations and re-wraps never change it.
type AEAD byte

const (
	// XChaCha20-Poly1305 (AEAD id 1): the only AEAD of files created
	// before XAES-256-GCM became the default; read and written as ever.
	XChaCha20Poly1305 AEAD = 1
	// XAES-256-GCM (AEAD id 2, https://c2sp.org/XAES-256-GCM): AES-256-GCM
	// with a per-chunk key derived from the 24-byte random nonce. Fastest
	// where the CPU has AES and carry-less multiply instructions.
	XAES256GCM AEAD = 2
	// DefaultAEAD is what Create and NewWriter use for new files when
	// Options.AEAD is zero.
	DefaultAEAD = XAES256GCM
)

func (a AEAD) known() bool { return a == XChaCha20Poly1305 || a == XAES256GCM }

// String returns the AEAD's name.
func (a AEAD) String() string {
	switch a {
	case XChaCha20Poly1305:
		return "XChaCha20-Poly1305"
	case XAES256GCM:
		return "XAES-256-GCM"
	}
	return fmt.Sprintf("AEAD(%d)", byte(a))
}

// Sentinel errors for callers' decisions; test with errors.Is. Returned
// errors wrap them with context (chunk index, operation).
var (
	// ErrAuth: a chunk or the header failed authentication: tampered,
	// damaged, taken from another file, or opened with another binding.
	ErrAuth = errors.New("authentication failed")
	// ErrTruncated: the file ends without a valid final chunk (its last
	// chunk only opens as an interior chunk).
	ErrTruncated = errors.New("truncated file (no valid final chunk)")
	// ErrStaleFinal: an interior chunk only opens as the final chunk, as
	// left by an interrupted grow (or by appending to a copy).
	ErrStaleFinal = errors.New("interior chunk sealed as final (interrupted grow)")
	// ErrUnknownKey: no key slot of the header is wrapped by a KEK the
	// keyring has.
	ErrUnknownKey = errors.New("file key is wrapped by a KEK not in the keyring")
	// ErrVersion: unknown magic, version, AEAD or chunk size.
	ErrVersion = errors.New("unknown format or version")
	// ErrFormat: a ciphertext length no plaintext encodes to, or a
	// malformed header or keyring encoding.
	ErrFormat = errors.New("malformed data")
	// ErrPassphrase: wrong passphrase (or a damaged passphrase-sealed
	// keyring: the two cannot be told apart), or a passphrase is missing.
	ErrPassphrase = errors.New("wrong passphrase")
	// ErrTooLarge: a write or truncate beyond MaxPlaintextSize.
	ErrTooLarge = errors.New("size beyond the format's limit")
)

// Options choose how a file is created or which file is expected when it is
// opened. The zero value is an unbound file with DefaultAEAD: every
// function taking Options works with it.
type Options struct {
	// Binding ties the file to a context (for securefsd's store, the
	// owner's home; docs/FORMAT.md, section 5.5). It is not stored: every
	// key slot authenticates it, so a file opens, reads, verifies and
	// re-wraps only with the Binding it was created with; any other
	// (including none) is ErrAuth at the header. A re-wrap keeps it.
	Binding []byte
	// AEAD is the content AEAD of a new file; zero means DefaultAEAD (say
	// XChaCha20Poly1305 on a CPU without AES instructions). A file keeps
	// it for life. Opening ignores it: the header says which AEAD a file
	// uses.
	AEAD AEAD
}

// aead returns the content AEAD a new file gets, or ErrVersion.
func (o Options) aead() (AEAD, error) {
	a := o.AEAD
	if a == 0 {
		a = DefaultAEAD
	}
	if !a.known() {
		return 0, fmt.Errorf("%v: %w", a, ErrVersion)
	}
	return a, nil
}

// Backing is what a File is stored in; *os.File (opened read-write)
// implements it. The File reads and writes it at offsets only, never closes
// or syncs it, and relies on ReadAt returning a full buffer or an error.
// Within one call of a File method, it may call ReadAt from several
// goroutines at once (as io.ReaderAt allows: a parallel batch of chunks);
// WriteAt and Truncate are called from one goroutine at a time, in the
// order of docs/FORMAT.md, section 8.1.
type Backing interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}
