package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// auditDirFlag is global: serve writes the trail there, offline
// management commands record into it, `audit verify/query` read it.
var auditDirFlag = altsrc.NewStringFlag(&cli.StringFlag{Name: "audit-dir", Usage: "audit trail directory (default: DATA-DIR/audit)", EnvVars: []string{"SECUREFSD_AUDIT_DIR"}})

var auditServeFlags = []cli.Flag{
	altsrc.NewBoolFlag(&cli.BoolFlag{Name: "audit", Value: true, Usage: "keep the encrypted audit trail (--audit=false: none)", EnvVars: []string{"SECUREFSD_AUDIT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "audit-retention", Usage: "remove audit segments older than this, e.g. 6y, 90d, 720h (default: keep all)", EnvVars: []string{"SECUREFSD_AUDIT_RETENTION"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "audit-forward", Usage: "also send each audit record as a JSON line to syslog or stdout", EnvVars: []string{"SECUREFSD_AUDIT_FORWARD"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "log-names", Value: "clear", Usage: "file names in the operational log: clear, hash (a keyed token, the same for the same name) or none", EnvVars: []string{"SECUREFSD_LOG_NAMES"}}),
}

func auditDir(c *cli.Context, dataDir string) string {
	if d := c.String("audit-dir"); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs
		}
		return d
	}
	return filepath.Join(dataDir, "audit")
}

// parseRetention parses "6y", "90d", "2w" or a Go duration; "" is zero.
func parseRetention(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	units := map[byte]time.Duration{'y': 365 * 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'd': 24 * time.Hour}
	if u, ok := units[s[len(s)-1]]; ok {
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil || n <= 0 || n > 1000 {
			return 0, fmt.Errorf("--audit-retention %q: want e.g. 6y, 90d, 2w or 720h", s)
		}
		return time.Duration(n) * u, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--audit-retention %q: want e.g. 6y, 90d, 2w or 720h", s)
	}
	return d, nil
}

// forwarder returns the --audit-forward sink and its closer.
func (e *env) forwarder(how string) (func([]byte) error, func(), error) {
	switch how {
	case "":
		return nil, func() {}, nil
	case "stdout":
		var mu sync.Mutex
		return func(b []byte) error {
			mu.Lock()
			defer mu.Unlock()
			_, err := e.stdout.Write(b)
			return err
		}, func() {}, nil
	case "syslog":
		fwd, closeFwd, err := syslogForwarder()
		if err != nil {
			return nil, nil, fmt.Errorf("--audit-forward syslog: %w", err)
		}
		return fwd, closeFwd, nil
	}
	return nil, nil, fmt.Errorf("--audit-forward %q: want syslog or stdout", how)
}

// openAudit opens the trail for serve (nil when --audit=false).
func (e *env) openAudit(c *cli.Context, dir string, kr *envelope.Keyring, names *logNames, log *slog.Logger) (*audit.Log, func(), error) {
	if !c.Bool("audit") {
		if names.mode == "hash" {
			return nil, nil, errors.New("--log-names hash needs the audit key: not with --audit=false")
		}
		return nil, func() {}, nil
	}
	retention, err := parseRetention(c.String("audit-retention"))
	if err != nil {
		return nil, nil, err
	}
	fwd, closeFwd, err := e.forwarder(c.String("audit-forward"))
	if err != nil {
		return nil, nil, err
	}
	adir := auditDir(c, dir)
	keys, err := audit.LoadKeys(adir, kr, true)
	if err != nil {
		closeFwd()
		return nil, nil, err
	}
	names.keys.Store(keys)
	l, err := audit.Open(adir, keys, audit.Options{Retention: retention, Forward: fwd, Logger: log})
	if err != nil {
		closeFwd()
		return nil, nil, err
	}
	l.Record(audit.Record{Protocol: "audit", Op: audit.OpAuditStart, Result: audit.ResultOK, Detail: "serve " + buildVersion()})
	return l, func() {
		if err := l.Close(); err != nil {
			log.Error("audit: closing the trail", "event", audit.EventWriteFailed, "err", err)
		}
		closeFwd()
	}, nil
}

// onLogin turns users' login outcomes into audit records. WebDAV sends
// its credentials with every request: only the verified ones (not served
// from the password cache) count as logins there.
func onLogin(a *audit.Log) func(users.LoginEvent) {
	return func(ev users.LoginEvent) {
		if ev.Err == nil && ev.Cached && ev.Proto == "dav" {
			return
		}
		r := audit.Record{User: ev.User, Remote: ev.Remote, Protocol: protoName(ev.Proto), Op: audit.OpLogin, Detail: ev.Method}
		switch {
		case ev.Ban != "":
			r.Op, r.Result, r.Detail = audit.OpBan, audit.ResultOK, ev.Ban
		case ev.Err == nil:
			r.Result = audit.ResultOK
		case errors.Is(ev.Err, users.ErrBanned):
			r.Result, r.Error = audit.ResultFail, "banned"
		default:
			r.Result, r.Error = audit.ResultFail, "auth"
		}
		a.Record(r)
	}
}

// protoName: users' protocol names to the audit's.
func protoName(p string) string {
	switch p {
	case "dav":
		return "webdav"
	case "link":
		return "share"
	}
	return p
}

// logNames routes the names in operational log lines through one place
// (--log-names): slog's ReplaceAttr for the attributes that carry a
// client's file name, and for errors, whose text may hold one.
type logNames struct {
	mode string                     // clear, hash, none
	keys atomic.Pointer[audit.Keys] // set once the audit key is loaded
}

// defaultLogNames is --log-names as given, or, when not given, what the
// store calls for: on storage v2, whose point is that a copy of the disk
// names no file, the log (often on the same disk) names none either:
// tokens with the audit trail's key, nothing without it.
func defaultLogNames(c *cli.Context) string {
	if c.IsSet("log-names") {
		return c.String("log-names")
	}
	v2 := c.String("storage") == "v2"
	if d, err := filepath.Abs(c.String("data-dir")); err == nil {
		if _, err := os.Stat(filepath.Join(d, storeDirName, vfs.IndexFileName)); err == nil {
			v2 = true
		}
	}
	switch {
	case !v2:
		return "clear"
	case c.Bool("audit"):
		return "hash"
	}
	return "none"
}

func parseLogNames(s string) (*logNames, error) {
	switch s {
	case "", "clear", "hash", "none":
		return &logNames{mode: cmpOr(s, "clear")}, nil
	}
	return nil, fmt.Errorf("--log-names %q: want clear, hash or none", s)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// nameAttrs are the attribute keys whose values are client file names.
var nameAttrs = map[string]bool{"path": true, "path2": true, "name": true, "target": true, "from": true, "to": true, "src": true, "dst": true, "file_name": true}

// token is what a name becomes in the log.
func (n *logNames) token(name string) string {
	if n.mode == "hash" {
		if k := n.keys.Load(); k != nil {
			return k.NameToken(name)
		}
	}
	return "-"
}

// replace is the slog.HandlerOptions.ReplaceAttr of --log-names.
func (n *logNames) replace(_ []string, a slog.Attr) slog.Attr {
	if n == nil || n.mode == "clear" {
		return a
	}
	if nameAttrs[a.Key] && a.Value.Kind() == slog.KindString {
		return slog.String(a.Key, n.token(a.Value.String()))
	}
	if a.Value.Kind() == slog.KindAny {
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, n.errText(err))
		}
	}
	return a
}

