package envelope

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/testutil"
)

type vector struct {
	name    string
	expect  string
	errName string
	kr      *Keyring
	binding []byte // nil: the empty binding
	size    int64
	sum     string
	data    []byte
}

var sentinels = map[string]error{
	"ErrAuth": ErrAuth, "ErrTruncated": ErrTruncated, "ErrStaleFinal": ErrStaleFinal,
	"ErrUnknownKey": ErrUnknownKey, "ErrVersion": ErrVersion, "ErrFormat": ErrFormat,
}

// expectErrors: which sentinels each expect class may name.
var expectErrors = map[string][]string{
	"header failure": {"ErrAuth", "ErrVersion", "ErrFormat"},
	"auth failure":   {"ErrAuth"},
	"truncated":      {"ErrTruncated"},
	"stale final":    {"ErrStaleFinal"},
	"unknown key":    {"ErrUnknownKey"},
	"format failure": {"ErrFormat"},
}

func parseVector(t testing.TB, path string) vector {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	head, data, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s: no empty line", path)
	}
	v := vector{name: filepath.Base(path), data: data}
	keyText := "securefsd-keyring v1\n"
	var kekLines string
	sc := bufio.NewScanner(bytes.NewReader(head))
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		switch k {
		case "expect":
			v.expect = val
		case "error":
			v.errName = val
		case "kek":
			kekLines += "kek " + val + "\n"
		case "active":
			keyText += "active " + val + "\n"
		case "size":
			v.size, err = strconv.ParseInt(val, 10, 64)
			must(t, err)
		case "sha256":
			v.sum = val
		case "binding":
			v.binding, err = base64.StdEncoding.Strict().DecodeString(val)
			must(t, err)
		case "comment":
		default:
			t.Fatalf("%s: unknown field %q", path, k)
		}
	}
	v.kr, err = ParseKeyring([]byte(keyText+kekLines), nil)
	must(t, err)
	return v
}

// TestVectors decrypts the committed known-answer vectors (go generate
// writes them; see gen_vectors.go), so that the format cannot change by
// accident.
func TestVectors(t *testing.T) {
	paths, err := filepath.Glob("testdata/vectors/*")
	must(t, err)
	if len(paths) < 50 {
		t.Fatalf("only %d vectors", len(paths))
	}
	classes := map[string]int{}
	for _, p := range paths {
		v := parseVector(t, p)
		classes[v.expect]++
		t.Run(v.name, func(t *testing.T) {
			size := int64(len(v.data))
			// xaes_ vectors are XAES-256-GCM files, the others
			// XChaCha20-Poly1305 files (or AEAD-independent).
			wantAEAD := XChaCha20Poly1305
			if strings.HasPrefix(v.name, "xaes_") {
				wantAEAD = XAES256GCM
			}
			if v.expect == "success" && (len(v.data) < HeaderSize || AEAD(v.data[9]) != wantAEAD) {
				t.Fatalf("not a %v file", wantAEAD)
			}
			if v.expect == "success" {
				got, err := readAllBound(t, v.data, v.kr, v.binding)
				must(t, err)
				if int64(len(got)) != v.size || fmt.Sprintf("%x", sha256.Sum256(got)) != v.sum {
					t.Fatalf("plaintext: %d bytes, sha256 %x", len(got), sha256.Sum256(got))
				}
				if ps, err := PlaintextSize(size); err != nil || ps != v.size {
					t.Fatalf("PlaintextSize: %d, %v", ps, err)
				}
				r, err := NewReader(newMem(v.data), size, v.kr, Options{Binding: v.binding})
				must(t, err)
				h := sha256.New()
				_, err = io.Copy(h, r)
				must(t, err)
				if hex.EncodeToString(h.Sum(nil)) != v.sum {
					t.Fatal("streaming reader: wrong plaintext")
				}
				return
			}
			want, ok := sentinels[v.errName]
			allowed := expectErrors[v.expect]
			if !ok || allowed == nil || !strings.Contains(strings.Join(allowed, " "), v.errName) {
				t.Fatalf("bad vector: expect %q, error %q", v.expect, v.errName)
			}
			_, err := readAllBound(t, v.data, v.kr, v.binding)
			if !errors.Is(err, want) {
				t.Fatalf("File: %v, want %v", err, want)
			}
			if err := Verify(newMem(v.data), size, v.kr, Options{Binding: v.binding}); !errors.Is(err, want) {
				t.Fatalf("Verify: %v, want %v", err, want)
			}
			if strings.HasPrefix(v.expect, "header") || v.expect == "unknown key" {
				if _, err := Open(newMem(v.data), size, v.kr, Options{Binding: v.binding}); !errors.Is(err, want) {
					t.Fatalf("Open: %v, want %v", err, want)
				}
			}
		})
	}
	for _, c := range []string{"success", "header failure", "auth failure", "truncated", "stale final", "unknown key", "format failure"} {
		if classes[c] == 0 {
			t.Errorf("no vector with expect: %s", c)
		}
	}
}

// TestIndependentDecryptor runs testdata/decrypt_v1.py, a decryptor written
// from docs/FORMAT.md alone, over the vectors: the spec must be complete
// enough for it to agree with every expectation.
func TestIndependentDecryptor(t *testing.T) {
	python := testutil.Python(t)
	paths, err := filepath.Glob("testdata/vectors/*")
	must(t, err)
	out, err := exec.Command(python, append([]string{"testdata/decrypt_v1.py"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("independent decryptor disagrees: %v\n%s", err, out)
	}
	// And the golden store, bound files included.
	out, err = exec.Command(python, "testdata/decrypt_v1.py", "--store", goldenStore).CombinedOutput()
	if err != nil {
		t.Fatalf("independent decryptor disagrees on the golden store: %v\n%s", err, out)
	}
}

// TestVectorsCoverHeaderRules: docs/FORMAT.md, section 11, promises a vector
// for every header failure class of section 5.3; each rule has its case.
func TestVectorsCoverHeaderRules(t *testing.T) {
	for rule, names := range map[string][]string{
		"1: valid length":                {"bad_length"},
		"3: magic, version, AEAD, chunk": {"header_bad_magic", "header_version_2", "header_aead_3", "header_chunk_size"},
		"4: reserved and slot structure": {"header_reserved", "header_empty_slot", "header_kek_id_zero", "header_no_slot", "header_equal_generations"},
		"5: every known slot opens":      {"header_wrapped_dek", "header_file_id", "header_aead_id", "bound_wrong_binding", "bound_read_unbound", "unbound_read_bound"},
		"6: no known KEK":                {"unknown_key"},
		"7: highest generation wins":     {"two_slots", "rewrapped"},
	} {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join("testdata/vectors", n)); err != nil {
				t.Errorf("rule %s: %v", rule, err)
			}
		}
	}
}
