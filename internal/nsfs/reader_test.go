package nsfs

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/namespace"
	"github.com/securefsd/securefsd/internal/testutil"
)

// TestIndependentReader: testdata/read_tree.py, written from docs/FORMAT.md
// sections 16 and 17 alone, reads a store this package wrote: nested
// directories, a 1,000-byte name, a file of three segments one of which
// was rewritten (two generations), padded last segments; then a blob
// swapped with another file's fails there as it does here.
func TestIndependentReader(t *testing.T) {
	python := testutil.Python(t)
	dir := t.TempDir()
	kr, _ := envelope.NewKeyring()
	root := make([]byte, index.RootKeySize)
	rand.Read(root)
	x, err := index.Open(filepath.Join(dir, "index.db"), root)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	blobs, err := blob.OpenDir(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	ns := namespace.New(x, nil)
	ns.Update(func(tx *namespace.Tx) error { return tx.SetSetting("pad", "true") })
	s := New(ns, content.DirBlobs{Dir: blobs}, content.Options{Keyring: kr, Pad: true, InlineMax: content.DefaultInlineMax})
	tr, err := s.Tree("alice")
	if err != nil {
		t.Fatal(err)
	}
	tr.MkdirAll("docs/2026/q4", 0o750)
	long := strings.Repeat("n", 1000)
	files := map[string][]byte{
		"docs/big.bin":           random(2*4<<20 + 12345),
		"docs/2026/q4/" + long:   []byte("a long name"),
		"docs/small.txt":         []byte("hello"),
		"docs/2026/Befund Ö.pdf": random(70000),
	}
	for name, b := range files {
		write(t, tr, name, b)
	}
	// A second generation of the big file's middle segment.
	w, _ := tr.OpenFile("docs/big.bin", os.O_RDWR, 0)
	w.WriteAt([]byte("rewritten"), 4<<20+100)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	copy(files["docs/big.bin"][4<<20+100:], "rewritten")

	var expect strings.Builder
	fmt.Fprintf(&expect, "ls\talice\t.\tdocs\nls\talice\tdocs\t2026/big.bin/small.txt\nls\talice\tdocs/2026\tBefund Ö.pdf/q4\nls\talice\tdocs/2026/q4\t%s\n", long)
	for name, b := range files {
		fmt.Fprintf(&expect, "cat\talice\t%s\t%d\t%x\n", name, len(b), sha256.Sum256(b))
	}
	// swap, if set, exchanges two records' sealed values in the dump.
	var swap [2]string
	run := func(expect string) (string, error) {
		out := filepath.Join(t.TempDir(), "dump")
		os.MkdirAll(out, 0o700)
		plain, err := envelope.MarshalKeyring(kr, nil, envelope.Argon2Params{})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(out, "keyring"), plain, 0o600)
		os.WriteFile(filepath.Join(out, "rootkey"), []byte(base64.StdEncoding.EncodeToString(root)), 0o600)
		var recs bytes.Buffer
		x.Records(func(k, v []byte) error {
			switch hex.EncodeToString(k) {
			case swap[0]:
				k, _ = hex.DecodeString(swap[1])
			case swap[1]:
				k, _ = hex.DecodeString(swap[0])
			}
			fmt.Fprintf(&recs, "%s %s\n", hex.EncodeToString(k), base64.StdEncoding.EncodeToString(v))
			return nil
		})
		os.WriteFile(filepath.Join(out, "records"), recs.Bytes(), 0o600)
		os.WriteFile(filepath.Join(out, "expect"), []byte(expect), 0o600)
		os.Symlink(filepath.Join(dir, "blobs"), filepath.Join(out, "blobs"))
		b, err := exec.Command(python, "testdata/read_tree.py", out).CombinedOutput()
		return string(b), err
	}
	out, err := run(expect.String())
	if err != nil {
		t.Fatalf("read_tree.py: %v\n%s", err, out)
	}
	t.Logf("read_tree.py:\n%s", out)

	// Small segments are in the index (kind 'b'): the small file's and
	// the big file's last one (12,345 bytes) swapped in the dump. The
	// 70,000-byte file's blob swapped on disk with the big file's first.
	x.Records(func(k, v []byte) error {
		switch {
		case k[0] == 'b' && len(v) == 24+16+int(envelope.CiphertextSize(content.Padme(5))):
			swap[0] = hex.EncodeToString(k)
		case k[0] == 'b' && len(v) == 24+16+int(envelope.CiphertextSize(content.Padme(12345))):
			swap[1] = hex.EncodeToString(k)
		}
		return nil
	})
	var mid, first string
	blobs.List(func(id blob.ID, size int64) error {
		p := filepath.Join(dir, "blobs", id.String()[:2], id.String())
		switch {
		case size == envelope.CiphertextSize(content.Padme(70000)):
			mid = p
		case size == envelope.CiphertextSize(4<<20):
			first = p // one of the big file's full segments
		}
		return nil
	})
	if swap[0] == "" || swap[1] == "" || mid == "" || first == "" {
		t.Fatalf("blobs not found: %q %q %q %q", swap[0], swap[1], mid, first)
	}
	b1, _ := os.ReadFile(mid)
	b2, _ := os.ReadFile(first)
	os.WriteFile(mid, b2, 0o600)
	os.WriteFile(first, b1, 0o600)
	f, err := tr.OpenFile("docs/2026/Befund Ö.pdf", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, rerr := f.ReadAt(make([]byte, 1), 0)
	f.Close()
	if rerr == nil {
		t.Error("the Go reader read a swapped blob")
	}
	if out, err = run("damaged\talice\tdocs/small.txt\tErrAuth\ndamaged\talice\tdocs/big.bin\tErrAuth\ndamaged\talice\tdocs/2026/Befund Ö.pdf\tErrAuth\ncat\talice\tdocs/2026/q4/" + long + "\t11\t" + fmt.Sprintf("%x", sha256.Sum256(files["docs/2026/q4/"+long])) + "\n"); err != nil {
		t.Fatalf("read_tree.py on swapped blobs: %v\n%s", err, out)
	}
	t.Logf("read_tree.py on swapped blobs:\n%s", out)
}
