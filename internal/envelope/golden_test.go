package envelope

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const goldenStore = "../../testdata/stores/v1"

// TestGoldenStoreV1 decrypts the golden store of format version 1, keyring
// files included. It must pass, unchanged, for as long as version 1 is
// readable.
func TestGoldenStoreV1(t *testing.T) {
	load := func(name string, pass []byte) *Keyring {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(goldenStore, name))
		must(t, err)
		kr, err := ParseKeyring(b, pass)
		must(t, err)
		return kr
	}
	plain := load("keyring", nil)
	sealed := load("keyring.sealed", []byte("securefsd golden v1"))
	if len(plain.IDs()) != 2 || !slices.Equal(plain.IDs(), sealed.IDs()) || plain.Active() != sealed.Active() {
		t.Fatalf("keyrings differ: %v/%d vs %v/%d", plain.IDs(), plain.Active(), sealed.IDs(), sealed.Active())
	}
	mf, err := os.Open(filepath.Join(goldenStore, "MANIFEST"))
	must(t, err)
	defer mf.Close()
	sc := bufio.NewScanner(mf)
	n := 0
	for sc.Scan() {
		// name, plaintext size, SHA-256 and, for a bound file, its
		// binding context in base64.
		f := strings.Fields(sc.Text())
		if len(f) != 3 && len(f) != 4 {
			t.Fatalf("MANIFEST line %q", sc.Text())
		}
		var binding []byte
		if len(f) == 4 {
			var err error
			binding, err = base64.StdEncoding.DecodeString(f[3])
			must(t, err)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		must(t, err)
		t.Run(f[0], func(t *testing.T) {
			stored, err := os.ReadFile(filepath.Join(goldenStore, "files", f[0]))
			must(t, err)
			for name, kr := range map[string]*Keyring{"plain": plain, "sealed": sealed} {
				got, err := readAllBound(t, stored, kr, binding)
				if err != nil || int64(len(got)) != size || fmt.Sprintf("%x", sha256.Sum256(got)) != f[2] {
					t.Fatalf("%s keyring: %v (%d bytes)", name, err, len(got))
				}
			}
			if binding != nil {
				// Bound for real: without the binding the header
				// does not open.
				if _, err := readAll(t, stored, plain); !errors.Is(err, ErrAuth) {
					t.Fatalf("read unbound: %v", err)
				}
			}
			// The files of the release are XChaCha20-Poly1305; xaes-*
			// and bound-* were added with AEAD id 2.
			wantAEAD := XChaCha20Poly1305
			if strings.HasPrefix(f[0], "xaes-") || strings.HasPrefix(f[0], "bound-") {
				wantAEAD = XAES256GCM
			}
			if AEAD(stored[9]) != wantAEAD {
				t.Fatalf("AEAD id %d, want %v", stored[9], wantAEAD)
			}
			ids, err := KeyIDs(newMem(stored))
			must(t, err)
			want := plain.Active()
			if f[0] == "old-kek" {
				want = slices.DeleteFunc(plain.IDs(), func(id uint32) bool { return id == plain.Active() })[0]
			}
			if !slices.Equal(ids, []uint32{want}) {
				t.Fatalf("KeyIDs %v, want [%d]", ids, want)
			}
		})
		n++
	}
	if n != 8 {
		t.Fatalf("%d files in MANIFEST", n)
	}
}
