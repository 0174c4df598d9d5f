package vfs

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestCleanName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "."}, {"/", "."}, {".", "."}, {"..", "."}, {"/..", "."}, {"../..", "."},
		{"a", "a"}, {"/a/b/", "a/b"}, {"a//b", "a/b"}, {"a/./b", "a/b"},
		{"a/../b", "b"}, {"../a", "a"}, {"/../../a/../../b", "b"}, {"a/b/../../..", "."},
		{"...", "..."}, {"a..b", "a..b"}, {".hidden", ".hidden"}, {".securefs", ".securefs"},
	}
	for _, tc := range tests {
		got, err := cleanName("op", tc.in)
		if err != nil || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"a\x00", "a\\b", ".securefsd", "x/.securefsd-tmp", strings.Repeat("x", 256), strings.Repeat("a/", 2049)} {
		_, err := cleanName("op", bad)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != bad || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("cleanName(%q) = %v", bad, err)
		}
	}
}

// FuzzCleanName: a cleaned name never climbs out, is never absolute, and
// never holds a reserved element, NUL or backslash.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"", "/", "../a", "a/../../b", "a\x00", "a\\b", ".securefsd-meta", "x/./y//z/", "..\\..\\etc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := cleanName("op", name)
		if err != nil {
			return
		}
		if rel == "." {
			return
		}
		if strings.HasPrefix(rel, "/") || strings.ContainsAny(rel, "\x00\\") || len(rel) > maxPathLen {
			t.Fatalf("cleanName(%q) = %q", name, rel)
		}
		for _, e := range strings.Split(rel, "/") {
			if e == "" || e == "." || e == ".." || isReserved(e) || len(e) > maxNameLen {
				t.Fatalf("cleanName(%q) = %q: element %q", name, rel, e)
			}
		}
	})
}
