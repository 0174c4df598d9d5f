package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Python returns a python3 that has the cryptography package, for the
// independent readers of the formats (testdata/*.py). Debian's
// python3-cryptography serves /usr/bin/python3; another python3 earlier in
// PATH may lack the package. scripts/test.sh installs it; without it the
// test fails (it is skipped only under -short).
func Python(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import cryptography").Run() == nil {
			return p
		}
	}
	if testing.Short() {
		t.Skip("needs python3 with the cryptography package (Debian: python3-cryptography)")
	}
	t.Fatal("needs python3 with the cryptography package (Debian: python3-cryptography; scripts/test.sh installs it)")
	return ""
}

// VectorCases reads a known-answer vector file of "key: value" lines: the
// lines before the first "case:" are the header, each "case:" line starts a
// case (its value under "case"). Blank and other lines are skipped.
func VectorCases(t testing.TB, path string) (header map[string]string, cases []map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header = map[string]string{}
	cur := header
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		switch {
		case !ok:
		case k == "case":
			cur = map[string]string{"case": v}
			cases = append(cases, cur)
		default:
			cur[k] = v
		}
	}
	return header, cases
}
