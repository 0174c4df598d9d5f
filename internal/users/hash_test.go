package users

import (
	"errors"
	"strings"
	"testing"
)

func TestPHC(t *testing.T) {
	h := hashPassword([]byte("pw"), tinyParams)
	p, err := parsePHC(h)
	if err != nil {
		t.Fatal(err)
	}
	if p.params != tinyParams || len(p.salt) != saltLen || len(p.hash) != hashLen {
		t.Errorf("parsed %+v", p)
	}
	if encodePHC(p) != h {
		t.Errorf("re-encode %q != %q", encodePHC(p), h)
	}
	if !p.verify([]byte("pw")) || p.verify([]byte("pW")) || p.verify(nil) {
		t.Error("verify is wrong")
	}
	if h2 := hashPassword([]byte("pw"), tinyParams); h2 == h {
		t.Error("two hashes of one password are equal (salt not random)")
	}

	salt, sum := strings.Split(h, "$")[4], strings.Split(h, "$")[5]
	bad := map[string]string{
		"empty":          "",
		"plain":          "password",
		"argon2i":        "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + sum,
		"bcrypt":         "$2b$10$abcdefghijklmnopqrstuv",
		"old version":    "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + sum,
		"missing p":      "$argon2id$v=19$m=64,t=1$" + salt + "$" + sum,
		"dup m":          "$argon2id$v=19$m=64,m=64,t=1,p=1$" + salt + "$" + sum,
		"extra param":    "$argon2id$v=19$m=64,t=1,p=1,x=2$" + salt + "$" + sum,
		"huge m":         "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + sum,
		"m over cap":     "$argon2id$v=19$m=1048577,t=1,p=1$" + salt + "$" + sum,
		"huge t":         "$argon2id$v=19$m=64,t=1000000,p=1$" + salt + "$" + sum,
		"t zero":         "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + sum,
		"p zero":         "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + sum,
		"p too big":      "$argon2id$v=19$m=65536,t=1,p=255$" + salt + "$" + sum,
		"m below 8p":     "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + sum,
		"leading zero":   "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + sum,
		"negative":       "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + sum,
		"short salt":     "$argon2id$v=19$m=64,t=1,p=1$AAAA$" + sum,
		"short hash":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA",
		"padded b64":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + sum,
		"bad b64":        "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + sum[:len(sum)-2] + "!!",
		"trailing field": h + "$x",
		"no leading $":   strings.TrimPrefix(h, "$"),
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := parsePHC(s); !errors.Is(err, ErrInvalid) {
				t.Errorf("parsePHC(%q) = %v, want ErrInvalid", s, err)
			}
		})
	}
}

func TestArgon2Defaults(t *testing.T) {
	p := Argon2Params{}.withDefaults()
	if p.Time != 3 || p.Memory != 64*1024 || p.Threads != 4 {
		t.Errorf("defaults = %+v", p)
	}
	if err := p.validate(); err != nil {
		t.Error(err)
	}
	if !(Argon2Params{Time: 1, Memory: 64 * 1024, Threads: 4}).weakerThan(p) || p.weakerThan(p) {
		t.Error("weakerThan is wrong")
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add(hashPassword([]byte("pw"), tinyParams))
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePHC(s)
		if err != nil {
			return
		}
		if p.params.Memory > maxArgon2Memory || p.params.Time > maxArgon2Time || p.params.Threads > maxArgon2Threads {
			t.Fatalf("caps not enforced: %+v", p.params)
		}
		again, err := parsePHC(encodePHC(p))
		if err != nil || encodePHC(again) != encodePHC(p) {
			t.Fatalf("re-encode not stable: %v", err)
		}
	})
}
