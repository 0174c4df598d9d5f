package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// The directories of a migration, beside DATA-DIR/store: the version 2
// store being written, then (between the switch and the removal) the
// version 1 store it replaced. Their presence is the migration's state,
// so a run killed at any point is finished by the next one.
const (
	migratingDirName = "store.v2-migrating"
	migratedDirName  = "store.v1-migrated"
)

// migrationUnderWay says why serve must not start: a migration was begun
// and not finished (nil: none).
func migrationUnderWay(dir string) error {
	for _, d := range []string{migratingDirName, migratedDirName} {
		if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
			return fmt.Errorf("a storage migration of %s is not finished (%s exists): run securefsd migrate to finish it", dir, d)
		}
	}
	return clusterMigrationUnderWay(dir)
}

func (e *env) migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "turn the data directory's version 1 store into storage version 2 (docs/STORAGE.md), or move it into a cluster (--to-store, --to-etcd; docs/CLUSTER.md); offline, resumable",
		Description: "Copies every home and shared folder into a new version 2 store beside the old one, verifying each\n" +
			"file, then puts it in the old one's place and removes the old one (which holds every name in the clear).\n" +
			"With --to-store s3://BUCKET[/PREFIX] --s3-endpoint URL --to-etcd URL,...: also moves the (then version 2)\n" +
			"store into a cluster: every blob into the bucket, the index and the users database into etcd, byte for\n" +
			"byte, read back through etcd and the object store, then the data directory becomes the first node's.\n" +
			"The server must be stopped. Killed at any point, it is finished by running it again (with the same flags).",
		Flags: migrateFlags,
		Action: func(c *cli.Context) error {
			dir, kr, db, log, err := e.stopped(c)
			if err != nil {
				return err
			}
			defer db.Close()
			if c.String("to-store") != "" || c.String("to-etcd") != "" {
				return e.migrateToCluster(c, dir, kr, db, log)
			}
			return e.migrate(c.Context, dir, kr, log)
		},
	}
}

// migrate runs (or finishes) the migration of dir's store.
func (e *env) migrate(ctx context.Context, dir string, kr *envelope.Keyring, log *slog.Logger) error {
	if err := clusterMigrationUnderWay(dir); err != nil {
		return err
	}
	if err := checkNotRemote(dir, vfs.Options{}); err != nil {
		return err
	}
	store := filepath.Join(dir, storeDirName)
	migrating := filepath.Join(dir, migratingDirName)
	migrated := filepath.Join(dir, migratedDirName)
	_, err := os.Stat(filepath.Join(store, vfs.IndexFileName))
	switch {
	case err == nil && exists(migrated):
		// Killed after the switch: only the removal is left.
		return e.removeOld(migrated)
	case err == nil:
		return e.printf("the store is already storage version 2\n")
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	src, err := vfs.NewStore(store, vfs.Options{Keyring: kr, Logger: log})
	if err != nil {
		return err
	}
	key, err := loadIndexKey(dir, kr, true)
	if err != nil {
		src.Close()
		return err
	}
	dst, err := vfs.NewStore(migrating, vfs.Options{Keyring: kr, Logger: log, Storage: vfs.StorageV2, IndexKey: key})
	clear(key)
	if err != nil {
		src.Close()
		return err
	}
	start, last := time.Now(), time.Now()
	stop := os.Getenv("SECUREFSD_TEST_MIGRATE_STOP") // the crash tests' kill points
	p, err := vfs.Migrate(ctx, src, dst, func(p vfs.MigrateProgress) {
		if stop == strconv.Itoa(p.Files) {
			os.Exit(3)
		}
		if time.Since(last) > time.Second {
			last = time.Now()
			e.printf("migrating: %d files (%d already done), %d MB\n", p.Files, p.Skipped, p.Bytes>>20)
		}
	})
	if err == nil {
		_, err = dst.Verify(ctx, "", func(string, error) { err = errors.New("a migrated file does not verify") })
	}
	src.Close()
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("migrate (run it again to resume): %w", err)
	}
	// The switch: two renames in one directory, then a sync of it.
	if err := os.Rename(store, migrated); err != nil {
		return err
	}
	if err := os.Rename(migrating, store); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if stop == "switched" {
		os.Exit(3)
	}
	if err := e.printf("migrated %d trees, %d files, %d MB in %s; the store is storage version 2\n", p.Trees, p.Files, p.Bytes>>20, time.Since(start).Round(time.Millisecond)); err != nil {
		return err
	}
	return e.removeOld(migrated)
}

// removeOld removes the version 1 store a migration replaced: every name
// in it is in the clear.
func (e *env) removeOld(old string) error {
	makeRemovable(old)
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove the version 1 store %s (it holds every name in the clear): %w", old, err)
	}
	return e.printf("removed the version 1 store\n")
}

// makeRemovable gives the owner write access to every directory below
// dir (a client's chmod 0555 is kept on disk in version 1).
func makeRemovable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// stopped opens, for a command that needs the server stopped, the data
// directory's keyring and users database, whose lock says no server runs
// meanwhile (the caller closes db).
func (e *env) stopped(c *cli.Context) (dir string, kr *envelope.Keyring, db *users.DB, log *slog.Logger, err error) {
	if dir, err = dataDir(c); err != nil {
		return
	}
	log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if kr, _, err = loadKeyring(c, e, dir, false, log); err != nil {
		return
	}
	db, err = openUsers(dir, kr, users.Options{Logger: log})
	if errors.Is(err, users.ErrLocked) {
		err = fmt.Errorf("the server is running on %s: stop it first", dir)
	}
	return
}
