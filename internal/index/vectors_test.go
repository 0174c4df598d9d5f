package index

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/testutil"
)

// The index's known-answer vectors (docs/FORMAT.md, section 16): written
// once with the fixed root key 0x20..0x3f (SECUREFSD_WRITE_VECTORS=1 when
// the file is missing), never regenerated to make a test pass.
const vectorFile = "testdata/vectors.txt"

func vectorRootKey() []byte {
	k := make([]byte, RootKeySize)
	for i := range k {
		k[i] = byte(32 + i)
	}
	return k
}

// writeVectors: records (and one moved to another key), a name key, and
// the state sealing the epoch and the root hash of the valid records.
func writeVectors(t *testing.T, x *Index) {
	var b strings.Builder
	fmt.Fprintf(&b, "rootkey: %s\n", base64.StdEncoding.EncodeToString(vectorRootKey()))
	var st state
	rec := func(kind Kind, key, value string, expect string) []byte {
		sk := storedKey(kind, []byte(key))
		sealed := x.seal(sk, []byte(value))
		fmt.Fprintf(&b, "\ncase: record\nstored: %s\nsealed: %s\nexpect: %s\nvalue: %s\n", hex.EncodeToString(sk),
			base64.StdEncoding.EncodeToString(sealed), expect, base64.StdEncoding.EncodeToString([]byte(value)))
		st.xorSum(x.recordMAC(sk, sealed))
		return sealed
	}
	rec('d', "parent-inode-id-name-key-16B", "dirent: a name", "value")
	rec('i', "inode-id-16B----", "inode record", "value")
	sealed := rec('t', "tree", "", "value")
	// The same value under another key: does not open (not in the sum).
	fmt.Fprintf(&b, "\ncase: record\nstored: %s\nsealed: %s\nexpect: auth failure\n",
		hex.EncodeToString(storedKey('t', []byte("other tree"))), base64.StdEncoding.EncodeToString(sealed))
	nk := x.NameKey([]byte("parent-inode-id!"), "Befund Müller.pdf")
	fmt.Fprintf(&b, "\ncase: namekey\nparent: %s\nname: %s\nkey: %s\n", base64.StdEncoding.EncodeToString([]byte("parent-inode-id!")),
		base64.StdEncoding.EncodeToString([]byte("Befund Müller.pdf")), hex.EncodeToString(nk[:]))
	st.Epoch = 3
	fmt.Fprintf(&b, "\ncase: state\nsealed: %s\nepoch: %d\nsum: %s\n", base64.StdEncoding.EncodeToString(x.seal(stateKey, st.marshal())), st.Epoch, hex.EncodeToString(st.Sum[:]))
	if err := os.WriteFile(vectorFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIndexVectors checks every vector with the package's functions, and
// has read_index.py, written from docs/FORMAT.md section 16 alone, agree.
func TestIndexVectors(t *testing.T) {
	x := openIndex(t, t.TempDir()+"/index.db", vectorRootKey())
	if _, err := os.Stat(vectorFile); os.IsNotExist(err) && os.Getenv("SECUREFSD_WRITE_VECTORS") == "1" {
		writeVectors(t, x)
	}
	_, cases := testutil.VectorCases(t, vectorFile)
	var sum [32]byte
	dec := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	unhex := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	for _, c := range cases {
		switch c["case"] {
		case "record":
			sk, sealed := unhex(c["stored"]), dec(c["sealed"])
			v, err := x.open(sk, sealed)
			if c["expect"] == "value" {
				if err != nil || !bytes.Equal(v, dec(c["value"])) {
					t.Errorf("record %s: %v", c["stored"], err)
				}
				mac := x.recordMAC(sk, sealed)
				for i := range sum {
					sum[i] ^= mac[i]
				}
			} else if err == nil {
				t.Errorf("record %s: opened", c["stored"])
			}
		case "namekey":
			if nk := x.NameKey(dec(c["parent"]), string(dec(c["name"]))); hex.EncodeToString(nk[:]) != c["key"] {
				t.Errorf("name key %x, want %s", nk, c["key"])
			}
		case "state":
			v, err := x.open(stateKey, dec(c["sealed"]))
			if err != nil {
				t.Fatalf("state: %v", err)
			}
			st, err := parseState(v)
			if err != nil || fmt.Sprint(st.Epoch) != c["epoch"] || hex.EncodeToString(st.Sum[:]) != c["sum"] || st.Sum != sum {
				t.Errorf("state: %+v %v", st, err)
			}
		}
	}
	if len(cases) != 6 {
		t.Fatalf("%d cases", len(cases))
	}
	out, err := exec.Command(testutil.Python(t), "testdata/read_index.py", vectorFile).CombinedOutput()
	if err != nil {
		t.Fatalf("the independent reader disagrees: %v\n%s", err, out)
	}
}
