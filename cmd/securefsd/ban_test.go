package main

import (
	"fmt"
	"testing"
)

func TestParseSafelist(t *testing.T) {
	got, err := parseSafelist(" 10.0.0.0/8, 192.0.2.7,2001:db8::/32,::ffff:198.51.100.1, 10.1.2.3/16 ,")
	if err != nil {
		t.Fatal(err)
	}
	if want := "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32 198.51.100.1/32 10.1.0.0/16]"; fmt.Sprint(got) != want {
		t.Errorf("parseSafelist = %v, want %v", got, want)
	}
	if got, err := parseSafelist(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"office", "10.0.0.0/33", "10.0.0.1-10.0.0.9"} {
		if _, err := parseSafelist(bad); err == nil {
			t.Errorf("parseSafelist(%q) succeeded", bad)
		}
	}
}
