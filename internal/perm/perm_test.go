package perm

import (
	"errors"
	"testing"
)

// TestBits pins every right's bit and name: users.db stores the bits, so a
// renumbering would silently change every stored user's rights.
func TestBits(t *testing.T) {
	for _, tc := range []struct {
		p    Perm
		bit  uint32
		name string
	}{
		{List, 1 << 0, "list"},
		{Download, 1 << 1, "download"},
		{Upload, 1 << 2, "upload"},
		{Overwrite, 1 << 3, "overwrite"},
		{Delete, 1 << 4, "delete"},
		{Rename, 1 << 5, "rename"},
		{Mkdir, 1 << 6, "mkdir"},
		{Chmod, 1 << 7, "chmod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if uint32(tc.p) != tc.bit {
				t.Errorf("%s = %#x, want %#x", tc.name, uint32(tc.p), tc.bit)
			}
			if tc.p.String() != tc.name {
				t.Errorf("String = %q, want %q", tc.p.String(), tc.name)
			}
			if got, err := Parse(tc.name); err != nil || got != tc.p {
				t.Errorf("Parse(%q) = %v, %v", tc.name, got, err)
			}
			if !All.Has(tc.p) {
				t.Errorf("All lacks %s", tc.name)
			}
		})
	}
	if All != 0xff || ReadOnly != List|Download {
		t.Errorf("All = %#x, ReadOnly = %v", uint32(All), ReadOnly)
	}
}

func TestParseString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Perm
	}{
		{"", 0}, {"none", 0}, {"all", All}, {"rw", All}, {"read-write", All},
		{"ro", ReadOnly}, {"read-only", ReadOnly}, {"readonly", ReadOnly},
		{" List , UPLOAD ", List | Upload}, {"ro,chmod", ReadOnly | Chmod},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		back, err := Parse(got.String())
		if err != nil || back != got {
			t.Errorf("Parse(String(%v)) = %v, %v", got, back, err)
		}
	}
	if _, err := Parse("list,fly"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Parse(list,fly) err = %v, want ErrUnknown", err)
	}
	if s := (All | 1<<9).String(); s != "list,download,upload,overwrite,delete,rename,mkdir,chmod,0x200" {
		t.Errorf("unknown bits hidden: %q", s)
	}
	var p Perm
	if err := p.UnmarshalText([]byte("list,mkdir")); err != nil || p != List|Mkdir {
		t.Errorf("UnmarshalText = %v, %v", p, err)
	}
	if b, _ := p.MarshalText(); string(b) != "list,mkdir" {
		t.Errorf("MarshalText = %q", b)
	}
}
