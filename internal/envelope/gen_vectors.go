//go:build ignore

// gen_vectors writes the known-answer vectors in testdata/vectors, one case
// per file, using only the package's exported API and byte surgery. Run it
// with "go generate" after a deliberate format change (together with a
// version bump and docs/FORMAT.md); never to make a failing test pass. It
// writes only vectors that do not exist yet: committed vectors are never
// regenerated (their random keys and nonces would change).
//
// Vectors of XChaCha20-Poly1305 files (AEAD id 1) have plain names; those of
// XAES-256-GCM files (AEAD id 2) start with "xaes_". The AEAD-independent
// header cases exist once, as id 1 files.
//
// Vector file: "name: value" lines, an empty line, then the raw stored
// file. Names: expect (success, header failure, auth failure, truncated,
// stale final, unknown key, format failure), error (the sentinel a reader
// must report), kek (id and base64 KEK; several), active, binding (base64
// of the binding context the reader must use; absent: empty binding), size
// and sha256 (of the plaintext, for success), comment. Plaintext byte i is i mod 251.
// Fixed KEK n is the 32 bytes 32n, 32n+1, ..., 32n+31; the vectors' keyring
// holds fixed KEKs 0 (active) and 1.
package main

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/securefsd/securefsd/internal/envelope"
)

const cs = envelope.DefaultChunkSize

type mem struct{ b []byte }

func (m *mem) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *mem) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func (m *mem) Truncate(n int64) error {
	if int(n) <= len(m.b) {
		m.b = m.b[:n]
	} else {
		m.b = append(m.b, make([]byte, int(n)-len(m.b))...)
	}
	return nil
}

// Sync has nothing to make durable in memory (Rewrap needs the method).
func (m *mem) Sync() error { return nil }

// syncFunc gives a mem a Sync that calls fn (to stop Rewrap between its two
// header writes).
type syncFunc struct {
	*mem
	fn func() error
}

func (s syncFunc) Sync() error { return s.fn() }

// fixedKEK returns fixed KEK number n (0, 1, 2): bytes 32n .. 32n+31.
func fixedKEK(n int) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(32*n + i)
	}
	return k
}

// kekID derives a KEK's id independently of the package (docs/FORMAT.md,
// section 4), as a cross-check of its derivation.
func kekID(key []byte) uint32 {
	b, err := hkdf.Key(sha256.New, key, nil, "securefsd/v1 kek id", 4)
	if err != nil {
		log.Fatal(err)
	}
	return binary.BigEndian.Uint32(b)
}

// keyring returns a keyring of the fixed KEKs numbered ns, the first active,
// and its description for vector files.
func keyring(ns ...int) (*envelope.Keyring, string) {
	text := fmt.Sprintf("securefsd-keyring v1\nactive %d\n", kekID(fixedKEK(ns[0])))
	var lines string
	for _, n := range ns {
		l := fmt.Sprintf("%d %s", kekID(fixedKEK(n)), base64.StdEncoding.EncodeToString(fixedKEK(n)))
		text += "kek " + l + "\n"
		lines += "kek: " + l + "\n"
	}
	kr, err := envelope.ParseKeyring([]byte(text), nil)
	if err != nil {
		log.Fatal(err)
	}
	return kr, lines + fmt.Sprintf("active: %d\n", kekID(fixedKEK(ns[0])))
}

