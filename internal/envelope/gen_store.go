//go:build ignore

// gen_store wrote the golden store testdata/stores/v1 (at the repository
// root) once, when format version 1 was released. It is kept as a record
// of how the store was made; do not run it again: a golden store is never
// regenerated (a new format version gets a new store beside it).
//
// With -xaes it added, once, the XAES-256-GCM files (AEAD id 2, added to
// version 1 later) to the existing store, under its keyring; it refuses if
// they exist. With -bound it added, once, two files bound to a binding
// context (docs/FORMAT.md, section 5.5), as securefsd's store binds each
// file to its owner's home; their MANIFEST lines carry the binding in
// base64 as a fourth field.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/securefsd/securefsd/internal/envelope"
)

const (
	dir        = "../../testdata/stores/v1"
	passphrase = "securefsd golden v1"
)

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

func (m *mem) Truncate(n int64) error { m.b = m.b[:n]; return nil }

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func main() {
	xaes := flag.Bool("xaes", false, "add the XAES-256-GCM files to the existing store")
	bound := flag.Bool("bound", false, "add the bound files to the existing store")
	flag.Parse()
	if *xaes {
		addXAES()
		return
	}
	if *bound {
		addBound()
		return
	}
	if _, err := os.Stat(dir); err == nil {
		log.Fatalf("%s exists: golden stores are never regenerated", dir)
	}
	check(os.MkdirAll(filepath.Join(dir, "files"), 0o755))
	kr, err := envelope.NewKeyring()
	check(err)
	first := kr.Active()
	_, err = kr.Rotate()
	check(err)
	plain, err := envelope.MarshalKeyring(kr, nil, envelope.Argon2Params{})
	check(err)
	check(os.WriteFile(filepath.Join(dir, "keyring"), plain, 0o600))
	sealed, err := envelope.MarshalKeyring(kr, []byte(passphrase), envelope.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1})
	check(err)
	check(os.WriteFile(filepath.Join(dir, "keyring.sealed"), sealed, 0o600))

	multi := make([]byte, 3*envelope.DefaultChunkSize+7)
	for i := range multi {
		multi[i] = byte(i % 251)
	}
	var manifest string
	for _, f := range []struct {
		name string
		data []byte
		old  bool // wrapped under the first (non-active) KEK
	}{
		{"empty", nil, false},
		{"small", []byte("hello, securefsd\n"), false},
		{"multi", multi, false},
		{"old-kek", []byte("wrapped by the first KEK\n"), true},
	} {
		use := kr
		if f.old {
			// The same keyring with the first KEK active.
			text := fmt.Sprintf("securefsd-keyring v1\nactive %d\n", first) + string(plain[len(fmt.Sprintf("securefsd-keyring v1\nactive %d\n", kr.Active())):])
			use, err = envelope.ParseKeyring([]byte(text), nil)
			check(err)
		}
		m := &mem{}
		file, err := envelope.Create(m, use, envelope.Options{AEAD: envelope.XChaCha20Poly1305})
		check(err)
		if len(f.data) > 0 {
			_, err = file.WriteAt(f.data, 0)
			check(err)
		}
		check(file.Close())
		check(os.WriteFile(filepath.Join(dir, "files", f.name), m.b, 0o644))
		manifest += fmt.Sprintf("%s %d %x\n", f.name, len(f.data), sha256.Sum256(f.data))
	}
	check(os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte(manifest), 0o644))
}

// addXAES adds xaes-small and xaes-multi, XAES-256-GCM files under the
// store's active KEK, and their MANIFEST lines.
func addXAES() {
	if _, err := os.Stat(filepath.Join(dir, "files", "xaes-small")); err == nil {
		log.Fatal("the XAES-256-GCM files exist: golden stores are never regenerated")
	}
	text, err := os.ReadFile(filepath.Join(dir, "keyring"))
	check(err)
	kr, err := envelope.ParseKeyring(text, nil)
	check(err)
	multi := make([]byte, 3*envelope.DefaultChunkSize+7)
	for i := range multi {
		multi[i] = byte(i % 251)
	}
	mf, err := os.OpenFile(filepath.Join(dir, "MANIFEST"), os.O_APPEND|os.O_WRONLY, 0)
	check(err)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"xaes-small", []byte("hello, XAES-256-GCM\n")},
		{"xaes-multi", multi},
	} {
		m := &mem{}
		file, err := envelope.Create(m, kr, envelope.Options{AEAD: envelope.XAES256GCM})
		check(err)
		_, err = file.WriteAt(f.data, 0)
		check(err)
		check(file.Close())
		check(os.WriteFile(filepath.Join(dir, "files", f.name), m.b, 0o644))
		_, err = fmt.Fprintf(mf, "%s %d %x\n", f.name, len(f.data), sha256.Sum256(f.data))
		check(err)
	}
	check(mf.Close())
}

// addBound adds bound-small and bound-multi, XAES-256-GCM files under the
// store's active KEK bound to "securefsd home alice" (the binding vfs gives
// the files of home "alice"), and their MANIFEST lines.
func addBound() {
	if _, err := os.Stat(filepath.Join(dir, "files", "bound-small")); err == nil {
		log.Fatal("the bound files exist: golden stores are never regenerated")
	}
	text, err := os.ReadFile(filepath.Join(dir, "keyring"))
	check(err)
	kr, err := envelope.ParseKeyring(text, nil)
	check(err)
	binding := []byte("securefsd home alice")
	multi := make([]byte, 3*envelope.DefaultChunkSize+7)
	for i := range multi {
		multi[i] = byte(i % 251)
	}
	mf, err := os.OpenFile(filepath.Join(dir, "MANIFEST"), os.O_APPEND|os.O_WRONLY, 0)
	check(err)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"bound-small", []byte("hello, alice's home\n")},
		{"bound-multi", multi},
	} {
		m := &mem{}
		file, err := envelope.Create(m, kr, envelope.Options{Binding: binding, AEAD: envelope.XAES256GCM})
		check(err)
		_, err = file.WriteAt(f.data, 0)
		check(err)
		check(file.Close())
		check(os.WriteFile(filepath.Join(dir, "files", f.name), m.b, 0o644))
		_, err = fmt.Fprintf(mf, "%s %d %x %s\n", f.name, len(f.data), sha256.Sum256(f.data), base64.StdEncoding.EncodeToString(binding))
		check(err)
	}
	check(mf.Close())
}