// errText is err's text with every name a *fs.PathError or *os.LinkError
// in its chain carries replaced by its token.
func (n *logNames) errText(err error) string {
	s := err.Error()
	var names []string
	var walk func(error)
	walk = func(e error) {
		for e != nil {
			switch v := e.(type) {
			case *fs.PathError:
				names = append(names, v.Path)
			case *os.LinkError:
				names = append(names, v.Old, v.New)
			case interface{ Unwrap() []error }:
				for _, x := range v.Unwrap() {
					walk(x)
				}
				return
			}
			e = errors.Unwrap(e)
		}
	}
	walk(err)
	for _, name := range names {
		if name != "" && name != "/" {
			s = strings.ReplaceAll(s, name, n.token(name))
		}
	}
	return s
}

func (e *env) auditCommand() *cli.Command {
	timeFlag := func(name, usage string) cli.Flag { return &cli.StringFlag{Name: name, Usage: usage} }
	return &cli.Command{
		Name:  "audit",
		Usage: "check and search the encrypted audit trail (offline; safe while the server runs)",
		Subcommands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "check every record and the chain; exit 1 and name the place if anything was changed",
				Flags: []cli.Flag{timeFlag("since", "decrypt only segments that may hold records from this time on (RFC 3339 or 2006-01-02); older ones are still chained")},
				Action: func(c *cli.Context) error {
					dir, keys, err := e.openAuditKeys(c)
					if err != nil {
						return err
					}
					since, err := parseTime(c.String("since"))
					if err != nil {
						return err
					}
					rep, err := audit.Verify(dir, keys, audit.VerifyOptions{Since: since})
					for _, n := range rep.Notes {
						fmt.Fprintln(e.stdout, "note:", n)
					}
					var te *audit.TamperError
					if errors.As(err, &te) {
						for _, p := range te.Problems {
							fmt.Fprintln(e.stdout, "TAMPERED", p.String())
						}
						fmt.Fprintf(e.stdout, "%d segments, %d records checked: the trail was changed\n", rep.Segments, rep.Records)
						return cli.Exit("", 1)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "ok: %d segments, %d records authenticated, %d chained only", rep.Segments, rep.Records, rep.Hashed)
					if !rep.First.IsZero() {
						fmt.Fprintf(e.stdout, ", %s to %s", rep.First.Format(time.RFC3339), rep.Last.Format(time.RFC3339))
					}
					if rep.AnchoredAfter > 0 {
						fmt.Fprintf(e.stdout, "; segments up to %d removed by retention (anchored)", rep.AnchoredAfter)
					}
					fmt.Fprintln(e.stdout)
					return nil
				},
			},
			{
				Name:  "query",
				Usage: "print the records that match, oldest first",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "user", Usage: "whose data or account"},
					&cli.StringFlag{Name: "path", Usage: "exactly this path (first or second path of a record)"},
					&cli.StringFlag{Name: "under", Usage: "this directory and everything below it"},
					&cli.StringFlag{Name: "op", Usage: "operations, comma-separated (read,write,rename,login,...)"},
					timeFlag("since", "from this time (RFC 3339 or 2006-01-02)"),
					timeFlag("until", "before this time"),
					&cli.BoolFlag{Name: "json", Usage: "one JSON record per line"},
					&cli.BoolFlag{Name: "csv", Usage: "CSV with a header line"},
				},
				Action: e.auditQuery,
			},
		},
	}
}

