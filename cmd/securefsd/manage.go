package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

const usersDBFileName = "users.db"
const storeDirName = "store"

// manager returns the running server's admin client, or, when no server
// runs, a Local over the database and store opened here.
func (e *env) manager(c *cli.Context) (admin.Manager, func(), error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, nil, err
	}
	client, err := admin.Dial(dir)
	if err == nil {
		return client, func() {}, nil
	}
	if !errors.Is(err, admin.ErrNoServer) {
		return nil, nil, err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kr, kf, err := loadKeyring(c, e, dir, false, log)
	if err != nil {
		return nil, nil, err
	}
	if err := admin.CheckKey(filepath.Join(dir, keyCheckFileName), kr); err != nil {
		return nil, nil, err
	}
	db, err := users.Open(filepath.Join(dir, usersDBFileName), users.Options{Logger: log})
	if errors.Is(err, users.ErrLocked) {
		return nil, nil, fmt.Errorf("the user database is locked by another process, but no server answers on %s", filepath.Join(dir, admin.SocketName))
	}
	if err != nil {
		return nil, nil, err
	}
	store, err := vfs.NewStore(filepath.Join(dir, storeDirName), vfs.Options{Keyring: kr, Logger: log})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	local := admin.NewLocal(db, store, kf, filepath.Join(dir, keyCheckFileName), kr)
	return local, func() {
		store.Close()
		db.Close()
	}, nil
}

// readPassword takes a password from stdin (--password-stdin: the first
// line) or asks twice on the terminal. Never from argv.
func (e *env) readPassword(c *cli.Context) ([]byte, error) {
	if c.Bool("password-stdin") {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return nil, errors.New("empty password on stdin")
		}
		return []byte(line), nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("no terminal to ask for the password on: use --password-stdin")
	}
	fmt.Fprint(e.stderr, "Password: ")
	p1, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(e.stderr, "Again: ")
	p2, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return nil, err
	}
	if string(p1) != string(p2) {
		return nil, errors.New("the passwords differ")
	}
	if len(p1) == 0 {
		return nil, errors.New("empty password")
	}
	return p1, nil
}

func readKeyFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("key file %s holds no key", path)
	}
	return lines, nil
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("want exactly one argument: %s", what)
	}
	return c.Args().First(), nil
}

