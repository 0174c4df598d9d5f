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
	"github.com/urfave/cli/v2/altsrc"
	"golang.org/x/term"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/keyfile"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

const usersDBFileName = "users.db"

// usersKeyFileName holds the key that seals users.db (users.Options.Key),
// wrapped by the keyring.
const usersKeyFileName = "users.key"

// openUsers opens the data directory's users database sealed with its key
// (made on first use: a plain database from before is sealed then).
func openUsers(dir string, kr *envelope.Keyring, opts users.Options) (*users.DB, error) {
	key, err := loadUsersKey(dir, kr)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	opts.Key = key
	return users.Open(filepath.Join(dir, usersDBFileName), opts)
}

// loadUsersKey reads the users database's key from DATA-DIR/users.key
// (making it if there is none).
func loadUsersKey(dir string, kr *envelope.Keyring) ([]byte, error) {
	key, err := keyfile.LoadSecret(filepath.Join(dir, usersKeyFileName), kr, users.KeyBinding, users.KeySize, true)
	if err != nil {
		return nil, fmt.Errorf("users database key: %w", err)
	}
	return key, nil
}

const storeDirName = "store"

// indexKeyFileName holds storage v2's index root key, wrapped by the
// keyring like users.key (made when a version 2 store is created).
const indexKeyFileName = "index.key"

// loadIndexKey reads storage v2's index key from DATA-DIR/index.key
// (making it with create).
func loadIndexKey(dir string, kr *envelope.Keyring, create bool) ([]byte, error) {
	key, err := keyfile.LoadSecret(filepath.Join(dir, indexKeyFileName), kr, vfs.IndexKeyBinding, vfs.IndexKeySize, create)
	if err != nil {
		return nil, fmt.Errorf("storage v2 index key: %w", err)
	}
	return key, nil
}

