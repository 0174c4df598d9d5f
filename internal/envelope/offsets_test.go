package envelope

import (
	"errors"
	"fmt"
	"testing"
)

func TestSizeArithmetic(t *testing.T) {
	cs := int64(chunkSize)
	for _, tc := range []struct{ plain, cipher int64 }{
		{0, HeaderSize + 40},
		{1, HeaderSize + 41},
		{cs - 1, HeaderSize + cs - 1 + 40},
		{cs, HeaderSize + cs + 40},
		{cs + 1, HeaderSize + cs + 1 + 80},
		{3*cs + 7, HeaderSize + 3*cs + 7 + 160},
	} {
		t.Run(fmt.Sprint(tc.plain), func(t *testing.T) {
			if got := CiphertextSize(tc.plain); got != tc.cipher {
				t.Errorf("CiphertextSize(%d) = %d, want %d", tc.plain, got, tc.cipher)
			}
			got, err := PlaintextSize(tc.cipher)
			if err != nil || got != tc.plain {
				t.Errorf("PlaintextSize(%d) = %d, %v; want %d", tc.cipher, got, err, tc.plain)
			}
		})
	}
}

// TestSizeArithmeticRange checks, over several chunks' worth of lengths,
// that every valid ciphertext length maps back exactly and every other is
// ErrFormat.
func TestSizeArithmeticRange(t *testing.T) {
	valid := map[int64]int64{}
	for p := int64(0); p <= 4*chunkSize+100; p++ {
		c := CiphertextSize(p)
		if _, dup := valid[c]; dup {
			t.Fatalf("two plaintext sizes encode to %d", c)
		}
		valid[c] = p
	}
	for c := int64(0); c <= CiphertextSize(4*chunkSize+100); c++ {
		p, err := PlaintextSize(c)
		want, ok := valid[c]
		switch {
		case ok && (err != nil || p != want):
			t.Fatalf("PlaintextSize(%d) = %d, %v; want %d", c, p, err, want)
		case !ok && !errors.Is(err, ErrFormat):
			t.Fatalf("PlaintextSize(%d) = %d, %v; want ErrFormat", c, p, err)
		}
	}
	for _, bad := range []int64{-1, MaxPlaintextSize + 1} {
		if got := CiphertextSize(bad); got != -1 {
			t.Errorf("CiphertextSize(%d) = %d, want -1", bad, got)
		}
	}
	if _, err := PlaintextSize(CiphertextSize(MaxPlaintextSize) + 1); !errors.Is(err, ErrFormat) {
		t.Errorf("beyond the maximum: %v", err)
	}
}