func (e *env) openAuditKeys(c *cli.Context) (string, *audit.Keys, error) {
	dir, err := dataDir(c)
	if err != nil {
		return "", nil, err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kr, _, err := loadKeyring(c, e, dir, false, log)
	if err != nil {
		return "", nil, err
	}
	adir := auditDir(c, dir)
	keys, err := audit.LoadKeys(adir, kr, false)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", adir, err)
	}
	return adir, keys, nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", s)
}

func (e *env) auditQuery(c *cli.Context) error {
	if c.Bool("json") && c.Bool("csv") {
		return errors.New("--json or --csv, not both")
	}
	if c.String("path") != "" && c.String("under") != "" {
		return errors.New("--path or --under, not both")
	}
	f := audit.Filter{User: c.String("user"), Path: c.String("path"), Under: c.String("under")}
	for _, op := range strings.Split(c.String("op"), ",") {
		if op = strings.TrimSpace(op); op != "" {
			f.Ops = append(f.Ops, op)
		}
	}
	var err error
	if f.Since, err = parseTime(c.String("since")); err != nil {
		return err
	}
	if f.Until, err = parseTime(c.String("until")); err != nil {
		return err
	}
	dir, keys, err := e.openAuditKeys(c)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	defer w.Flush()
	var emit func(audit.Record) error
	switch {
	case c.Bool("json"):
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		emit = func(r audit.Record) error { return enc.Encode(r) }
	case c.Bool("csv"):
		cw := csv.NewWriter(w)
		defer cw.Flush()
		if err := cw.Write(audit.CSVHeader); err != nil {
			return err
		}
		emit = func(r audit.Record) error { return cw.Write(r.CSVRow()) }
	default:
		emit = func(r audit.Record) error {
			_, err := fmt.Fprintf(w, "%s %-6s %-14s %-5s user=%s%s remote=%s path=%q%s bytes=%d%s%s%s\n",
				r.Time.Local().Format("2006-01-02 15:04:05"), r.Protocol, r.Op, r.Result, r.User,
				opt(" admin=", r.Admin), r.Remote, r.Path, opt(" path2=", r.Path2), r.Bytes,
				opt(" error=", r.Error), opt(" link=", r.Link), opt(" detail=", r.Detail))
			return err
		}
	}
	return audit.Query(c.Context, dir, keys, f, emit)
}

func opt(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}
