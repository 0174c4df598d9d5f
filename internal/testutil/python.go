package testutil

import (
	"os/exec"
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
