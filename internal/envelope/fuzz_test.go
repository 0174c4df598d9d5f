package envelope

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
)

// vectorSeeds adds the stored bytes of every vector to f's corpus and
// returns the vectors' keyring (all vectors share it, but for unknown_key).
func vectorSeeds(f *testing.F) *Keyring {
	paths, err := filepath.Glob("testdata/vectors/*")
	if err != nil || len(paths) == 0 {
		f.Fatalf("no vectors: %v", err)
	}
	var kr *Keyring
	for _, p := range paths {
		v := parseVector(f, p)
		f.Add(v.data)
		if v.name == "empty" {
			kr = v.kr
		}
	}
	return kr
}

// FuzzHeader: parsing never panics, and a header that parses is canonical
// (it marshals back to the same bytes: no malleable bits).
func FuzzHeader(f *testing.F) {
	vectorSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			for _, e := range []error{ErrFormat, ErrVersion} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unexpected error class: %v", err)
		}
		if !bytes.Equal(h.marshal(), b[:HeaderSize]) {
			t.Fatal("header is not canonical")
		}
		_, _ = KeyIDs(bytes.NewReader(b))
	})
}

// FuzzDecrypt decrypts arbitrary bytes with the vectors' keyring. Nothing
// may panic, and whatever decrypts must be the seeds' plaintext (byte i is
// i mod 251): without the key, a mutation can only fail.
func FuzzDecrypt(f *testing.F) {
	kr := vectorSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		size := int64(len(b))
		check := func(got []byte) {
			for i, c := range got {
				if c != byte(i%251) {
					t.Fatalf("forged plaintext at byte %d", i)
				}
			}
		}
		if file, err := Open(newMem(b), size, kr, Options{}); err == nil {
			p := make([]byte, file.Size()+1)
			n, err := file.ReadAt(p, 0)
			if err == io.EOF {
				check(p[:n])
			}
			// Writing to a damaged file must fail cleanly or work.
			if _, err := file.WriteAt([]byte("x"), file.Size()/2); err == nil {
				_ = file.Truncate(file.Size() / 3)
			}
			_ = file.Close()
		}
		if r, err := NewReader(newMem(b), size, kr, Options{}); err == nil {
			if got, err := io.ReadAll(r); err == nil {
				check(got)
			}
		}
		_ = Verify(newMem(b), size, kr, Options{})
		_, _ = Rewrap(newMem(b), size, kr, Options{})
	})
}

// FuzzKeyring parses arbitrary key files, plain and passphrase-sealed,
// with Argon2id capped low so that the fuzzer stays fast (the real caps
// are tested in TestKeyringHostileArgon2). What parses must re-encode to
// an equivalent keyring.
func FuzzKeyring(f *testing.F) {
	kr, err := NewKeyring()
	if err != nil {
		f.Fatal(err)
	}
	if _, err := kr.Rotate(); err != nil {
		f.Fatal(err)
	}
	plain, _ := MarshalKeyring(kr, nil, Argon2Params{})
	sealed, _ := MarshalKeyring(kr, []byte("pw"), cheapArgon2)
	f.Add(plain, false)
	f.Add(sealed, true)
	f.Add([]byte("securefsd-keyring v1\nactive 1\n"), false)
	f.Add([]byte("securefsd-keyring-sealed v1\nargon2id t=1 m=8 p=1\n"), true)
	lim := argon2Limits{time: 2, memoryKiB: 256}
	f.Fuzz(func(t *testing.T, data []byte, withPass bool) {
		var pass []byte
		if withPass {
			pass = []byte("pw")
		}
		k, err := parseKeyring(data, pass, lim)
		if err != nil {
			return
		}
		enc, err := MarshalKeyring(k, nil, Argon2Params{})
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseKeyring(enc, nil)
		if err != nil {
			t.Fatalf("re-encoded keyring does not parse: %v", err)
		}
		if k2.Active() != k.Active() || !slices.Equal(k2.IDs(), k.IDs()) {
			t.Fatal("re-encoded keyring differs")
		}
	})
}
