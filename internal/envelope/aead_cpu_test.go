package envelope

import "testing"

func TestParseAEAD(t *testing.T) {
	for in, want := range map[string]AEAD{
		"XAES-256-GCM": XAES256GCM, "xaes-256-gcm": XAES256GCM,
		"XChaCha20-Poly1305": XChaCha20Poly1305, " xchacha20-poly1305 ": XChaCha20Poly1305,
		"auto": PreferredAEAD(), "": PreferredAEAD(),
	} {
		if got, err := ParseAEAD(in); err != nil || got != want {
			t.Errorf("ParseAEAD(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, a := range []AEAD{XAES256GCM, XChaCha20Poly1305} {
		if got, err := ParseAEAD(a.String()); err != nil || got != a {
			t.Errorf("ParseAEAD(%v.String()) = %v, %v", a, got, err)
		}
	}
	if _, err := ParseAEAD("aes-128-cbc"); err == nil {
		t.Error("ParseAEAD accepted aes-128-cbc")
	}
	if !PreferredAEAD().known() {
		t.Errorf("PreferredAEAD() = %v", PreferredAEAD())
	}
}
