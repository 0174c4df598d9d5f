package sftpd

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		line string
		want []string
		glob []bool
		err  bool
	}{
		{line: "scp -t .", want: []string{"scp", "-t", "."}},
		{line: "  scp\t-f   a  ", want: []string{"scp", "-f", "a"}},
		{line: `md5sum dir/with\ space/f\(1\).txt`, want: []string{"md5sum", "dir/with space/f(1).txt"}},
		{line: `md5sum 'it'\''s'`, want: []string{"md5sum", "it's"}},
		{line: `md5sum "a \"b\" \\ \x"`, want: []string{"md5sum", `a "b" \ \x`}},
		{line: `scp -f ~/docs ~ ~x`, want: []string{"scp", "-f", "/docs", "/", "~x"}},
		{line: `scp -f *.txt 'q*' "r?"`, want: []string{"scp", "-f", "*.txt", "q*", "r?"}, glob: []bool{false, false, true, false, false}},
		{line: `md5sum ''`, want: []string{"md5sum", ""}},
		{line: "md5sum a; rm -rf /", err: true},
		{line: "md5sum $(id)", err: true},
		{line: "md5sum `id`", err: true},
		{line: "md5sum a | cat", err: true},
		{line: "md5sum a > b", err: true},
		{line: "md5sum a && b", err: true},
		{line: `md5sum "$HOME"`, err: true},
		{line: `md5sum 'unterminated`, err: true},
		{line: `md5sum "unterminated`, err: true},
		{line: `md5sum trailing\`, err: true},
		{line: `# comment`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			words, err := splitCommand(tt.line)
			if tt.err {
				if err == nil {
					t.Fatalf("splitCommand(%q) = %v, want error", tt.line, words)
				}
				return
			}
			if err != nil {
				t.Fatalf("splitCommand(%q): %v", tt.line, err)
			}
			var got []string
			for i, w := range words {
				got = append(got, w.s)
				if tt.glob != nil && w.glob != tt.glob[i] {
					t.Errorf("word %d %q glob = %v", i, w.s, w.glob)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("splitCommand(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		name string
		scp  scpOptions
		args []string
		err  bool
	}{
		{line: "scp -t .", name: "scp", scp: scpOptions{sink: true}, args: []string{"."}},
		{line: "scp -v -r -p -d -t -- /dst", name: "scp", scp: scpOptions{sink: true, recursive: true, preserve: true, targetDir: true, verbose: true}, args: []string{"/dst"}},
		{line: "/usr/bin/scp -prf a b", name: "scp", scp: scpOptions{source: true, recursive: true, preserve: true}, args: []string{"a", "b"}},
		{line: "scp -f -- -dash", name: "scp", scp: scpOptions{source: true}, args: []string{"-dash"}},
		{line: "scp -t a b", err: true},
		{line: "scp -t -f a", err: true},
		{line: "scp -x -t a", err: true},
		{line: "scp -t", err: true},
		{line: "scp a", err: true},
		{line: "md5sum", name: "md5sum"},
		{line: `sha1sum -- a\ b`, name: "sha1sum", args: []string{"a b"}},
		{line: "sha256sum x y", name: "sha256sum", args: []string{"x", "y"}},
		{line: "md5sum -c x", err: true},
		{line: "echo ${ShellId}%ComSpec%", name: "echo", args: []string{"%ComSpec%"}},
		{line: "echo hello world", name: "echo", args: []string{"hello", "world"}},
		{line: "bash -c id", err: true},
		{line: "rm -rf /", err: true},
		{line: "", err: true},
		{line: "*", err: true},
		{line: "./scp -t .", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			cmd, err := parseCommand(tt.line)
			if tt.err {
				if err == nil {
					t.Fatalf("parseCommand(%q) = %+v, want error", tt.line, cmd)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCommand(%q): %v", tt.line, err)
			}
			if cmd.name != tt.name {
				t.Errorf("name = %q, want %q", cmd.name, tt.name)
			}
			var args []string
			ws := cmd.args
			if cmd.name == "scp" {
				ws = cmd.scp.paths
				got := cmd.scp
				got.paths = nil
				if !reflect.DeepEqual(got, tt.scp) {
					t.Errorf("scp options = %+v, want %+v", got, tt.scp)
				}
			}
			for _, w := range ws {
				args = append(args, w.s)
			}
			if !reflect.DeepEqual(args, tt.args) {
				t.Errorf("args = %q, want %q", args, tt.args)
			}
		})
	}
}

func TestParseSCPRecord(t *testing.T) {
	tests := []struct {
		line string
		mode uint32
		size int64
		name string
		err  bool
	}{
		{line: "0644 12 a.txt", mode: 0o644, size: 12, name: "a.txt"},
		{line: "0755 0 dir with space", mode: 0o755, size: 0, name: "dir with space"},
		{line: "04755 1 x", mode: 0o755, size: 1, name: "x"},
		{line: "0644 12 ../x", err: true},
		{line: "0644 12 ..", err: true},
		{line: "0644 12 .", err: true},
		{line: "0644 12 a/b", err: true},
		{line: "0644 12 ", err: true},
		{line: "0644 -1 x", err: true},
		{line: "0844 1 x", err: true},
		{line: "0644 1x x", err: true},
		{line: "0644", err: true},
		{line: "0644 12", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			mode, size, name, err := parseSCPRecord(tt.line)
			if tt.err {
				if err == nil {
					t.Fatalf("parseSCPRecord(%q) = %v %d %q, want error", tt.line, mode, size, name)
				}
				return
			}
			if err != nil || uint32(mode) != tt.mode || size != tt.size || name != tt.name {
				t.Errorf("parseSCPRecord(%q) = %o %d %q %v", tt.line, mode, size, name, err)
			}
		})
	}
	if tm, err := parseSCPTimes("1700000000 0 1700000001 5"); err != nil || tm.mtime.Unix() != 1700000000 || tm.atime.Unix() != 1700000001 {
		t.Errorf("parseSCPTimes: %+v %v", tm, err)
	}
	for _, bad := range []string{"", "1 2 3", "a 0 0 0", "1 0 1 1000000", "-1 0 0 0"} {
		if _, err := parseSCPTimes(bad); err == nil {
			t.Errorf("parseSCPTimes(%q) accepted", bad)
		}
	}
}

// FuzzSCPCommand: parsing never panics; every accepted path is non-empty
// and NUL-free; a word list re-quoted for a shell parses back to itself;
// record names never escape their directory.
func FuzzSCPCommand(f *testing.F) {
	for _, s := range []string{
		"scp -t .", "scp -v -r -p -d -t -- /dst", "scp -f 'a b' \"c\\\"d\" e\\ f", "md5sum x\\ y",
		"echo ${ShellId}%ComSpec%", "scp -f ~/x *.go", "scp -t a;b", "0644 12 a.txt",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if cmd, err := parseCommand(line); err == nil && cmd.name == "scp" {
			for _, p := range cmd.scp.paths {
				if p.s == "" || strings.IndexByte(p.s, 0) >= 0 {
					t.Fatalf("accepted bad path %q from %q", p.s, line)
				}
			}
		}
		if words, err := splitCommand(line); err == nil {
			var q []string
			for _, w := range words {
				q = append(q, shellQuote(w.s))
			}
			back, err := splitCommand(strings.Join(q, " "))
			if err != nil {
				t.Fatalf("re-quoted %q: %v", q, err)
			}
			if len(back) != len(words) {
				t.Fatalf("re-quoted %q: %d words, want %d", q, len(back), len(words))
			}
			for i := range back {
				if back[i].s != words[i].s || back[i].glob {
					t.Fatalf("re-quoted word %d: %q (glob %v), want %q", i, back[i].s, back[i].glob, words[i].s)
				}
			}
		}
		if _, _, name, err := parseSCPRecord(line); err == nil {
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
				t.Fatalf("parseSCPRecord(%q) accepted name %q", line, name)
			}
		}
	})
}
