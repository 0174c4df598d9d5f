package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// rollbackAnchorFlag: serve keeps the users database's revision in this
// file (outside the data directory) and refuses to start on an older
// database; `anchor reset` accepts an intended restore.
var rollbackAnchorFlag = altsrc.NewStringFlag(&cli.StringFlag{Name: "rollback-anchor", Usage: "file outside the data directory (next to the key file) where serve records the users database's revision, refusing to start on an older copy of it", EnvVars: []string{"SECUREFSD_ROLLBACK_ANCHOR"}})

// anchorInterval bounds how stale the anchor is while serving: a copy of
// users.db younger than this passes the check.
const anchorInterval = 5 * time.Second

// checkAnchor is serve's start-up check: a missing anchor is written, an
// older database refuses the start.
func checkAnchor(db *users.DB, path string, log *slog.Logger) error {
	if path == "" {
		return nil
	}
	err := db.CheckAnchor(path)
	if errors.Is(err, users.ErrNoAnchor) {
		log.Info("rollback anchor created", "path", path, "revision", db.Revision())
		return db.WriteAnchor(path)
	}
	if err != nil {
		return fmt.Errorf("--rollback-anchor: %w", err)
	}
	return nil
}

// keepAnchor rewrites the anchor at most every anchorInterval after the
// database changed, and once more when the server stops.
func keepAnchor(g *group, db *users.DB, path string, log *slog.Logger) {
	if path == "" {
		return
	}
	last := db.Revision()
	write := func() {
		if rev := db.Revision(); rev != last {
			if err := db.WriteAnchor(path); err != nil {
				log.Error("rollback anchor not written", "path", path, "err", err)
				return
			}
			last = rev
		}
	}
	g.run(func(ctx context.Context) error {
		t := time.NewTicker(anchorInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				write()
				return nil
			case <-t.C:
				write()
			}
		}
	}, nil)
}

func (e *env) anchorCommand() *cli.Command {
	return &cli.Command{
		Name:  "anchor",
		Usage: "the rollback anchor of serve --rollback-anchor",
		Subcommands: []*cli.Command{{
			Name:  "reset",
			Usage: "record the users database's current revision in --rollback-anchor (after an intended restore); the server must be stopped",
			Flags: []cli.Flag{&cli.StringFlag{Name: "rollback-anchor", Usage: "the anchor file", Required: true}},
			Action: func(c *cli.Context) error {
				dir, err := dataDir(c)
				if err != nil {
					return err
				}
				log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
				kr, _, err := loadKeyring(c, e, dir, false, log)
				if err != nil {
					return err
				}
				db, err := openUsers(dir, kr, users.Options{Logger: log})
				if errors.Is(err, users.ErrLocked) {
					return fmt.Errorf("the server is running on %s: stop it first", dir)
				}
				if err != nil {
					return err
				}
				defer db.Close()
				path, err := filepath.Abs(c.String("rollback-anchor"))
				if err != nil {
					return err
				}
				if err := db.WriteAnchor(path); err != nil {
					return err
				}
				if err := e.printf("rollback anchor %s: revision %d\n", path, db.Revision()); err != nil {
					return err
				}
				// A version 2 store's index has its anchor beside it.
				if _, err := os.Stat(filepath.Join(dir, storeDirName, vfs.IndexFileName)); err != nil {
					return nil
				}
				store, err := openStore(dir, kr, vfs.Options{Keyring: kr, Logger: log})
				if err != nil {
					return err
				}
				defer store.Close()
				if err := store.WriteAnchor(indexAnchorPath(path)); err != nil {
					return err
				}
				return e.printf("index rollback anchor %s: epoch %d\n", indexAnchorPath(path), store.Epoch())
			},
		}},
	}
}

// indexAnchorPath is the anchor of storage v2's index: a second file
// beside --rollback-anchor's, written on the same schedule.
func indexAnchorPath(path string) string { return path + ".index" }

// checkIndexAnchor refuses a version 2 store whose index is older than its
// anchor (the data directory put back from a copy), and writes the anchor
// on a first start. Version 1 stores have no index: nothing to check.
func checkIndexAnchor(store *vfs.Store, path string, log *slog.Logger) error {
	if path == "" || store.StorageVersion() != vfs.StorageV2 {
		return nil
	}
	p := indexAnchorPath(path)
	err := store.CheckAnchor(p)
	if errors.Is(err, vfs.ErrNoAnchor) {
		log.Info("index rollback anchor created", "path", p, "epoch", store.Epoch())
		return store.WriteAnchor(p)
	}
	if err != nil {
		return fmt.Errorf("--rollback-anchor: %w (restored on purpose? securefsd anchor reset)", err)
	}
	return nil
}

// keepIndexAnchor rewrites the index's anchor at most every
// anchorInterval after the namespace changed, and once more at the stop.
func keepIndexAnchor(g *group, store *vfs.Store, path string, log *slog.Logger) {
	if path == "" || store.StorageVersion() != vfs.StorageV2 {
		return
	}
	p := indexAnchorPath(path)
	last := store.Epoch()
	write := func() {
		if e := store.Epoch(); e != last {
			if err := store.WriteAnchor(p); err != nil {
				log.Error("index rollback anchor not written", "path", p, "err", err)
				return
			}
			last = e
		}
	}
	g.run(func(ctx context.Context) error {
		t := time.NewTicker(anchorInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				write()
				return nil
			case <-t.C:
				write()
			}
		}
	}, nil)
}