// openStore opens the data directory's store with o. A version 2 store
// (one that has its index, or a new one o asks for) gets its index key
// from index.key.
//
// A cluster node's data directory (remoteFileName) has its store in the
// object store and etcd: without them (o.Blobs) it is refused, rather
// than opened as the empty local store it looks like.
func openStore(dir string, kr *envelope.Keyring, o vfs.Options) (*vfs.Store, error) {
	if err := clusterMigrationUnderWay(dir); err != nil {
		return nil, err
	}
	if err := checkNotRemote(dir, o); err != nil {
		return nil, err
	}
	storeDir := filepath.Join(dir, storeDirName)
	_, err := os.Stat(filepath.Join(storeDir, vfs.IndexFileName))
	if err == nil || o.Storage == vfs.StorageV2 {
		key, err := loadIndexKey(dir, kr, o.Storage == vfs.StorageV2)
		if err != nil {
			return nil, err
		}
		defer clear(key)
		o.IndexKey = key
	}
	return vfs.NewStore(storeDir, o)
}

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
	db, err := openUsers(dir, kr, users.Options{Logger: log})
	if errors.Is(err, users.ErrLocked) {
		return nil, nil, fmt.Errorf("the user database is locked by another process, but no server answers on %s", filepath.Join(dir, admin.SocketName))
	}
	if err != nil {
		return nil, nil, err
	}
	store, err := openStore(dir, kr, vfs.Options{Keyring: kr, Logger: log, OpenDamaged: true})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	local := admin.NewLocal(db, store, kf, filepath.Join(dir, keyCheckFileName), kr)
	local.UsersKey = filepath.Join(dir, usersKeyFileName)
	if local.Store.StorageVersion() == vfs.StorageV2 {
		local.IndexKey = filepath.Join(dir, indexKeyFileName)
	}
	// The trail (if this data directory has one) records offline changes
	// too; the users database's lock, held now, keeps a server from
	// appending at the same time.
	adir := auditDir(c, dir)
	keys, err := audit.LoadKeys(adir, kr, false)
	if errors.Is(err, audit.ErrNoAudit) {
		return local, func() {
			store.Close()
			db.Close()
		}, nil
	}
	var alog *audit.Log
	if err == nil {
		alog, err = audit.Open(adir, keys, audit.Options{Logger: log})
	}
	if err != nil {
		store.Close()
		db.Close()
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	local.AuditDir = adir
	return admin.Audited(local, alog), func() {
		if err := alog.Close(); err != nil {
			log.Error("audit: closing the trail", "err", err)
		}
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

// errUnsupportedOp means the manager lacks an optional set of operations
// (a server of an older version on the admin socket).
var errUnsupportedOp = errors.New("this server does not manage")

// optional finds the optional management interface T on m; what names its
// operations in the error.
func optional[T any](m admin.Manager, what string) (T, error) {
	t, ok := m.(T)
	if !ok {
		return t, fmt.Errorf("%w %s", errUnsupportedOp, what)
	}
	return t, nil
}

// with adapts an operation of the optional interface T to a mgmtCmd's run.
func with[T any](what string, fn func(c *cli.Context, t T, a []string) error) func(*cli.Context, admin.Manager, []string) error {
	return func(c *cli.Context, m admin.Manager, a []string) error {
		t, err := optional[T](m, what)
		if err != nil {
			return err
		}
		return fn(c, t, a)
	}
}

// A mgmtCmd is a command that runs one Manager operation: through the
// running server's admin socket, or on the database and store opened here
// (see manager). A new management command is one entry in a table.
type mgmtCmd struct {
	name, usage, description string
	args                     string // positional arguments, exactly these: "NAME FILE"
	flags                    []cli.Flag
	// keyring: the operation works with the keyring. Through a running
	// server it is the server's keyring, so a --key-file naming another
	// file is refused rather than silently ignored.
	keyring bool
	// run performs the operation and prints its result.
	run func(c *cli.Context, m admin.Manager, args []string) error
	// prepare, used instead of run, checks the input and reads what the
	// command needs (a password, key files) before the manager opens, and
	// returns the operation.
	prepare func(c *cli.Context, args []string) (prepared, error)
}

// prepared is an operation with its input read.
type prepared struct {
	run func(m admin.Manager) error
	// secret (a password) is cleared when the command ends, whether or
	// not the manager opened.
	secret []byte
}

func (e *env) mgmtCommands(cmds ...mgmtCmd) []*cli.Command {
	out := make([]*cli.Command, 0, len(cmds))
	for _, mc := range cmds {
		out = append(out, &cli.Command{
			Name: mc.name, Usage: mc.usage, Description: mc.description, ArgsUsage: mc.args, Flags: mc.flags,
			// Flags wrapped by altsrc (--public-url) take their value from
			// the config file too, as serve's do.
			Before: altsrc.InitInputSourceWithContext(mc.flags, altsrc.NewYamlSourceFromFlagFunc("config")),
			Action: func(c *cli.Context) error { return e.runMgmt(c, mc) },
		})
	}
	return out
}

// runMgmt is every management command's action: check the arguments,
// prepare, open the manager, run.
func (e *env) runMgmt(c *cli.Context, mc mgmtCmd) error {
	// "[X]" is an optional argument.
	if want := strings.Fields(mc.args); c.NArg() != len(want) && !(len(want) == 1 && strings.HasPrefix(want[0], "[") && c.NArg() == 0) {
		if len(want) == 0 {
			return fmt.Errorf("%s takes no arguments", c.Command.FullName())
		}
		return fmt.Errorf("want %s", mc.args)
	}
	args := c.Args().Slice()
	op := func(m admin.Manager) error { return mc.run(c, m, args) }
	if mc.prepare != nil {
		p, err := mc.prepare(c, args)
		defer clear(p.secret)
		if err != nil {
			return err
		}
		op = p.run
	}
	m, done, err := e.manager(c)
	if err != nil {
		return err
	}
	defer done()
	if mc.keyring {
		if err := sameKeyFile(c, m); err != nil {
			return err
		}
	}
	return op(m)
}

// errOtherKeyFile means --key-file names another file than the running
// server's keyring.
var errOtherKeyFile = errors.New("a running server works with the keyring it loaded")

// sameKeyFile refuses a --key-file (flag, environment or config) that is not
// the key file the running server loaded: the server verifies and rotates
// with its own keyring, so the other file would be ignored. Without a
// server, the command loads --key-file itself and there is nothing to check.
func sameKeyFile(c *cli.Context, m admin.Manager) error {
	if _, remote := m.(*admin.Client); !remote || c.String("key-file") == "" {
		return nil
	}
	want, err := filepath.Abs(c.String("key-file"))
	if err != nil {
		return err
	}
	have, err := m.KeyFile(c.Context)
	if err != nil {
		return fmt.Errorf("ask the server for its key file: %w", err)
	}
	if want == have {
		return nil
	}
	if a, err := os.Stat(want); err == nil {
		if b, err := os.Stat(have); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	return fmt.Errorf("%w (%s), not --key-file %s: stop the server to use another key file", errOtherKeyFile, have, want)
}

// passwordStdinFlag is new per command: cli flags keep state.
func passwordStdinFlag() cli.Flag {
	return &cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of stdin"}
}

func (e *env) userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage users (works while the server runs)",
		Subcommands: append(e.mgmtCommands(
			mgmtCmd{
				name: "add", usage: "add a user", args: "NAME",
				flags: []cli.Flag{
					passwordStdinFlag(),
					&cli.BoolFlag{Name: "no-password", Usage: "key-only user"},
					&cli.StringSliceFlag{Name: "key", Usage: "authorized_keys file with the user's SSH public key(s); repeatable"},
					&cli.BoolFlag{Name: "read-only", Usage: "may list and download only"},
					&cli.StringFlag{Name: "perms", Usage: "rights, comma-separated: list,download,upload,overwrite,delete,rename,mkdir,chmod (default: all)"},
					&cli.StringFlag{Name: "quota", Usage: "byte quota, e.g. 10G, 500M (default: none)"},
					&cli.Int64Flag{Name: "quota-files", Usage: "file count quota (default: none)"},
					&cli.BoolFlag{Name: "reuse-home", Usage: "give the new user the files a deleted user of the same name left (user del without --purge)"},
					&cli.BoolFlag{Name: "admin", Usage: "give the admin role (the browser's admin page)"},
				},
				prepare: e.prepareAddUser,
			},
			mgmtCmd{
				name: "passwd", usage: "set a user's password", args: "NAME",
				flags: []cli.Flag{passwordStdinFlag()},
				prepare: func(c *cli.Context, a []string) (prepared, error) {
					pw, err := e.readPassword(c)
					return prepared{secret: pw, run: func(m admin.Manager) error {
						if err := m.SetPassword(c.Context, a[0], pw); err != nil {
							return err
						}
						return e.printf("password of %s changed\n", a[0])
					}}, err
				},
			},
			mgmtCmd{
				name: "del", usage: "delete a user", args: "NAME",
				flags: []cli.Flag{&cli.BoolFlag{Name: "purge", Usage: "also delete the user's files"}},
				run: func(c *cli.Context, m admin.Manager, a []string) error {
					pr := newProgress(e.stderr, "purging")
					err := m.DeleteUser(c.Context, a[0], c.Bool("purge"), func(p admin.Progress) { pr.line("%s %s", p.Stage, p.Item) })
					pr.finish()
					if err != nil {
						return err
					}
					if !c.Bool("purge") {
						return e.printf("deleted user %s; the files are kept (`user add %[1]s --reuse-home` gives them to a new user %[1]s, who can then be deleted with --purge)\n", a[0])
					}
					return e.printf("deleted user %s\n", a[0])
				},
			},
			mgmtCmd{
				name: "set", usage: "change a user's rights; open sessions take them at their next request", args: "NAME",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "perms", Usage: "comma-separated permissions"},
					&cli.BoolFlag{Name: "read-only", Usage: "list and download only"},
					&cli.StringFlag{Name: "quota", Usage: "byte quota, e.g. 10G (0: none)"},
					&cli.Int64Flag{Name: "quota-files", Usage: "file count quota (0: none)"},
					&cli.BoolFlag{Name: "admin", Usage: "give the admin role"},
					&cli.BoolFlag{Name: "no-admin", Usage: "take the admin role away"},
				},
				run: e.setUser,
			},
			mgmtCmd{
				name: "disable", usage: "stop a user from logging in (files kept)", args: "NAME",
				run: func(c *cli.Context, m admin.Manager, a []string) error { return e.setDisabled(c, m, a[0], true) },
			},
			mgmtCmd{
				name: "enable", usage: "let a disabled user log in again", args: "NAME",
				run: func(c *cli.Context, m admin.Manager, a []string) error { return e.setDisabled(c, m, a[0], false) },
			},
			mgmtCmd{
				name: "list", usage: "list users",
				flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "JSON for scripts"}},
				run:   e.listUsers,
			},
		), &cli.Command{
			Name:  "2fa",
			Usage: "manage a user's two-factor login",
			Subcommands: e.mgmtCommands(
				mgmtCmd{
					name: "reset", usage: "remove a user's TOTP enrolment, recovery codes and app passwords (a lost phone); with serve --require-2fa their next browser login enrols again", args: "NAME",
					run: func(c *cli.Context, m admin.Manager, a []string) error {
						tr, ok := m.(admin.TwoFactorResetter)
						if !ok {
							return errors.New("2fa reset is not supported here")
						}
						if err := tr.ResetTwoFactor(c.Context, a[0]); err != nil {
							return err
						}
						return e.printf("two-factor login of %s reset; their app passwords are revoked\n", a[0])
					},
				},
			),
		}, &cli.Command{
			Name:  "key",
			Usage: "manage a user's SSH public keys",
			Subcommands: e.mgmtCommands(
				mgmtCmd{
					name: "add", usage: "add the key(s) of an authorized_keys file (- for stdin)", args: "NAME FILE",
					prepare: func(c *cli.Context, a []string) (prepared, error) {
						lines, err := e.readKeys(a[1])
						return prepared{run: func(m admin.Manager) error {
							for _, l := range lines {
								k, err := m.AddKey(c.Context, a[0], l)
								if err != nil {
									return err
								}
								fmt.Fprintf(e.stdout, "added key %s %s\n", k.Fingerprint, k.Comment)
							}
							return nil
						}}, err
					},
				},
				mgmtCmd{
					name: "del", usage: "delete a key by fingerprint (SHA256:...) or comment", args: "NAME FINGERPRINT",
					run: func(c *cli.Context, m admin.Manager, a []string) error {
						if err := m.DelKey(c.Context, a[0], a[1]); err != nil {
							return err
						}
						return e.printf("deleted key %s\n", a[1])
					},
				},
				mgmtCmd{
					name: "list", usage: "list a user's keys", args: "NAME",
					run: func(c *cli.Context, m admin.Manager, a []string) error {
						us, err := m.ListUsers(c.Context)
						if err != nil {
							return err
						}
						for _, u := range us {
							if u.Name == a[0] {
								for _, k := range u.Keys {
									fmt.Fprintf(e.stdout, "%s %s\n", k.Fingerprint, k.Comment)
								}
								return nil
							}
						}
						return fmt.Errorf("user %s: %w", a[0], users.ErrNotFound)
					},
				},
			),
		}),
	}
}

