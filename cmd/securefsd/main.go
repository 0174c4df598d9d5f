// Command securefsd is an encrypting file server: SFTP/SCP and WebDAV over
// one store in which every file is encrypted and authenticated at rest.
//
// This is the only place that reads the environment and calls os.Exit.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(os.Stdin, os.Stdout, os.Stderr)
	if err := app.RunContext(ctx, interspersed(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "securefsd:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// Flag names are part of the interface: scripts and docs depend on them.
var globalFlags = []cli.Flag{
	&cli.StringFlag{Name: "config", Usage: "YAML config file (keys are the long flag names)", EnvVars: []string{"SECUREFSD_CONFIG"}},
	altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", Value: "./securefsd-data", Usage: "data directory (store, user database, keys)", EnvVars: []string{"SECUREFSD_DATA_DIR"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "key-file", Usage: "keyring file (default: DATA-DIR/keyring, created on first run)", EnvVars: []string{"SECUREFSD_KEY_FILE"}}),
	auditDirFlag,
	altsrc.NewStringFlag(&cli.StringFlag{Name: "passphrase-file", Usage: "file holding the passphrase that seals the keyring", EnvVars: []string{"SECUREFSD_PASSPHRASE_FILE"}}),
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	env := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	return &cli.App{
		Name:                 "securefsd",
		Usage:                "an encrypting SFTP, SCP and WebDAV file server",
		Version:              buildVersion(),
		Flags:                globalFlags,
		Before:               altsrc.InitInputSourceWithContext(globalFlags, altsrc.NewYamlSourceFromFlagFunc("config")),
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideVersion:          true,
		Commands: []*cli.Command{
			env.serveCommand(),
			env.userCommand(),
			env.keyCommand(),
			env.verifyCommand(),
			env.banCommand(),
			env.shareCommand(),
			env.inviteCommand(),
			env.folderCommand(),
			env.groupCommand(),
			env.auditCommand(),
			env.sessionCommand(),
			env.backupCommand(),
			env.restoreCommand(),
			env.anchorCommand(),
			env.migrateCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(stdout, "securefsd", buildVersion())
					return nil
				},
			},
		},
	}
}

// env is the process's outside world, injected so tests can run commands
// in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := strings.TrimSuffix(bi.Main.Version, "(devel)")
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && v == "" {
				v = "devel-" + s.Value[:12]
			}
		}
		if v != "" {
			return v
		}
	}
	return "devel"
}

// dataDir returns the absolute data directory, creating it 0700.
func dataDir(c *cli.Context) (string, error) {
	d, err := filepath.Abs(c.String("data-dir"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return d, nil
}

// newLogger builds the operational log; replace (may be nil) is applied to
// every attribute (--log-names).
func newLogger(w io.Writer, level, format string, replace func([]string, slog.Attr) slog.Attr) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: replace}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