func (e *env) userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage users (works while the server runs)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a user",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of stdin"},
					&cli.BoolFlag{Name: "no-password", Usage: "key-only user"},
					&cli.StringSliceFlag{Name: "key", Usage: "authorized_keys file with the user's SSH public key(s); repeatable"},
					&cli.BoolFlag{Name: "read-only", Usage: "may list and download only"},
					&cli.StringFlag{Name: "perms", Usage: "rights, comma-separated: list,download,upload,overwrite,delete,rename,mkdir,chmod (default: all)"},
					&cli.StringFlag{Name: "quota", Usage: "byte quota, e.g. 10G, 500M (default: none)"},
					&cli.Int64Flag{Name: "quota-files", Usage: "file count quota (default: none)"},
				},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "NAME")
					if err != nil {
						return err
					}
					req := admin.AddUserRequest{Name: name, ReadOnly: c.Bool("read-only"), Perms: c.String("perms"), QuotaFiles: c.Int64("quota-files")}
					if q := c.String("quota"); q != "" {
						if req.QuotaBytes, err = parseSize(q); err != nil {
							return err
						}
					}
					for _, kf := range c.StringSlice("key") {
						lines, err := readKeyFile(kf)
						if err != nil {
							return err
						}
						req.Keys = append(req.Keys, lines...)
					}
					if !c.Bool("no-password") {
						if req.Password, err = e.readPassword(c); err != nil {
							return err
						}
						defer clear(req.Password)
					} else if len(req.Keys) == 0 {
						return errors.New("a user with --no-password needs at least one --key")
					}
					m, done, err := e.manager(c)
					if err != nil {
						return err
					}
					defer done()
					if err := m.AddUser(c.Context, req); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "added user %s\n", name)
					return nil
				},
			},
			{
				Name:      "passwd",
				Usage:     "set a user's password",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of stdin"}},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "NAME")
					if err != nil {
						return err
					}
					pw, err := e.readPassword(c)
					if err != nil {
						return err
					}
					defer clear(pw)
					m, done, err := e.manager(c)
					if err != nil {
						return err
					}
					defer done()
					if err := m.SetPassword(c.Context, name, pw); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "password of %s changed\n", name)
					return nil
				},
			},
			{
				Name:      "del",
				Usage:     "delete a user",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "purge", Usage: "also delete the user's files"}},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "NAME")
					if err != nil {
						return err
					}
					m, done, err := e.manager(c)
					if err != nil {
						return err
					}
					defer done()
					pr := newProgress(e.stderr, "purging")
					err = m.DeleteUser(c.Context, name, c.Bool("purge"), func(p admin.Progress) { pr.line("%s %s", p.Stage, p.Item) })
					pr.finish()
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "deleted user %s\n", name)
					return nil
				},
			},
			{
				Name:  "disable",
				Usage: "stop a user from logging in (files kept)",
				Action: func(c *cli.Context) error {
					return e.setDisabled(c, true)
				},
				ArgsUsage: "NAME",
			},
			{
				Name:      "enable",
				Usage:     "let a disabled user log in again",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					return e.setDisabled(c, false)
				},
			},
			{
				Name:  "list",
				Usage: "list users",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				Action: func(c *cli.Context) error {
					m, done, err := e.manager(c)
					if err != nil {
						return err
					}
					defer done()
					us, err := m.ListUsers(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						type row struct {
							Name       string    `json:"name"`
							Home       string    `json:"home"`
							Perms      string    `json:"perms"`
							Keys       []string  `json:"keys"`
							QuotaBytes int64     `json:"quota_bytes"`
							QuotaFiles int64     `json:"quota_files"`
							Disabled   bool      `json:"disabled"`
							Created    time.Time `json:"created"`
							LastLogin  time.Time `json:"last_login"`
						}
						rows := []row{}
						for _, u := range us {
							r := row{Name: u.Name, Home: u.Home, Perms: u.Perms.String(), Keys: []string{}, QuotaBytes: u.QuotaBytes, QuotaFiles: u.QuotaFiles, Disabled: u.Disabled, Created: u.Created, LastLogin: u.LastLogin}
							for _, k := range u.Keys {
								r.Keys = append(r.Keys, k.Fingerprint)
							}
							rows = append(rows, r)
						}
						enc := json.NewEncoder(e.stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(rows)
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tPERMS\tKEYS\tQUOTA\tSTATUS\tLAST LOGIN")
					for _, u := range us {
						status := "active"
						if u.Disabled {
							status = "disabled"
						}
						quota := "-"
						if u.QuotaBytes > 0 {
							quota = formatSize(u.QuotaBytes)
						}
						last := "never"
						if !u.LastLogin.IsZero() {
							last = u.LastLogin.Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", u.Name, u.Perms, len(u.Keys), quota, status, last)
					}
					return tw.Flush()
				},
			},
			{
				Name:  "key",
				Usage: "manage a user's SSH public keys",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "add the key(s) of an authorized_keys file (- for stdin)",
						ArgsUsage: "NAME FILE",
						Action: func(c *cli.Context) error {
							if c.NArg() != 2 {
								return errors.New("want NAME FILE")
							}
							name, file := c.Args().Get(0), c.Args().Get(1)
							var lines []string
							var err error
							if file == "-" {
								b, rerr := io.ReadAll(io.LimitReader(e.stdin, 1<<20))
								if rerr != nil {
									return rerr
								}
								for _, l := range strings.Split(string(b), "\n") {
									if l = strings.TrimSpace(l); l != "" {
										lines = append(lines, l)
									}
								}
							} else if lines, err = readKeyFile(file); err != nil {
								return err
							}
							m, done, err := e.manager(c)
							if err != nil {
								return err
							}
							defer done()
							for _, l := range lines {
								k, err := m.AddKey(c.Context, name, l)
								if err != nil {
									return err
								}
								fmt.Fprintf(e.stdout, "added key %s %s\n", k.Fingerprint, k.Comment)
							}
							return nil
						},
					},
					{
						Name:      "del",
						Usage:     "delete a key by fingerprint (SHA256:...) or comment",
						ArgsUsage: "NAME FINGERPRINT",
						Action: func(c *cli.Context) error {
							if c.NArg() != 2 {
								return errors.New("want NAME FINGERPRINT")
							}
							m, done, err := e.manager(c)
							if err != nil {
								return err
							}
							defer done()
							if err := m.DelKey(c.Context, c.Args().Get(0), c.Args().Get(1)); err != nil {
								return err
							}
							fmt.Fprintf(e.stdout, "deleted key %s\n", c.Args().Get(1))
							return nil
						},
					},
					{
						Name:      "list",
						Usage:     "list a user's keys",
						ArgsUsage: "NAME",
						Action: func(c *cli.Context) error {
							name, err := oneArg(c, "NAME")
							if err != nil {
								return err
							}
							m, done, err := e.manager(c)
							if err != nil {
								return err
							}
							defer done()
							us, err := m.ListUsers(c.Context)
							if err != nil {
								return err
							}
							for _, u := range us {
								if u.Name == name {
									for _, k := range u.Keys {
										fmt.Fprintf(e.stdout, "%s %s\n", k.Fingerprint, k.Comment)
									}
									return nil
								}
							}
							return fmt.Errorf("user %s: %w", name, users.ErrNotFound)
						},
					},
				},
			},
		},
	}
}