// printf writes a command's result line to stdout.
func (e *env) printf(format string, args ...any) error {
	_, err := fmt.Fprintf(e.stdout, format, args...)
	return err
}

// setUser runs `user set`: only the flags given change.
func (e *env) setUser(c *cli.Context, m admin.Manager, a []string) error {
	set, ok := m.(admin.UserSetter)
	if !ok {
		return errors.New("user set: not supported by this manager")
	}
	var req admin.SetUserRequest
	if c.IsSet("perms") {
		p := c.String("perms")
		req.Perms = &p
	}
	req.ReadOnly = c.Bool("read-only")
	if c.IsSet("quota") {
		q, err := parseSize(c.String("quota"))
		if err != nil {
			return fmt.Errorf("--quota: %w", err)
		}
		req.QuotaBytes = &q
	}
	if c.IsSet("quota-files") {
		n := c.Int64("quota-files")
		req.QuotaFiles = &n
	}
	switch {
	case c.Bool("admin") && c.Bool("no-admin"):
		return errors.New("user set: --admin and --no-admin together")
	case c.Bool("admin"), c.Bool("no-admin"):
		a := c.Bool("admin")
		req.Admin = &a
	}
	if req.Perms == nil && !req.ReadOnly && req.QuotaBytes == nil && req.QuotaFiles == nil && req.Admin == nil {
		return errors.New("user set: nothing to change (--perms, --read-only, --quota, --quota-files, --admin, --no-admin)")
	}
	if err := set.SetUser(c.Context, a[0], req); err != nil {
		return err
	}
	return e.printf("user %s changed\n", a[0])
}

