package envelope

import (
	"bufio"
	"crypto/sha256"
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
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("MANIFEST line %q", sc.Text())
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		must(t, err)
		t.Run(f[0], func(t *testing.T) {
			stored, err := os.ReadFile(filepath.Join(goldenStore, "files", f[0]))
			must(t, err)
			for name, kr := range map[string]*Keyring{"plain": plain, "sealed": sealed} {
				got, err := readAll(t, stored, kr)
				if err != nil || int64(len(got)) != size || fmt.Sprintf("%x", sha256.Sum256(got)) != f[2] {
					t.Fatalf("%s keyring: %v (%d bytes)", name, err, len(got))
				}
			}
			// The files of the release are XChaCha20-Poly1305; xaes-*
			// were added with AEAD id 2.
			wantAEAD := XChaCha20Poly1305
			if strings.HasPrefix(f[0], "xaes-") {
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
	if n != 6 {
		t.Fatalf("%d files in MANIFEST", n)
	}
}
