package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePublicURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://files.example.org":        "https://files.example.org",
		"https://files.example.org/":       "https://files.example.org",
		"http://127.0.0.1:8080/securefsd/": "http://127.0.0.1:8080/securefsd",
		"https://[2001:db8::1]:8443":       "https://[2001:db8::1]:8443",
	} {
		if got, err := parsePublicURL(in); err != nil || got != want {
			t.Errorf("parsePublicURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "files.example.org", "ftp://files.example.org", "https://", "https://u:p@files.example.org",
		"https://files.example.org/?a=b", "https://files.example.org/#x", "https://files.example.org?", "mailto:a@b"} {
		if _, err := parsePublicURL(in); !errors.Is(err, errPublicURL) {
			t.Errorf("parsePublicURL(%q): %v, want errPublicURL", in, err)
		}
	}
	for in, want := range map[string]string{
		"https://0.0.0.0:8443":    "https://localhost:8443",
		"https://[::]:8443":       "https://localhost:8443",
		"http://127.0.0.1:9000":   "http://127.0.0.1:9000",
		"https://files.lan:8443/": "https://files.lan:8443",
	} {
		if got := localBaseURL(in); got != want {
			t.Errorf("localBaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestShareCreateOffline prints links of `share create` and `invite
// create` without a server: the base comes from --public-url, the config
// file's public-url (the key serve reads), or serve's dav-addr there.
func TestShareCreateOffline(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		app := newApp(strings.NewReader("pw-for-the-test-user-1\n"), &out, &errb)
		full := append([]string{"securefsd", "--data-dir", filepath.Join(dir, "data")}, args...)
		if err := app.Run(interspersed(app, full)); err != nil {
			t.Fatalf("%v: %v %s", args, err, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	run("--key-file", filepath.Join(dir, "data", "keyring"), "key", "generate")
	run("user", "add", "alice", "--password-stdin")
	n := 0
	cfg := func(body string) string { // one file each: the table is built before it runs
		n++
		p := filepath.Join(dir, fmt.Sprintf("cfg%d.yaml", n))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"default", nil, "https://127.0.0.1:8443/"},
		{"flag", []string{"--public-url", "https://files.example.org/"}, "https://files.example.org/"},
		{"config public-url", []string{"--config", cfg("public-url: https://cfg.example.org\ndav-addr: 0.0.0.0:9443\n")}, "https://cfg.example.org/"},
		{"config dav-addr", []string{"--config", cfg("dav-addr: 0.0.0.0:9443\n")}, "https://localhost:9443/"},
		{"flag wins over config", []string{"--config", cfg("public-url: https://cfg.example.org\n"), "--public-url", "https://flag.example.org"}, "https://flag.example.org/"},
	} {
		// --config is a global flag: before the command.
		var global, local []string
		for i := 0; i < len(tc.args); i += 2 {
			if tc.args[i] == "--config" {
				global = append(global, tc.args[i:i+2]...)
			} else {
				local = append(local, tc.args[i:i+2]...)
			}
		}
		link := run(append(append(global, "share", "create", "alice", "/"), local...)...)
		if !strings.HasPrefix(link, tc.want+"s/") {
			t.Errorf("%s: share create printed %q, want %ss/TOKEN", tc.name, link, tc.want)
		}
		inv := run(append(append(global, "invite", "create"), local...)...)
		if !strings.HasPrefix(inv, tc.want+"ui/signup?token=") {
			t.Errorf("%s: invite create printed %q, want %sui/signup?token=…", tc.name, inv, tc.want)
		}
	}
	var errb bytes.Buffer
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &errb)
	err := app.Run([]string{"securefsd", "--data-dir", filepath.Join(dir, "data"), "share", "create", "--public-url", "files.example.org", "alice", "/"})
	if !errors.Is(err, errPublicURL) {
		t.Errorf("bad --public-url: %v", err)
	}
}
