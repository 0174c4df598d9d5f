package envelope

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// cheapArgon2 keeps tests fast; the defaults are exercised once.
var cheapArgon2 = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

func TestKeyringBasics(t *testing.T) {
	kr := testKeyring(t)
	id1 := kr.Active()
	if id1 == 0 || !slices.Equal(kr.IDs(), []uint32{id1}) {
		t.Fatalf("new keyring: active %d, ids %v", id1, kr.IDs())
	}
	id2, err := kr.Rotate()
	must(t, err)
	if id2 == id1 || kr.Active() != id2 || len(kr.IDs()) != 2 {
		t.Fatalf("Rotate: %d, active %d, ids %v", id2, kr.Active(), kr.IDs())
	}
	if err := kr.Remove(id2); err == nil {
		t.Fatal("removed the active KEK")
	}
	if err := kr.Remove(12345); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Remove(unknown): %v", err)
	}
	c := kr.Clone()
	id3, err := c.Rotate()
	must(t, err)
	must(t, c.Remove(id1))
	if !slices.Equal(kr.IDs(), sorted(id1, id2)) || !slices.Equal(c.IDs(), sorted(id2, id3)) {
		t.Fatalf("Clone is not independent: %v / %v", kr.IDs(), c.IDs())
	}
	// KEK 2 is shared: a file wrapped by it opens with the clone.
	stored := writeFile(t, kr, []byte("abc"))
	if _, err := readAll(t, stored, c); err != nil {
		t.Fatalf("clone reads a file of the shared KEK: %v", err)
	}
}

func sorted(ids ...uint32) []uint32 {
	slices.Sort(ids)
	return ids
}

// TestKEKIDIsFingerprint: the id is derived from the key, so two fresh
// keyrings practically never share an id, and a key file whose key and id
// disagree is refused.
func TestKEKIDIsFingerprint(t *testing.T) {
	a, b := testKeyring(t), testKeyring(t)
	if a.Active() == b.Active() {
		t.Fatal("two random KEKs with the same id")
	}
	key := make([]byte, 32)
	id, err := kekID(key)
	must(t, err)
	// Pinned, so that the derivation cannot change by accident.
	if id != 0xb93cb166 { // checked with Python's hmac/hashlib
		t.Fatalf("kekID(zero key) = %#08x", id)
	}
	text := fmt.Sprintf("securefsd-keyring v1\nactive %d\nkek %d %s\n", id+1, id+1, base64.StdEncoding.EncodeToString(key))
	if _, err := ParseKeyring([]byte(text), nil); !errors.Is(err, ErrFormat) {
		t.Fatalf("mismatched id: %v", err)
	}
}

