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
	keepWritten(g, "rollback anchor", path, db.Revision, db.WriteAnchor, log)
}

// keepWritten runs write(path) at most every anchorInterval after
// revision changed, and once more when the server stops.
func keepWritten(g *group, what, path string, revision func() uint64, write func(string) error, log *slog.Logger) {
	last := revision()
	keep := func() {
		if rev := revision(); rev != last {
			if err := write(path); err != nil {
				log.Error(what+" not written", "path", path, "err", err)
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
				keep()
				return nil
			case <-t.C:
				keep()
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
				dir, kr, db, log, err := e.stopped(c)
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
	keepWritten(g, "index rollback anchor", indexAnchorPath(path), store.Epoch, store.WriteAnchor, log)
}
