package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1024", 1024}, {"10K", 10 << 10}, {"500M", 500 << 20}, {"10G", 10 << 30}, {"1.5G", 3 << 29},
		{"2T", 2 << 40}, {"10GiB", 10 << 30}, {"10gb", 10 << 30}, {"7B", 7},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "x", "-1G", "G"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) succeeded", bad)
		}
	}
	if got := formatSize(3 << 29); got != "1.5G" {
		t.Errorf("formatSize = %q", got)
	}
}

// TestExampleConfig keeps configs/securefsd.yaml in step with the flags:
// every key in it must be a flag that the config file can set.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../configs/securefsd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range append(append([]cli.Flag{}, globalFlags...), serveFlags...) {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	for k := range m {
		if !known[k] {
			t.Errorf("configs/securefsd.yaml sets %q, which is no flag", k)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	app := newApp(strings.NewReader(""), &out, &out)
	if err := app.Run([]string{"securefsd", "version"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "securefsd ") {
		t.Fatalf("version printed %q", out.String())
	}
}

func TestBadLogFlags(t *testing.T) {
	if _, err := newLogger(&bytes.Buffer{}, "loud", "text", nil); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := newLogger(&bytes.Buffer{}, "info", "xml", nil); err == nil {
		t.Error("bad format accepted")
	}
}

func TestInterspersedFlags(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	for _, tc := range []struct{ in, want string }{
		{"securefsd user add bob --password-stdin --key k.pub", "securefsd user add --password-stdin --key k.pub bob"},
		{"securefsd --data-dir d user add bob --quota 1G", "securefsd --data-dir d user add --quota 1G bob"},
		{"securefsd user del bob --purge", "securefsd user del --purge bob"},
		{"securefsd user key add bob -", "securefsd user key add bob -"},
		{"securefsd serve --sftp-addr 127.0.0.1:0", "securefsd serve --sftp-addr 127.0.0.1:0"},
		{"securefsd user add -- -odd", "securefsd user add -- -odd"},
	} {
		got := strings.Join(interspersed(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("interspersed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestManagementCommands pins the management commands' names and their
// argument checks, which run before anything is opened.
func TestManagementCommands(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	for _, path := range []string{"user add", "user passwd", "user del", "user disable", "user enable", "user list", "user key add", "user key del", "user key list", "key rotate", "key generate", "verify"} {
		cmds, found := app.Commands, false
		for _, name := range strings.Fields(path) {
			c := findCommand(cmds, name)
			if c == nil {
				found = false
				break
			}
			found, cmds = true, c.Subcommands
		}
		if !found {
			t.Errorf("no command %q", path)
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct{ args, want string }{
		{"user add", "want NAME"},
		{"user add a b", "want NAME"},
		{"user key add bob", "want NAME FILE"},
		{"user list extra", "takes no arguments"},
		{"verify alice", "takes no arguments"},
		{"key rotate now", "takes no arguments"},
		{"user add bob --no-password", "needs at least one --key"},
	} {
		args := append([]string{"securefsd", "--data-dir", dir}, strings.Fields(tc.args)...)
		err := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}).Run(interspersed(app, args))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.args, err, tc.want)
		}
	}
	// Nothing was opened: no keyring or database appeared.
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("argument errors touched the data dir: %v", ents)
	}
}
