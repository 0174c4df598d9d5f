// Package envelope implements securefsd's at-rest file format, version 1, as
// specified in docs/FORMAT.md, and the keyring of key-encryption keys (KEKs)
// that wrap each file's data key.
//
// A file is a fixed-size authenticated header followed by chunks of
// DefaultChunkSize plaintext bytes, each sealed under a fresh random 24-byte
// nonce with the file's content AEAD: XAES-256-GCM (the default for new
// files) or XChaCha20-Poly1305 (files keep the AEAD they were created with).
// Batches of whole chunks are sealed and opened on several goroutines. Reads and writes at any offset touch only the chunks
// involved. Any modification of the stored bytes makes the affected reads
// fail with ErrAuth, ErrTruncated or ErrStaleFinal: never wrong bytes.
//
// The package is pure: it knows nothing of paths, users, logging or
// protocols. Callers hand it an io.ReaderAt/io.WriterAt (usually an *os.File).
//
// It imports only the standard library and golang.org/x/crypto, and must
// stay that way (scripts/check-imports.sh). All primitives are constructed in
// primitives.go; the byte layouts are in header.go and chunk.go, the size
// arithmetic in offsets.go, the random-access File in file.go, streams in
// stream.go, re-wrapping in rewrap.go and the keyring in keyring.go.
//
// Threat notes (docs/FORMAT.md, section 2): the format protects content
// confidentiality and the integrity of every stored byte against anyone
// without a KEK. It does not detect rollback of a file, header or chunk to an
// older valid version of itself, nor whole files swapped or deleted among
// files of the same binding, and it reveals plaintext sizes. A file created
// with a binding context (CreateBound; securefsd's store binds each file to
// its owner's home) opens only with that same binding: moved to another
// binding it fails with ErrAuth. A *File and a *Keyring are safe for concurrent
// use; the streaming Reader and Writer are not.
package envelope

//go:generate go run gen_vectors.go

