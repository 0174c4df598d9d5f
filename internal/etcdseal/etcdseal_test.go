package etcdseal

import (
	"bytes"
	"errors"
	"testing"
)

// TestSealer: a value opens under its key only, not under another key,
// another secret or when damaged or cut; names are stable per kind and
// value and differ between kinds and secrets.
func TestSealer(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	s, err := New(secret, "names", "values")
	if err != nil {
		t.Fatal(err)
	}
	v := s.Seal("k1", []byte("plain"))
	if got, err := s.Open("k1", v); err != nil || string(got) != "plain" {
		t.Fatalf("open: %q %v", got, err)
	}
	other, _ := New(bytes.Repeat([]byte{8}, 32), "names", "values")
	damaged := bytes.Clone(v)
	damaged[len(damaged)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"another key":    func() ([]byte, error) { return s.Open("k2", v) },
		"another secret": func() ([]byte, error) { return other.Open("k1", v) },
		"damaged":        func() ([]byte, error) { return s.Open("k1", damaged) },
		"cut":            func() ([]byte, error) { return s.Open("k1", v[:20]) },
	} {
		if _, err := try(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: %v, want ErrOpen", name, err)
		}
	}
	if s.Name("user", []byte("alice")) != s.Name("user", []byte("alice")) ||
		s.Name("user", []byte("alice")) == s.Name("tree", []byte("alice")) ||
		s.Name("user", []byte("alice")) == other.Name("user", []byte("alice")) ||
		len(s.Name("user", []byte("alice"))) != 32 {
		t.Error("names are not keyed hashes of kind and value")
	}
	if _, err := New(secret[:16], "a", "b"); err == nil {
		t.Error("a 16-byte secret accepted")
	}
}