func (e *env) setDisabled(c *cli.Context, disabled bool) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	m, done, err := e.manager(c)
	if err != nil {
		return err
	}
	defer done()
	if err := m.SetDisabled(c.Context, name, disabled); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "user %s disabled=%v\n", name, disabled)
	return nil
}

func (e *env) verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "authenticate every file in the store; list damaged ones; exit 1 if any",
		Flags: []cli.Flag{&cli.StringFlag{Name: "user", Usage: "only this user's files"}},
		Action: func(c *cli.Context) error {
			m, done, err := e.manager(c)
			if err != nil {
				return err
			}
			defer done()
			res, err := m.Verify(c.Context, c.String("user"), func(d admin.Damage) {
				fmt.Fprintf(e.stdout, "DAMAGED %s: %s\n", d.Path, d.Error)
			})
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			fmt.Fprintf(e.stdout, "checked %d files, %d damaged\n", res.Checked, res.Damaged)
			if res.Damaged > 0 {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}

// parseSize reads 10G, 500M, 1024, 1.5G (binary units).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := int64(1)
	for _, u := range sizeUnits {
		if u.suffix != "B" && strings.HasSuffix(t, u.suffix) {
			mult, t = u.mult, strings.TrimSuffix(t, u.suffix)
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 500M, 10G)", s)
	}
	return int64(f * float64(mult)), nil
}

func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n >= u.mult && u.mult > 1 {
			return strconv.FormatFloat(float64(n)/float64(u.mult), 'f', 1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// progress prints a one-line updating counter on a terminal and plain,
// throttled lines otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	what  string
	last  time.Time
	dirty bool
}

func newProgress(w io.Writer, what string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, what: what, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) update(done, total int, item string) {
	now := time.Now()
	if done != total && now.Sub(p.last) < 200*time.Millisecond && p.tty {
		return
	}
	if !p.tty && done != total && now.Sub(p.last) < 2*time.Second {
		return
	}
	p.last = now
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s %d/%d %s", p.what, done, total, item)
		p.dirty = true
		return
	}
	fmt.Fprintf(p.w, "%s %d/%d\n", p.what, done, total)
}

func (p *progress) line(format string, args ...any) {
	p.finish()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *progress) finish() {
	if p.dirty {
		fmt.Fprintln(p.w)
		p.dirty = false
	}
}