// API CONTRACT (kept stable for internal/vfs; the implementation may be split
// into header.go, chunk.go, offsets.go, keyring.go, primitives.go):
//
//	const DefaultChunkSize = 64 << 10
//	const HeaderSize       // fixed size of the on-disk header in bytes
//	const ChunkOverhead    // per-chunk bytes added (nonce + tag)
//
//	var ErrAuth        // a chunk or the header failed authentication (tampered, wrong file)
//	var ErrTruncated   // the file ends without a valid final chunk
//	var ErrStaleFinal  // an interior chunk only opens as final (interrupted grow)
//	var ErrUnknownKey  // no key slot is wrapped by a KEK in the keyring
//	var ErrVersion     // unknown magic/version/AEAD/chunk size
//	var ErrFormat      // impossible ciphertext length or malformed header
//	var ErrPassphrase  // wrong passphrase for a passphrase-protected keyring
//
//	// Size arithmetic, no I/O, no decryption. An impossible length is ErrFormat.
//	func PlaintextSize(ciphertextSize int64) (int64, error)   // DefaultChunkSize layout
//	func CiphertextSize(plaintextSize int64) int64
//
//	// Backing is what a File is stored in; *os.File implements it.
//	type Backing interface {
//		io.ReaderAt
//		io.WriterAt
//		Truncate(size int64) error
//	}
//
//	// Create writes a new empty file (header + one empty final chunk) to b,
//	// with a fresh DEK wrapped by kr's active KEK. b must be empty.
//	func Create(b Backing, kr *Keyring) (*File, error)
//	// Open parses and authenticates the header of an existing file whose
//	// ciphertext is ciphertextSize bytes long.
//	func Open(b Backing, ciphertextSize int64, kr *Keyring) (*File, error)
//
//	// File is safe for concurrent use by multiple goroutines: concurrent,
//	// out-of-order ReadAt/WriteAt/Truncate are serialized internally and a
//	// small write-back cache of dirty chunks absorbs 32 KiB SFTP writes.
//	func (f *File) ReadAt(p []byte, off int64) (int, error)   // io.EOF at end, like os.File
//	func (f *File) WriteAt(p []byte, off int64) (int, error)  // past EOF fills with encrypted zeros
//	func (f *File) Truncate(size int64) error                 // shrink or grow
//	func (f *File) Size() int64                               // plaintext size, including unflushed writes
//	func (f *File) Flush() error                              // write dirty chunks to b in crash-safe order
//	func (f *File) Close() error                              // Flush; releases keys; does not close b
//	func (f *File) FileID() [32]byte
//
//	// Rewrap re-wraps the file's DEK under kr's active KEK using the free key
//	// slot (generation+1), then clears the old slot. Content is not touched.
//	// It reports whether anything changed (false if already on the active KEK).
//	// syncFn, if not nil, is called between the two header writes (fsync).
//	func Rewrap(b Backing, ciphertextSize int64, kr *Keyring, syncFn func() error) (changed bool, err error)
//	// KeyIDs reports which KEK ids the file's header slots reference (no key needed).
//	func KeyIDs(r io.ReaderAt) ([]uint32, error)
//	// Verify authenticates every chunk of the file.
//	func Verify(r Backing, ciphertextSize int64, kr *Keyring) error
//
//	// Bound variants (added): the file is tied to a binding context, e.g.
//	// the owner's home; the binding is not stored but authenticated in every
//	// key slot's AAD, so another binding fails with ErrAuth at the header.
//	// The unbound functions above and below are these with an empty binding.
//	func CreateBound(b Backing, kr *Keyring, binding []byte) (*File, error)
//	func OpenBound(b Backing, ciphertextSize int64, kr *Keyring, binding []byte) (*File, error)
//	func RewrapBound(b Backing, ciphertextSize int64, kr *Keyring, binding []byte, syncFn func() error) (bool, error)
//	func VerifyBound(r Backing, ciphertextSize int64, kr *Keyring, binding []byte) error
//	func NewWriterBound(dst io.Writer, kr *Keyring, binding []byte) (io.WriteCloser, error)
//	func NewReaderBound(src io.ReaderAt, ciphertextSize int64, kr *Keyring, binding []byte) (io.Reader, error)
//
//	// Content AEADs (added): a file keeps the AEAD it was created with;
//	// Create, CreateBound, NewWriter and NewWriterBound use DefaultAEAD.
//	type AEAD byte
//	const XChaCha20Poly1305 AEAD = 1; const XAES256GCM AEAD = 2; const DefaultAEAD = XAES256GCM
//	func CreateAEAD(b Backing, kr *Keyring, binding []byte, aead AEAD) (*File, error)
//	func NewWriterAEAD(dst io.Writer, kr *Keyring, binding []byte, aead AEAD) (io.WriteCloser, error)
//	func (f *File) AEAD() AEAD
//	// Parallel chunk crypto (added): which batches a File splits over
//	// goroutines; DefaultParallelism = ParallelReads.
//	type Parallelism uint8 // ParallelNone, ParallelReads, ParallelWrites, ParallelAll
//	func (f *File) SetParallelism(p Parallelism)
//
//	// Streaming helpers in the style of filippo.io/age:
//	func NewWriter(dst io.Writer, kr *Keyring) (io.WriteCloser, error)
//	func NewReader(src io.ReaderAt, ciphertextSize int64, kr *Keyring) (io.Reader, error)
//
//	// Keyring: several KEKs with uint32 ids, one active. Safe for concurrent use.
//	func NewKeyring() (*Keyring, error)               // one fresh random active KEK
//	func (k *Keyring) Active() uint32
//	func (k *Keyring) IDs() []uint32
//	func (k *Keyring) Rotate() (uint32, error)         // add a fresh KEK and make it active
//	func (k *Keyring) Remove(id uint32) error          // cannot remove the active KEK
//	func (k *Keyring) Clone() *Keyring
//	// Key files: MarshalKeyring (plain, for a 0600 key file) or sealed with a passphrase (Argon2id).
//	func MarshalKeyring(k *Keyring) ([]byte, error)
//	func MarshalKeyringPassphrase(k *Keyring, passphrase []byte, p Argon2Params) ([]byte, error)
//	func ParseKeyring(data []byte, passphrase []byte) (*Keyring, error)  // passphrase nil for a plain key file
//	type Argon2Params struct{ Time, MemoryKiB uint32; Threads uint8 }
//	func DefaultArgon2Params() Argon2Params  // t=3, m=64 MiB, p=4
//	// File helpers: LoadKeyringFile refuses group/world-readable files (ErrKeyFilePerm);
//	// SaveKeyringFile writes atomically with mode 0600.
//	func LoadKeyringFile(path string, passphrase []byte) (*Keyring, error)
//	func SaveKeyringFile(path string, k *Keyring, passphrase []byte) error
//	var ErrKeyFilePerm

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
	// DefaultAEAD is what Create, CreateBound, NewWriter and
	// NewWriterBound use for new files.
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
	ErrAuth = errors.New("envelope: authentication failed")
	// ErrTruncated: the file ends without a valid final chunk (its last
	// chunk only opens as an interior chunk).
	ErrTruncated = errors.New("envelope: truncated file (no valid final chunk)")
	// ErrStaleFinal: an interior chunk only opens as the final chunk, as
	// left by an interrupted grow (or by appending to a copy).
	ErrStaleFinal = errors.New("envelope: interior chunk sealed as final (interrupted grow)")
	// ErrUnknownKey: no key slot of the header is wrapped by a KEK the
	// keyring has.
	ErrUnknownKey = errors.New("envelope: file key is wrapped by a KEK not in the keyring")
	// ErrVersion: unknown magic, version, AEAD or chunk size.
	ErrVersion = errors.New("envelope: unknown format or version")
	// ErrFormat: a ciphertext length no plaintext encodes to, or a
	// malformed header or keyring encoding.
	ErrFormat = errors.New("envelope: malformed data")
	// ErrPassphrase: wrong passphrase (or a damaged passphrase-sealed
	// keyring: the two cannot be told apart), or a passphrase is missing.
	ErrPassphrase = errors.New("envelope: wrong passphrase")
	// ErrKeyFilePerm: LoadKeyringFile refuses a key file that is not a
	// regular file or that group or others may access.
	ErrKeyFilePerm = errors.New("envelope: unsafe key file permissions")
	// ErrTooLarge: a write or truncate beyond MaxPlaintextSize.
	ErrTooLarge = errors.New("envelope: size beyond the format's limit")
)

// Backing is what a File is stored in; *os.File (opened read-write)
// implements it. The File reads and writes it at offsets only, never closes
// or syncs it, and relies on ReadAt returning a full buffer or an error.
// Within one call of a File method, it may call ReadAt from several
// goroutines at once (as io.ReaderAt allows: a parallel batch of chunks);
// WriteAt and Truncate are called from one goroutine at a time, in the
// order of docs/FORMAT.md, "Write order".
type Backing interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}
