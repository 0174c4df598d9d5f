package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDAVLitmus runs every test of the litmus suites basic, copymove, props,
// locks and http against the real server over HTTPS (and http once more over
// plain HTTP, where litmus also runs expect100). Any failure or warning
// fails the test.
func TestDAVLitmus(t *testing.T) {
	NeedTool(t, "litmus")
	for _, tc := range []struct {
		name   string
		opts   []ServerOption
		suites string
	}{
		{"https", nil, "basic copymove props locks http"},
		{"http", []ServerOption{WithInsecureHTTP()}, "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := StartServer(t, tc.opts...)
			srv.AddUser(t, "litmus", "yvgzhf-pass-e2e-pass")
			cmd := exec.Command("litmus", srv.DAVURL+"/", "litmus", "yvgzhf-pass-e2e-pass")
			cmd.Env = append(cmd.Environ(), "TESTS="+tc.suites)
			cmd.Dir = t.TempDir() // litmus writes debug.log here
			out, err := cmd.CombinedOutput()
			text := string(out)
			summaries := strings.Count(text, "<- summary for")
			if err != nil || summaries != len(strings.Fields(tc.suites)) || litmusProblems(text) != "" {
				t.Fatalf("litmus %s: %v (%d summaries) %s\n%s", tc.suites, err, summaries, litmusProblems(text), text)
			}
			t.Logf("litmus %s:\n%s", tc.suites, grepLines(text, "<- summary"))
		})
	}
}

// litmusProblems returns the lines reporting a failed, warned or skipped
// test (expect100 is skipped by litmus itself over TLS; the plain-HTTP run
// covers it).
func litmusProblems(out string) string {
	bad := regexp.MustCompile(`\.\s+(FAIL|SKIPPED)|WARNING|with \d+ warning|<- summary.* [1-9]\d* failed`)
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "expect100") && strings.Contains(line, "skipping for SSL server") {
			continue
		}
		if bad.MatchString(line) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
