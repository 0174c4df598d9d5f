package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha3"
	"encoding/hex"
	"os"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	must(t, err)
	return b
}

// TestXAESVectors checks XAES-256-GCM against the test vectors of the
// C2SP specification (https://c2sp.org/XAES-256-GCM), intermediate values
// included: one with MSB(L) = 0, one with MSB(L) = 1.
func TestXAESVectors(t *testing.T) {
	for _, v := range []struct {
		name                   string
		key                    byte
		aad, l, k1, kx, sealed string
	}{
		{"msb0", 0x01, "", "7298caa565031eadc6ce23d23ea66378", "e531954aca063d5b8d9c47a47d4cc6f0",
			"c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b",
			"ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"},
		{"msb1", 0x03, "c2sp.org/XAES-256-GCM", "91c08762876dccf9ba204a33768fa5fe", "23810ec50edb99f374409466ed1f4b7b",
			"e9c621d4cdd9b11b00a6427ad7e559aeedd66b3857646677748f8ca796cb3fd8",
			"986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"},
	} {
		t.Run(v.name, func(t *testing.T) {
			x, err := newXAES256GCM(bytes.Repeat([]byte{v.key}, 32))
			must(t, err)
			var l [16]byte
			x.b.Encrypt(l[:], l[:])
			if got := hex.EncodeToString(l[:]); got != v.l {
				t.Errorf("L = %s, want %s", got, v.l)
			}
			if got := hex.EncodeToString(x.k1[:]); got != v.k1 {
				t.Errorf("K1 = %s, want %s", got, v.k1)
			}
			nonce := []byte("ABCDEFGHIJKLMNOPQRSTUVWX")
			var scr xaesScratch
			x.derive(&scr, nonce)
			if got := hex.EncodeToString(scr.k[:]); got != "0000000000000000000000000000000000000000000000000000000000000000" {
				t.Errorf("derive left the key in its scratch: %s", got)
			}
			// Kx, through a one-block AES-GCM of the derived key: compare
			// with crypto/aes under the spec's Kx.
			sealed := x.Seal(nil, nonce, []byte("XAES-256-GCM"), []byte(v.aad))
			if got := hex.EncodeToString(sealed); got != v.sealed {
				t.Errorf("sealed = %s, want %s", got, v.sealed)
			}
			ref := aesGCMSeal(t, unhex(t, v.kx), nonce[12:], []byte("XAES-256-GCM"), []byte(v.aad))
			if !bytes.Equal(ref, sealed) {
				t.Errorf("AES-256-GCM under the spec's Kx differs")
			}
			got, err := x.Open(nil, nonce, sealed, []byte(v.aad))
			if err != nil || string(got) != "XAES-256-GCM" {
				t.Errorf("Open: %q, %v", got, err)
			}
			sealed[3] ^= 1
			if _, err := x.Open(nil, nonce, sealed, []byte(v.aad)); err == nil {
				t.Error("Open of a tampered ciphertext succeeded")
			}
		})
	}
}

// TestXAESAccumulated runs the specification's accumulated randomized
// test: inputs read from SHAKE-128 of nothing, ciphertexts hashed with
// another SHAKE-128. 10,000 iterations always; the 1,000,000 of the spec
// with ENVELOPE_XAES_1M=1.
func TestXAESAccumulated(t *testing.T) {
	cases := []struct {
		n    int
		want string
	}{{10_000, "e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939"}}
	if os.Getenv("ENVELOPE_XAES_1M") != "" {
		cases = append(cases, struct {
			n    int
			want string
		}{1_000_000, "2163ae1445985a30b60585ee67daa55674df06901b890593e824b8a7c885ab15"})
	}
	for _, c := range cases {
		s, d := sha3.NewSHAKE128(), sha3.NewSHAKE128()
		read := func(n int) []byte {
			b := make([]byte, n)
			_, _ = s.Read(b)
			return b
		}
		for range c.n {
			key, nonce := read(32), read(24)
			plain := read(int(read(1)[0]))
			aad := read(int(read(1)[0]))
			x, err := newXAES256GCM(key)
			must(t, err)
			sealed := x.Seal(nil, nonce, plain, aad)
			got, err := x.Open(nil, nonce, sealed, aad)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("round trip: %v", err)
			}
			_, _ = d.Write(sealed)
		}
		sum := make([]byte, 32)
		_, _ = d.Read(sum)
		if got := hex.EncodeToString(sum); got != c.want {
			t.Errorf("%d iterations: %s, want %s", c.n, got, c.want)
		}
	}
}

func aesGCMSeal(t testing.TB, key, nonce, plain, aad []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	must(t, err)
	g, err := cipher.NewGCM(b)
	must(t, err)
	return g.Seal(nil, nonce, plain, aad)
}