func TestKeyringEncoding(t *testing.T) {
	kr := testKeyring(t)
	id1 := kr.Active()
	id2, err := kr.Rotate()
	must(t, err)
	id3, err := kr.Rotate()
	must(t, err)
	must(t, kr.Remove(id2))
	stored := writeFile(t, kr, []byte("payload"))

	plain, err := MarshalKeyring(kr, nil, Argon2Params{})
	must(t, err)
	lo, hi := min(id1, id3), max(id1, id3)
	wantHead := fmt.Sprintf("securefsd-keyring v1\nactive %d\nkek %d ", id3, lo)
	if !strings.HasPrefix(string(plain), wantHead) || !strings.Contains(string(plain), fmt.Sprintf("\nkek %d ", hi)) {
		t.Fatalf("plain encoding:\n%s", plain)
	}
	sealed, err := MarshalKeyring(kr, []byte("correct horse"), cheapArgon2)
	must(t, err)
	if bytes.Contains(sealed, plain[len(wantHead):][:20]) {
		t.Fatal("sealed keyring contains a plain key")
	}
	for name, tc := range map[string]struct {
		data []byte
		pass []byte
	}{"plain": {plain, nil}, "sealed": {sealed, []byte("correct horse")}} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseKeyring(tc.data, tc.pass)
			must(t, err)
			if got.Active() != id3 || !slices.Equal(got.IDs(), sorted(id1, id3)) {
				t.Fatalf("parsed: active %d, ids %v", got.Active(), got.IDs())
			}
			if _, err := readAll(t, stored, got); err != nil {
				t.Fatalf("parsed keyring cannot read: %v", err)
			}
			again, err := MarshalKeyring(got, nil, Argon2Params{})
			if err != nil || !bytes.Equal(again, plain) {
				t.Fatalf("re-marshal differs: %v", err)
			}
		})
	}
	kek1 := fmt.Sprintf("kek %d ", id1)
	for _, tc := range []struct {
		name string
		data []byte
		pass []byte
		want error
	}{
		{"wrong passphrase", sealed, []byte("wrong horse"), ErrPassphrase},
		{"missing passphrase", sealed, nil, ErrPassphrase},
		{"passphrase for plain file", plain, []byte("x"), ErrFormat},
		// A valid base64 character (not in the last quantum) changed:
		// the ciphertext no longer authenticates.
		{"damaged sealed data", swapB64(sealed, len(sealed)-10), []byte("correct horse"), ErrPassphrase},
		{"junk", []byte("hello\n"), nil, ErrFormat},
		{"empty", nil, nil, ErrFormat},
		{"no final newline", plain[:len(plain)-1], nil, ErrFormat},
		{"bad base64", bytes.Replace(plain, []byte(kek1), []byte(kek1+"*"), 1), nil, ErrFormat},
		{"damaged key", damageKey(plain, kek1), nil, ErrFormat},
		{"duplicate id", append(bytes.Clone(plain), plain[bytes.Index(plain, []byte(kek1)):]...), nil, ErrFormat},
		{"missing active", bytes.Replace(plain, []byte(fmt.Sprintf("active %d", id3)), []byte(fmt.Sprintf("active %d", id2)), 1), nil, ErrFormat},
		{"id zero", bytes.Replace(plain, []byte(kek1), []byte("kek 0 "), 1), nil, ErrFormat},
		{"leading zero id", bytes.Replace(plain, []byte(kek1), []byte(fmt.Sprintf("kek 0%d ", id1)), 1), nil, ErrFormat},
		{"too large", make([]byte, maxKeyringFile+1), nil, ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseKeyring(tc.data, tc.pass); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := MarshalKeyring(kr, []byte{}, cheapArgon2); !errors.Is(err, ErrPassphrase) {
		t.Errorf("empty passphrase accepted: %v", err)
	}
}

// damageKey changes the first base64 character of the key after prefix.
func damageKey(plain []byte, prefix string) []byte {
	c := bytes.Clone(plain)
	i := bytes.Index(c, []byte(prefix)) + len(prefix)
	if c[i] == 'A' {
		c[i] = 'B'
	} else {
		c[i] = 'A'
	}
	return c
}

// swapB64 replaces the base64 character at i by another valid one.
func swapB64(b []byte, i int) []byte {
	c := bytes.Clone(b)
	if c[i] == 'A' {
		c[i] = 'B'
	} else {
		c[i] = 'A'
	}
	return c
}

// TestKeyringHostileArgon2 checks that absurd Argon2id parameters in a
// keyring file are refused before any key derivation runs.
func TestKeyringHostileArgon2(t *testing.T) {
	kr := testKeyring(t)
	sealed, err := MarshalKeyring(kr, []byte("pw"), cheapArgon2)
	must(t, err)
	for _, params := range []string{
		"t=1 m=4294967295 p=1",  // 4 TiB
		"t=4294967295 m=64 p=1", // forever
		"t=1 m=2097152 p=1",     // 2 GiB: above the cap
		"t=33 m=64 p=1",
		"t=1 m=64 p=0",
		"t=1 m=64 p=255",
		"t=0 m=64 p=1",
		"t=1 m=7 p=1",
		"t=1 m=99999999999 p=1",
		"t=01 m=64 p=1", // not canonical
		"t=1 m=64 p=1 x",
	} {
		t.Run(params, func(t *testing.T) {
			bad := bytes.Replace(sealed, []byte("t=1 m=64 p=1"), []byte(params), 1)
			if _, err := ParseKeyring(bad, []byte("pw")); !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
	if _, err := MarshalKeyring(kr, []byte("pw"), Argon2Params{Time: 1, MemoryKiB: 1 << 30, Threads: 1}); !errors.Is(err, ErrFormat) {
		t.Errorf("marshal with absurd params: %v", err)
	}
}

// TestKeyringDefaultArgon2 runs the real default cost once.
func TestKeyringDefaultArgon2(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB Argon2id")
	}
	p := DefaultArgon2Params()
	if p.Time < 3 || p.MemoryKiB < 64<<10 || p.Threads < 1 {
		t.Fatalf("defaults too weak: %+v", p)
	}
	kr := testKeyring(t)
	data, err := MarshalKeyring(kr, []byte("pw"), Argon2Params{})
	must(t, err)
	if !bytes.Contains(data, []byte("argon2id t=3 m=65536 p=4\n")) {
		t.Fatalf("stored parameters:\n%s", data)
	}
	if _, err := ParseKeyring(data, []byte("pw")); err != nil {
		t.Fatal(err)
	}
}
