package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/admin"
	"github.com/securefsd/securefsd/internal/backup"
	"github.com/securefsd/securefsd/internal/envelope"
)

// backupCommand is `securefsd backup DEST`: an online backup through the
// running server (or offline on the data directory), see
// internal/admin/backup.go and docs/OPERATIONS.md.
func (e *env) backupCommand() *cli.Command {
	cmds := e.mgmtCommands(mgmtCmd{
		name: "backup", args: "DEST",
		usage: "copy the data directory's encrypted state, of one moment, into DEST/<time> (resumable, incremental)",
		description: "While the server runs it goes through the server: clients keep working, the store is frozen only\n" +
			"while its files are hard-linked into a snapshot. Stopped (kill -9, full disk), run it again: it resumes.\n" +
			"Unchanged files are hard-linked from the newest complete backup in DEST. The keyring is not included\n" +
			"unless --include-keyring, and then only sealed with the passphrase of --keyring-passphrase-file.",
		flags: []cli.Flag{
			&cli.BoolFlag{Name: "include-keyring", Usage: "also put the keyring into the backup, sealed with --keyring-passphrase-file"},
			&cli.StringFlag{Name: "keyring-passphrase-file", Usage: "file holding the passphrase that seals the keyring in the backup"},
		},
		keyring: true,
		run: with("backup", func(c *cli.Context, m admin.BackupManager, a []string) error {
			dest, err := filepath.Abs(a[0])
			if err != nil {
				return err
			}
			req := admin.BackupRequest{Dest: dest}
			if c.Bool("include-keyring") {
				if c.String("keyring-passphrase-file") == "" {
					return errors.New("--include-keyring needs --keyring-passphrase-file: the keyring never goes into a backup in the clear")
				}
				if req.KeyringPassphrase, err = readPassphraseFile(c.String("keyring-passphrase-file")); err != nil {
					return err
				}
				defer clear(req.KeyringPassphrase)
			}
			pr := newProgress(e.stderr, "copying")
			res, err := m.Backup(c.Context, req, func(p admin.Progress) {
				if p.Stage == "copy" {
					pr.update(p.Done, p.Total, p.Item)
					return
				}
				pr.line("%s %s", p.Stage, p.Item)
			})
			pr.finish()
			if err != nil {
				return err
			}
			return e.printf("backup %s: %d files, %d bytes (%d linked from the previous backup, %d done by a stopped run); store frozen %s; keyring included: %v\n",
				res.Dir, res.Files, res.Bytes, res.Linked, res.Resumed, res.Frozen, res.Keyring)
		}),
	})
	// A cluster (--etcd-endpoints) is backed up from outside its nodes:
	// their admin socket's backup copies local files, which a node has none of.
	cmd := cmds[0]
	cmd.Flags = append(cmd.Flags, clusterBackupFlags...)
	cmd.Description += "\n\nA cluster: --etcd-endpoints URL,... --store s3://BUCKET[/PREFIX] --s3-endpoint URL (with a node's\n" +
		"data directory, for its keyring and index.key; no node needs to stop) writes DEST/<time> with etcd's\n" +
		"snapshot, every blob it can reference and their manifest (docs/CLUSTER.md, Backup of a cluster)."
	node := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if c.String("etcd-endpoints") != "" {
			return e.clusterBackup(c)
		}
		return node(c)
	}
	return cmd
}

// restoreCommand is `securefsd restore SRC --data-dir D`: offline, into a
// new data directory; then `securefsd --data-dir D verify` checks it.
func (e *env) restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a backup (DEST/<time>) into a new data directory (--data-dir), then run verify",
		ArgsUsage: "SRC",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "keyring-passphrase-file", Usage: "the passphrase the backup's keyring was sealed with: the restored keyring is written unsealed to DATA-DIR/keyring (0600)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("want SRC")
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			src := c.Args().First()
			p, err := backup.Restore(src, dir)
			if err != nil {
				return err
			}
			sealed := filepath.Join(dir, admin.SealedKeyringName)
			if _, err := os.Stat(sealed); err == nil {
				if pf := c.String("keyring-passphrase-file"); pf != "" {
					if err := unsealKeyring(sealed, pf, filepath.Join(dir, "keyring")); err != nil {
						return err
					}
					e.printf("keyring restored to %s\n", filepath.Join(dir, "keyring"))
				} else {
					e.printf("the backup holds the keyring sealed (%s): give --keyring-passphrase-file to restore it, or bring the keyring you escrowed\n", sealed)
				}
			}
			return e.printf("restored %d files (%d bytes) into %s; now run: securefsd --data-dir %s verify\n", p.Files, p.Bytes, dir, dir)
		},
	}
}

// unsealKeyring opens the backup's sealed keyring with the passphrase in
// pf and writes it, in the clear (0600), to dst, removing the sealed copy.
func unsealKeyring(sealed, pf, dst string) error {
	pass, err := readPassphraseFile(pf)
	if err != nil {
		return err
	}
	defer clear(pass)
	data, err := os.ReadFile(sealed)
	if err != nil {
		return err
	}
	kr, err := envelope.ParseKeyring(data, pass)
	if err != nil {
		return fmt.Errorf("the backup's keyring: %w", err)
	}
	plain, err := envelope.MarshalKeyring(kr, nil, envelope.Argon2Params{})
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, plain, 0o600); err != nil {
		return err
	}
	return os.Remove(sealed)
}
