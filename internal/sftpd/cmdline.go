package sftpd

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Exec requests carry one command line that OpenSSH's sshd would hand to the
// user's shell. No shell is ever run here: the line is split into words with
// POSIX shell quoting rules (quotes, backslashes, a leading "~/"), anything
// that would need a real shell (variables, substitution, redirection, pipes,
// separators, comments) is refused, and only a few commands are understood.

var (
	errShellSyntax  = errors.New("unsupported shell syntax")
	errUnterminated = errors.New("unterminated quote")
)

// word is one command-line argument after quote removal.
type word struct {
	s string // the literal value
	// pattern is s with every character that was quoted and is a glob
	// metacharacter escaped by a backslash, for path.Match; only meaningful
	// if glob is set.
	pattern string
	glob    bool // an unquoted *, ? or [ appears
}

// splitCommand splits a command line into words.
func splitCommand(line string) ([]word, error) {
	var (
		words  []word
		cur    strings.Builder
		pat    strings.Builder
		inWord bool
		glob   bool
	)
	lit := func(c byte) { // a quoted (literal) character
		cur.WriteByte(c)
		if c == '*' || c == '?' || c == '[' || c == ']' || c == '\\' {
			pat.WriteByte('\\')
		}
		pat.WriteByte(c)
	}
	flush := func() {
		if inWord {
			s := cur.String()
			words = append(words, word{s: s, pattern: pat.String(), glob: glob})
		}
		cur.Reset()
		pat.Reset()
		inWord, glob = false, false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch c {
		case ' ', '\t', '\n':
			flush()
			continue
		}
		if !inWord {
			inWord = true
			if c == '#' {
				return nil, errShellSyntax // a comment
			}
			if c == '~' && (i+1 == len(line) || line[i+1] == '/' || line[i+1] == ' ' || line[i+1] == '\t') {
				// "~" and "~/..." are the home directory, which is the
				// root of the session's tree.
				cur.WriteByte('/')
				pat.WriteByte('/')
				if i+1 < len(line) && line[i+1] == '/' {
					i++
				}
				continue
			}
		}
		switch c {
		case '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errUnterminated
			}
			for k := i + 1; k < i+1+j; k++ {
				lit(line[k])
			}
			i += j + 1
		case '"':
			i++
			for ; ; i++ {
				if i >= len(line) {
					return nil, errUnterminated
				}
				d := line[i]
				if d == '"' {
					break
				}
				if d == '$' || d == '`' {
					return nil, errShellSyntax
				}
				if d == '\\' && i+1 < len(line) {
					switch n := line[i+1]; n {
					case '$', '`', '"', '\\':
						lit(n)
						i++
						continue
					case '\n':
						i++
						continue
					}
				}
				lit(d)
			}
		case '\\':
			if i+1 >= len(line) {
				return nil, errShellSyntax
			}
			i++
			if line[i] != '\n' {
				lit(line[i])
			}
		case ';', '&', '|', '<', '>', '(', ')', '$', '`':
			return nil, errShellSyntax
		case '*', '?', '[':
			glob = true
			cur.WriteByte(c)
			pat.WriteByte(c)
		default:
			cur.WriteByte(c)
			pat.WriteByte(c)
		}
	}
	flush()
	return words, nil
}

// shellQuote quotes s for a POSIX shell (the inverse of splitCommand for
// one word); used by tests and fuzzing.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// rcloneShellProbe is the command rclone runs to learn the remote shell's
// family; a POSIX shell prints "%ComSpec%" (ShellId is unset), which makes
// rclone choose its "unix" quoting for the hash commands.
const rcloneShellProbe = "echo ${ShellId}%ComSpec%"

// command is a parsed exec request.
type command struct {
	name string // "scp", "md5sum", "sha1sum", "sha256sum", "echo"
	args []word
	scp  scpOptions
}

// scpOptions are the flags of a remote "scp" (the side scp -O starts).
type scpOptions struct {
	sink      bool // -t: we receive files
	source    bool // -f: we send files
	recursive bool // -r
	preserve  bool // -p: times and modes
	targetDir bool // -d: the target must be a directory
	verbose   bool // -v: accepted, ignored
	paths     []word
}

// parseCommand parses an exec request's command line.
func parseCommand(line string) (command, error) {
	if strings.TrimSpace(line) == rcloneShellProbe {
		return command{name: "echo", args: []word{{s: "%ComSpec%"}}}, nil
	}
	words, err := splitCommand(line)
	if err != nil {
		return command{}, err
	}
	if len(words) == 0 {
		return command{}, errors.New("empty command")
	}
	if words[0].glob {
		return command{}, errShellSyntax
	}
	name := path.Base(words[0].s)
	if words[0].s != name && !strings.HasPrefix(words[0].s, "/") {
		return command{}, fmt.Errorf("unknown command %q", words[0].s)
	}
	cmd := command{name: name, args: words[1:]}
	switch name {
	case "scp":
		cmd.scp, err = parseSCPArgs(words[1:])
		return cmd, err
	case "md5sum", "sha1sum", "sha256sum":
		var args []word
		opts := true
		for _, w := range cmd.args {
			switch {
			case opts && w.s == "--":
				opts = false
			case opts && len(w.s) > 1 && w.s[0] == '-':
				return command{}, fmt.Errorf("%s: unsupported option %q", name, w.s)
			default:
				args = append(args, w)
			}
		}
		cmd.args = args
		return cmd, nil
	case "echo":
		return cmd, nil
	}
	return command{}, fmt.Errorf("unknown command %q", name)
}

// parseSCPArgs parses "scp [-v] [-r] [-p] [-d] -t|-f [--] PATH...", flags
// separate or combined ("-prt").
func parseSCPArgs(args []word) (scpOptions, error) {
	var o scpOptions
	i := 0
	for ; i < len(args); i++ {
		a := args[i].s
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, f := range a[1:] {
			switch f {
			case 't':
				o.sink = true
			case 'f':
				o.source = true
			case 'r':
				o.recursive = true
			case 'p':
				o.preserve = true
			case 'd':
				o.targetDir = true
			case 'v':
				o.verbose = true
			case 'q', 'T':
				// -q (quiet) and -T (no strict filename check on the
				// client side) change nothing here.
			default:
				return o, fmt.Errorf("scp: unsupported option -%c", f)
			}
		}
	}
	o.paths = args[i:]
	switch {
	case o.sink == o.source:
		return o, errors.New("scp: exactly one of -t and -f is required")
	case len(o.paths) == 0:
		return o, errors.New("scp: missing path")
	case o.sink && len(o.paths) != 1:
		return o, errors.New("scp: -t takes one target")
	}
	for _, p := range o.paths {
		if p.s == "" || strings.IndexByte(p.s, 0) >= 0 {
			return o, errors.New("scp: invalid path")
		}
	}
	return o, nil
}
