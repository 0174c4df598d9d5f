package users

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/testutil"
)

// The known-answer vectors of the sealed users database (docs/FORMAT.md,
// section 15): written once with the fixed key 0x00..0x1f
// (SECUREFSD_WRITE_VECTORS=1 when the file is missing), never regenerated
// to make a test pass.
const sealedVectors = "testdata/sealed/vectors.txt"

func vectorKey() []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

type sealedVector struct {
	name                  string
	bucket, recName       []byte
	stored, sealed, value []byte
	expect                string // "value" or "auth failure"
}

func writeSealedVectors(t *testing.T, s *sealer) {
	var b strings.Builder
	fmt.Fprintf(&b, "key: %s\n", base64.StdEncoding.EncodeToString(vectorKey()))
	add := func(v sealedVector) {
		fmt.Fprintf(&b, "\ncase: %s\nbucket: %s\nname: %s\nstored: %s\nsealed: %s\nexpect: %s\n", v.name, v.bucket,
			base64.StdEncoding.EncodeToString(v.recName), hex.EncodeToString(v.stored), base64.StdEncoding.EncodeToString(v.sealed), v.expect)
		if v.expect == "value" {
			fmt.Fprintf(&b, "value: %s\n", base64.StdEncoding.EncodeToString(v.value))
		}
	}
	rec := func(bucket, name, value string) sealedVector {
		sk := s.storedKey([]byte(bucket), []byte(name))
		return sealedVector{name: bucket + "/" + name, bucket: []byte(bucket), recName: []byte(name), stored: sk,
			sealed: s.seal([]byte(bucket), sk, []byte(name), []byte(value)), value: []byte(value), expect: "value"}
	}
	alice := rec("users", "alice", `{"name":"alice","perms":255}`)
	bob := rec("users", "bob", `{"name":"bob"}`)
	for _, v := range []sealedVector{alice, bob,
		rec("folders", "case-42", `{"name":"case-42","grants":[]}`),
		rec("links", strings.Repeat("ab", 32), `{"owner":"alice"}`),
		rec("sealcheck", "check", "check"),
		rec("users", "", ""),
	} {
		add(v)
	}
	moved := bob
	moved.name, moved.stored, moved.expect = "bob's value under alice's key", alice.stored, "auth failure"
	add(moved)
	other := alice
	other.name, other.bucket, other.stored, other.expect = "alice's value in another bucket", []byte("groups"), s.storedKey([]byte("groups"), []byte("alice")), "auth failure"
	add(other)
	damaged := alice
	damaged.sealed = bytes.Clone(alice.sealed)
	damaged.sealed[30] ^= 1
	damaged.name, damaged.expect = "a damaged value", "auth failure"
	add(damaged)
	if err := os.MkdirAll(filepath.Dir(sealedVectors), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sealedVectors, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readSealedVectors(t *testing.T) (key []byte, vs []sealedVector) {
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	header, cases := testutil.VectorCases(t, sealedVectors)
	for _, c := range cases {
		stored, err := hex.DecodeString(c["stored"])
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, sealedVector{name: c["case"], bucket: []byte(c["bucket"]), recName: dec(c["name"]),
			stored: stored, sealed: dec(c["sealed"]), expect: c["expect"], value: dec(c["value"])})
	}
	return dec(header["key"]), vs
}

// TestSealedVectors opens every vector as the package does, and has
// read_sealed.py, written from docs/FORMAT.md section 15 alone, agree.
func TestSealedVectors(t *testing.T) {
	s, err := newSealer(vectorKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sealedVectors); os.IsNotExist(err) && os.Getenv("SECUREFSD_WRITE_VECTORS") == "1" {
		writeSealedVectors(t, s)
	}
	key, vs := readSealedVectors(t)
	if !bytes.Equal(key, vectorKey()) || len(vs) < 9 {
		t.Fatalf("vector file: key %x, %d cases", key, len(vs))
	}
	for _, v := range vs {
		name, val, err := s.open(v.bucket, v.stored, v.sealed)
		hashed := bytes.Equal(s.storedKey(v.bucket, v.recName), v.stored)
		switch v.expect {
		case "value":
			if err != nil || !hashed || !bytes.Equal(name, v.recName) || !bytes.Equal(val, v.value) {
				t.Errorf("%s: %v (stored key matches: %v)", v.name, err, hashed)
			}
		default:
			if err == nil && hashed && bytes.Equal(name, v.recName) {
				t.Errorf("%s: opened", v.name)
			}
		}
	}
	out, err := exec.Command(testutil.Python(t), "testdata/sealed/read_sealed.py", sealedVectors).CombinedOutput()
	if err != nil {
		t.Fatalf("the independent reader disagrees: %v\n%s", err, out)
	}
}
