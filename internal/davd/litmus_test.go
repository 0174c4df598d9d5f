package davd

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLitmus runs the litmus WebDAV suites against the in-process server.
// Any failure (or a warning) fails the test. The e2e package runs them
// against the real binary too.
func TestLitmus(t *testing.T) {
	if testing.Short() {
		t.Skip("litmus is slow-ish; skipped with -short")
	}
	if _, err := exec.LookPath("litmus"); err != nil {
		t.Fatalf("litmus is not installed (scripts/test.sh installs it): %v", err)
	}
	for _, suite := range []string{"basic", "copymove", "props", "locks", "http"} {
		t.Run(suite, func(t *testing.T) {
			env := newTestEnv(t)
			cmd := exec.Command("litmus", env.URL+"/", testUser, testPass)
			cmd.Env = append(cmd.Environ(), "TESTS="+suite, "HTDOCS=/usr/share/litmus/htdocs", "TESTROOT=/usr/libexec/litmus")
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			text := string(out)
			if err != nil || !litmusClean(text) {
				t.Errorf("litmus %s: %v\n%s", suite, err, text)
				t.Logf("server log:\n%s", env.Log.String())
			}
		})
	}
}

// litmusClean reports whether every summary line says 0 failed and no
// test warned.
func litmusClean(out string) bool {
	sawSummary := false
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "<- summary for") {
			sawSummary = true
			if !strings.Contains(line, "failed: 0") && !strings.Contains(line, ", 0 failed") {
				return false
			}
		}
		if strings.Contains(line, "WARNING") || strings.Contains(line, "FAIL") {
			return false
		}
	}
	return sawSummary
}
