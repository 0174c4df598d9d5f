package pwpolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	p := Default()
	for _, c := range []struct {
		name, pw string
		want     error
	}{
		{"alice", "x", ErrTooShort},
		{"alice", "elevenchars", ErrTooShort},
		{"alice", "ünïcödé-12", ErrTooShort}, // 10 runes, more bytes
		{"alice", "1qaz2wsx3edc", ErrCommon},
		{"alice", "1QAZ2wsx3EDC", ErrCommon},
		{"alice", "my-alice-secret-1", ErrContainsName},
		{"alice", "my-ALICE-secret-1", ErrContainsName},
		{"al", "al-is-fine-here-1", nil},
		{"alice", "correct horse battery", nil},
		{"bob", "staple-zebra-9191", nil},
	} {
		err := p.Check(c.name, []byte(c.pw))
		if c.want == nil {
			if err != nil {
				t.Errorf("Check(%q, %q) = %v, want nil", c.name, c.pw, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || !errors.Is(err, ErrWeak) {
			t.Errorf("Check(%q, %q) = %v, want %v", c.name, c.pw, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), c.pw) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

func TestCommonListShipped(t *testing.T) {
	if len(commonList) != 10000 {
		t.Fatalf("common list has %d entries, want 10000", len(commonList))
	}
	p := Policy{MinLength: 1, Common: true}
	for _, w := range []string{"123456", "password", "letmein", "trustno1"} {
		if err := p.Check("someone", []byte(w)); !errors.Is(err, ErrCommon) {
			t.Errorf("%q: %v, want ErrCommon", w, err)
		}
	}
	p.Common = false
	if err := p.Check("someone", []byte("password")); err != nil {
		t.Errorf("common=off: %v", err)
	}
}

func TestParse(t *testing.T) {
	p, err := Parse("")
	if err != nil || p != Default() {
		t.Fatalf("Parse(\"\") = %v, %v", p, err)
	}
	p, err = Parse("min-length=8,common=off")
	if err != nil {
		t.Fatal(err)
	}
	if p.MinLength != 8 || p.Common || !p.Name {
		t.Fatalf("got %+v", p)
	}
	if q, err := Parse(p.String()); err != nil || q != p {
		t.Fatalf("round trip: %+v %v", q, err)
	}
	for _, bad := range []string{"min-length=0", "min-length=x", "common=maybe", "color=red", "common"} {
		if _, err := Parse(bad); !errors.Is(err, ErrBadSpec) {
			t.Errorf("Parse(%q) = %v, want ErrBadSpec", bad, err)
		}
	}
}
