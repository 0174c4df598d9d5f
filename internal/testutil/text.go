package testutil

import (
	"log/slog"
	"strconv"
	"strings"
)

// ParseText returns the records in the output of slog's text handler (a
// real server's stderr, in the e2e tests), oldest first. Lines that are
// not log records (a program's other output) are skipped. Values are
// strings (slog.StringValue): compare them with Record.Attr.
func ParseText(out string) []Record {
	var recs []Record
	for _, line := range strings.Split(out, "\n") {
		if r, ok := parseLine(line); ok {
			recs = append(recs, r)
		}
	}
	return recs
}

// parseLine parses one text-handler line: key=value pairs separated by
// spaces, values Go-quoted when they need it. It needs level and msg.
func parseLine(line string) (Record, bool) {
	r := Record{Attrs: map[string]slog.Value{}}
	var hasLevel, hasMsg bool
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 || strings.ContainsAny(line[:eq], " \"") {
			return Record{}, false
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return Record{}, false
			}
			val, _ = strconv.Unquote(q)
			line = rest[len(q):]
		} else {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			val, line = rest[:end], rest[end:]
		}
		switch key {
		case "level":
			if err := r.Level.UnmarshalText([]byte(val)); err != nil {
				return Record{}, false
			}
			hasLevel = true
		case "msg":
			r.Message, hasMsg = val, true
		case "time":
		default:
			r.Attrs[key] = slog.StringValue(val)
		}
	}
	return r, hasLevel && hasMsg
}