// prepareAddUser reads the new user's keys and password before the manager
// opens.
func (e *env) prepareAddUser(c *cli.Context, a []string) (prepared, error) {
	req := admin.AddUserRequest{Name: a[0], ReadOnly: c.Bool("read-only"), Perms: c.String("perms"), QuotaFiles: c.Int64("quota-files"), ReuseHome: c.Bool("reuse-home"), Admin: c.Bool("admin")}
	if q := c.String("quota"); q != "" {
		var err error
		if req.QuotaBytes, err = parseSize(q); err != nil {
			return prepared{}, err
		}
	}
	for _, kf := range c.StringSlice("key") {
		lines, err := readKeyFile(kf)
		if err != nil {
			return prepared{}, err
		}
		req.Keys = append(req.Keys, lines...)
	}
	if !c.Bool("no-password") {
		var err error
		if req.Password, err = e.readPassword(c); err != nil {
			return prepared{}, err
		}
	} else if len(req.Keys) == 0 {
		return prepared{}, errors.New("a user with --no-password needs at least one --key")
	}
	return prepared{secret: req.Password, run: func(m admin.Manager) error {
		if err := m.AddUser(c.Context, req); err != nil {
			return err
		}
		return e.printf("added user %s\n", req.Name)
	}}, nil
}