func plaintext(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

// aead is the content AEAD of the files being made (one pass per AEAD).
var aead envelope.AEAD

func create(kr *envelope.Keyring, size int) *mem { return createBound(kr, size, nil) }

func createBound(kr *envelope.Keyring, size int, binding []byte) *mem {
	m := &mem{}
	f, err := envelope.Create(m, kr, envelope.Options{Binding: binding, AEAD: aead})
	if err != nil {
		log.Fatal(err)
	}
	if size > 0 {
		if _, err := f.WriteAt(plaintext(size), 0); err != nil {
			log.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	return m
}

func flip(b []byte, off int) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0x80
	return c
}

func chunkOff(i int) int { return envelope.HeaderSize + i*(cs+envelope.ChunkOverhead) }

type vector struct {
	name, expect, errName, comment string
	size                           int    // plaintext size, for success
	binding                        []byte // the reader's binding context
	data                           []byte
}

// aeadIndependent: header cases that do not depend on the AEAD, made for
// id 1 only.
var aeadIndependent = map[string]bool{"header_bad_magic": true, "header_version_2": true,
	"header_reserved": true, "header_empty_slot": true, "bad_length": true, "header_aead_3": true,
	"header_chunk_size": true, "header_kek_id_zero": true, "header_no_slot": true, "header_equal_generations": true}

func main() {
	out := "testdata/vectors"
	if err := os.MkdirAll(out, 0o755); err != nil {
		log.Fatal(err)
	}
	for _, pass := range []struct {
		aead   envelope.AEAD
		prefix string
	}{{envelope.XChaCha20Poly1305, ""}, {envelope.XAES256GCM, "xaes_"}} {
		aead = pass.aead
		for _, v := range vectors() {
			if pass.prefix != "" && aeadIndependent[v.name] {
				continue
			}
			v.name = pass.prefix + v.name
			v.comment = fmt.Sprintf("%s; %s (AEAD id %d)", v.comment, aead, byte(aead))
			write(out, v)
		}
	}
}

func vectors() []vector {
	kr, _ := keyring(0, 1)
	kr2, _ := keyring(1, 0)
	kr9, _ := keyring(2)
	var vs []vector
	ok := func(name string, size int, data []byte, comment string) {
		vs = append(vs, vector{name: name, expect: "success", size: size, data: data, comment: comment})
	}
	bad := func(name, expect, errName string, data []byte, comment string) {
		vs = append(vs, vector{name: name, expect: expect, errName: errName, data: data, comment: comment})
	}
	for _, s := range []struct {
		name string
		size int
	}{{"empty", 0}, {"one_byte", 1}, {"chunk_minus_one", cs - 1}, {"one_chunk", cs}, {"chunk_plus_one", cs + 1}} {
		ok(s.name, s.size, create(kr, s.size).b, fmt.Sprintf("%d plaintext bytes, key slot 0 under fixed KEK 0", s.size))
	}

	m := create(kr, 100)
	if _, err := envelope.Rewrap(m, int64(len(m.b)), kr2, envelope.Options{}); err != nil {
		log.Fatal(err)
	}
	ok("rewrapped", 100, m.b, "re-wrapped under fixed KEK 1: slot 0 empty, slot 1 generation 2")

	m = create(kr, 100)
	stop := errors.New("stop")
	if _, err := envelope.Rewrap(syncFunc{m, func() error { return stop }}, int64(len(m.b)), kr2, envelope.Options{}); !errors.Is(err, stop) {
		log.Fatal(err)
	}
	ok("two_slots", 100, m.b, "interrupted re-wrap: slot 0 generation 1 (fixed KEK 0), slot 1 generation 2 (fixed KEK 1)")
	equalGen := bytes.Clone(m.b)
	copy(equalGen[128:132], []byte{0, 0, 0, 1})
	bad("header_equal_generations", "header failure", "ErrFormat", equalGen, "interrupted re-wrap with slot 1's generation changed to 1: both slots generation 1")

	small := create(kr, 100).b
	bad("header_bad_magic", "header failure", "ErrVersion", flip(small, 0), "magic byte 0 changed")
	v2 := bytes.Clone(small)
	v2[8] = 2
	bad("header_version_2", "header failure", "ErrVersion", v2, "version byte 2")
	bad("header_reserved", "header failure", "ErrFormat", flip(small, 12), "reserved byte 12 not zero")
	bad("header_file_id", "header failure", "ErrAuth", flip(small, 20), "file id byte 20 changed: the key slot's AAD no longer matches")
	bad("header_wrapped_dek", "header failure", "ErrAuth", flip(small, 90), "wrapped DEK of slot 0 changed")
	bad("header_empty_slot", "header failure", "ErrFormat", flip(small, 150), "empty slot 1 not all zero")
	// The other header failure classes of docs/FORMAT.md, section 5.3,
	// rules 3 and 4 (added later: the vectors above stay as committed).
	// Slot i starts at byte 48+80i: generation (4 bytes), KEK id (4), nonce,
	// wrapped DEK.
	c17 := bytes.Clone(small)
	c17[10] = 17
	bad("header_chunk_size", "header failure", "ErrVersion", c17, "chunk size log2 17 (version 1 has 16 only)")
	kid0 := bytes.Clone(small)
	copy(kid0[52:56], []byte{0, 0, 0, 0})
	bad("header_kek_id_zero", "header failure", "ErrFormat", kid0, "slot 0 in use (generation 1) with KEK id 0")
	noSlot := bytes.Clone(small)
	clear(noSlot[48:128])
	bad("header_no_slot", "header failure", "ErrFormat", noSlot, "slot 0 cleared: no key slot in use")
	bad("unknown_key", "unknown key", "ErrUnknownKey", create(kr9, 100).b, "wrapped under fixed KEK 2, which the keyring lacks")
	bad("chunk_tag", "auth failure", "ErrAuth", flip(small, len(small)-1), "last tag byte changed")
	bad("chunk_nonce", "auth failure", "ErrAuth", flip(small, envelope.HeaderSize), "first nonce byte changed")
	bad("chunk_ciphertext", "auth failure", "ErrAuth", flip(small, envelope.HeaderSize+24+50), "ciphertext byte 50 changed")

	two := create(kr, cs+1).b
	bad("truncated", "truncated", "ErrTruncated", two[:chunkOff(1)], "65537-byte file cut after chunk 0: no final chunk")

	// Interrupted grow: chunk 0 from the 64 KiB version (final), chunk 1
	// from the grown version of the same file.
	gm := &mem{}
	f, err := envelope.Create(gm, kr, envelope.Options{AEAD: aead})
	if err != nil {
		log.Fatal(err)
	}
	f.WriteAt(plaintext(cs), 0)
	f.Flush()
	oldChunk0 := bytes.Clone(gm.b[chunkOff(0):chunkOff(1)])
	f.WriteAt(plaintext(cs + 1)[cs:], cs)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	stale := bytes.Clone(gm.b)
	copy(stale[chunkOff(0):], oldChunk0)
	bad("stale_final", "stale final", "ErrStaleFinal", stale, "chunk 0 still sealed as final after the file grew to 65537 bytes")

	a, b := create(kr, 2*cs).b, create(kr, 2*cs).b
	swapped := bytes.Clone(a)
	copy(swapped[chunkOff(1):], b[chunkOff(1):chunkOff(2)])
	bad("swapped_chunk", "auth failure", "ErrAuth", swapped, "chunk 1 taken from another file (same KEK)")
	reordered := bytes.Clone(a)
	copy(reordered[chunkOff(0):], a[chunkOff(1):chunkOff(2)])
	copy(reordered[chunkOff(1):], a[chunkOff(0):chunkOff(1)])
	bad("reordered_chunks", "auth failure", "ErrAuth", reordered, "chunks 0 and 1 exchanged")
	bad("bad_length", "format failure", "ErrFormat", small[:envelope.HeaderSize+20], "20 bytes after the header: no valid length")
	other := bytes.Clone(small)
	other[9] ^= 3 // 1 <-> 2
	bad("header_aead_id", "header failure", "ErrAuth", other, "AEAD id byte 9 switched to the other known AEAD: the key slot's AAD no longer matches")
	a3 := bytes.Clone(small)
	a3[9] = 3
	bad("header_aead_3", "header failure", "ErrVersion", a3, "AEAD id 3: not defined")

	// Binding context (docs/FORMAT.md, section 5.5): securefsd's store binds
	// a file to its owner's home.
	alice, bob := []byte("securefsd home alice"), []byte("securefsd home bob")
	bound := func(v vector, binding []byte) {
		v.binding = binding
		vs = append(vs, v)
	}
	ba := createBound(kr, cs+1, alice).b
	bound(vector{name: "bound", expect: "success", size: cs + 1, data: ba,
		comment: `bound to "securefsd home alice" (binding appended to the slot AAD), read with that binding`}, alice)
	m = createBound(kr, 100, alice)
	if _, err := envelope.Rewrap(m, int64(len(m.b)), kr2, envelope.Options{Binding: alice}); err != nil {
		log.Fatal(err)
	}
	bound(vector{name: "bound_rewrapped", expect: "success", size: 100, data: m.b,
		comment: `bound to "securefsd home alice", re-wrapped under fixed KEK 1 (slot 1 generation 2, bound too)`}, alice)
	bound(vector{name: "bound_wrong_binding", expect: "header failure", errName: "ErrAuth", data: ba,
		comment: `bound to "securefsd home alice", read with "securefsd home bob" (a file moved to another home): the slot does not open`}, bob)
	bound(vector{name: "bound_read_unbound", expect: "header failure", errName: "ErrAuth", data: ba,
		comment: `bound to "securefsd home alice", read with the empty binding`}, nil)
	bound(vector{name: "unbound_read_bound", expect: "header failure", errName: "ErrAuth", data: create(kr, 100).b,
		comment: `unbound (empty binding), read with "securefsd home alice"`}, alice)

	return vs
}

// write writes v to dir, unless a vector of that name exists.
func write(dir string, v vector) {
	path := filepath.Join(dir, v.name)
	if _, err := os.Stat(path); err == nil {
		return
	}
	_, kekLines := keyring(0, 1)
	var h bytes.Buffer
	fmt.Fprintf(&h, "expect: %s\n", v.expect)
	if v.errName != "" {
		fmt.Fprintf(&h, "error: %s\n", v.errName)
	}
	h.WriteString(kekLines)
	if len(v.binding) > 0 {
		fmt.Fprintf(&h, "binding: %s\n", base64.StdEncoding.EncodeToString(v.binding))
	}
	if v.expect == "success" {
		fmt.Fprintf(&h, "size: %d\nsha256: %x\n", v.size, sha256.Sum256(plaintext(v.size)))
	}
	fmt.Fprintf(&h, "comment: %s\n\n", v.comment)
	h.Write(v.data)
	if err := os.WriteFile(path, h.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", path)
}
