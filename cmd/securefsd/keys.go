package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/keyfile"
)

// keyringFileName is the keyring's default place in the data dir.
const keyringFileName = "keyring"

// keyCheckFileName proves at start-up that the keyring opens this data dir.
const keyCheckFileName = "keycheck"

// keySource says where the keyring comes from, from the global flags.
func keySource(c *cli.Context, dir string) (admin.KeyFile, bool, error) {
	kf := admin.KeyFile{Path: c.String("key-file")}
	explicit := kf.Path != ""
	if !explicit {
		kf.Path = filepath.Join(dir, keyringFileName)
	}
	// Absolute, so a running server can tell whether a command's
	// --key-file is its own (sameKeyFile).
	p, err := filepath.Abs(kf.Path)
	if err != nil {
		return kf, explicit, fmt.Errorf("key file: %w", err)
	}
	kf.Path = p
	if p := c.String("passphrase-file"); p != "" {
		pass, err := readPassphraseFile(p)
		if err != nil {
			return kf, explicit, err
		}
		kf.Passphrase = pass
	}
	return kf, explicit, nil
}

func readPassphraseFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return b, nil
}

// loadKeyring opens the keyring. With create, a missing keyring in the
// default place (or a passphrase-sealed one) is generated: the quick start
// needs nothing else. An explicit --key-file must exist (`key generate`
// makes one), so a typo never silently creates a new key.
func loadKeyring(c *cli.Context, e *env, dir string, create bool, log *slog.Logger) (*envelope.Keyring, admin.KeyFile, error) {
	kf, explicit, err := keySource(c, dir)
	if err != nil {
		return nil, kf, err
	}
	_, statErr := os.Stat(kf.Path)
	if errors.Is(statErr, os.ErrNotExist) {
		if !create || explicit {
			return nil, kf, fmt.Errorf("no keyring at %s (create one with `securefsd key generate --key-file %s`, or let `securefsd serve` create the default one)", kf.Path, kf.Path)
		}
		if _, err := os.Stat(filepath.Join(dir, keyCheckFileName)); err == nil {
			return nil, kf, fmt.Errorf("no keyring at %s, but the data dir %s was made with one: give --key-file (refusing to create a new key that cannot read the existing files)", kf.Path, dir)
		}
		kr, err := envelope.NewKeyring()
		if err != nil {
			return nil, kf, err
		}
		if err := kf.Save(kr); err != nil {
			return nil, kf, fmt.Errorf("save keyring: %w", err)
		}
		if kf.Passphrase == nil {
			log.Warn("generated a new key file inside the data directory: anyone who copies the data directory can read the files; in production keep the key elsewhere (--key-file on a secrets mount, or systemd LoadCredential) or seal it with --passphrase-file", "key_file", kf.Path)
		} else {
			log.Info("generated a new passphrase-sealed keyring", "key_file", kf.Path)
		}
		return kr, kf, nil
	}
	kr, err := kf.Load()
	if errors.Is(err, envelope.ErrPassphrase) && kf.Passphrase == nil {
		pass, perr := promptPassphrase(e)
		if perr != nil {
			return nil, kf, fmt.Errorf("the keyring %s is sealed with a passphrase: %w", kf.Path, perr)
		}
		kf.Passphrase = pass
		kr, err = kf.Load()
	}
	switch {
	case errors.Is(err, envelope.ErrPassphrase):
		return nil, kf, fmt.Errorf("wrong passphrase for the keyring %s", kf.Path)
	case errors.Is(err, keyfile.ErrPerm):
		return nil, kf, fmt.Errorf("refusing a key file that others can read: %w (chmod 600 %s)", err, kf.Path)
	case err != nil:
		return nil, kf, fmt.Errorf("load keyring %s: %w", kf.Path, err)
	}
	return kr, kf, nil
}

// promptPassphrase asks on the terminal; without one it fails.
func promptPassphrase(e *env) ([]byte, error) {
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("give --passphrase-file (no terminal to ask on)")
	}
	fmt.Fprint(e.stderr, "Keyring passphrase: ")
	pass, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return nil, err
	}
	if len(pass) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return pass, nil
}

func (e *env) keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "manage the master key (KEK) that wraps every file's data key",
		Subcommands: append(e.mgmtCommands(mgmtCmd{
			name:  "rotate",
			usage: "make a new active KEK and re-wrap every file's data key under it, then retire the old KEK",
			description: "Content is not re-encrypted. Safe while the server runs (it goes through the server),\n" +
				"safe to interrupt: run it again and it resumes.",
			keyring: true,
			run: func(c *cli.Context, m admin.Manager, _ []string) error {
				pr := newProgress(e.stderr, "re-wrapping")
				err := m.RotateKey(c.Context, func(p admin.Progress) {
					if p.Stage == "rewrap" {
						pr.update(p.Done, p.Total, p.Item)
						return
					}
					pr.line("%s %s", p.Stage, p.Item)
				})
				pr.finish()
				if err != nil {
					return fmt.Errorf("key rotate: %w (run it again to resume)", err)
				}
				return e.printf("key rotated: every file is wrapped by the new key; the old key was removed from the keyring\n")
			},
		}),
			&cli.Command{
				Name:  "generate",
				Usage: "write a new keyring to --key-file (or DATA-DIR/keyring), sealed with --passphrase-file if given",
				Action: func(c *cli.Context) error {
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					kf, _, err := keySource(c, dir)
					if err != nil {
						return err
					}
					if _, err := os.Stat(kf.Path); err == nil {
						return fmt.Errorf("%s exists: refusing to overwrite a keyring", kf.Path)
					}
					kr, err := envelope.NewKeyring()
					if err != nil {
						return err
					}
					if err := kf.Save(kr); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "wrote keyring %s (0600)\n", kf.Path)
					return nil
				},
			},
		),
	}
}