// readKeys reads authorized_keys lines from file, or stdin for "-".
func (e *env) readKeys(file string) ([]string, error) {
	if file != "-" {
		return readKeyFile(file)
	}
	b, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20))
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

func (e *env) listUsers(c *cli.Context, m admin.Manager, _ []string) error {
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
			Admin      bool      `json:"admin"`
			TwoFactor  bool      `json:"two_factor"`
			AppPWs     int       `json:"app_passwords"`
			Created    time.Time `json:"created"`
			LastLogin  time.Time `json:"last_login"`
		}
		rows := []row{}
		for _, u := range us {
			r := row{Name: u.Name, Home: u.Home, Perms: u.Perms.String(), Keys: []string{}, QuotaBytes: u.QuotaBytes, QuotaFiles: u.QuotaFiles, Disabled: u.Disabled, Admin: u.Admin, TwoFactor: u.TwoFactor != nil, AppPWs: len(u.AppPasswords), Created: u.Created, LastLogin: u.LastLogin}
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
		if u.Admin {
			status += ",admin"
		}
		if u.TwoFactor != nil {
			status += ",2fa"
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
}

func (e *env) setDisabled(c *cli.Context, m admin.Manager, name string, disabled bool) error {
	if err := m.SetDisabled(c.Context, name, disabled); err != nil {
		return err
	}
	return e.printf("user %s disabled=%v\n", name, disabled)
}

func (e *env) verifyCommand() *cli.Command {
	return e.mgmtCommands(mgmtCmd{
		name:    "verify",
		usage:   "authenticate every file in the store; list damaged ones; exit 1 if any",
		flags:   []cli.Flag{&cli.StringFlag{Name: "user", Usage: "only this user's files"}},
		keyring: true,
		run: func(c *cli.Context, m admin.Manager, _ []string) error {
			res, err := m.Verify(c.Context, c.String("user"), func(d admin.Damage) {
				fmt.Fprintf(e.stdout, "DAMAGED %s: %s\n", d.Path, d.Error)
			})
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if res.Records > 0 {
				fmt.Fprintf(e.stdout, "checked %d files and %d users.db records, %d damaged\n", res.Checked, res.Records, res.Damaged)
			} else {
				fmt.Fprintf(e.stdout, "checked %d files, %d damaged\n", res.Checked, res.Damaged)
			}
			if res.Damaged > 0 {
				return cli.Exit("", 1)
			}
			return nil
		},
	})[0]
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
