package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/cluster"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/namespace"
	"github.com/securefsd/securefsd/internal/s3blob"
)

// A backup of a cluster (`securefsd backup --etcd-endpoints ... --store
// ... DEST`, docs/CLUSTER.md "Backup of a cluster"): etcd's snapshot and
// a copy of every blob it can reference, a consistent pair.
//
// The order is what makes the pair consistent. The backup joins the
// cluster's pin protocol as a node would and pins the index's current
// epoch E before anything else: from then on no collector deletes a blob
// that became garbage at E or later, so every blob the snapshot (taken
// after, so at an epoch of E or later) references stays in the bucket
// until the backup has copied it. The manifest is every blob the index
// references when it is read, after the snapshot, plus the garbage from E
// on: a superset of what the snapshot references, every id of it in the
// bucket while the pin holds. Blobs are write-once, so one already in an
// earlier backup under DEST is hard-linked, not downloaded again.

// clusterBackupFlags are backup's flags for a cluster (the environment
// variables are serve's).
var clusterBackupFlags = []cli.Flag{
	&cli.StringFlag{Name: "etcd-endpoints", Usage: "back up a cluster: its etcd (a snapshot) and, with --store, its bucket (every blob the snapshot can reference), without a node; run it with a node's data directory (its keyring and index.key)", EnvVars: []string{"SECUREFSD_ETCD_ENDPOINTS"}},
	&cli.StringFlag{Name: "store", Usage: "with --etcd-endpoints: the cluster's object store, s3://BUCKET[/PREFIX]", EnvVars: []string{"SECUREFSD_STORE"}},
	&cli.StringFlag{Name: "s3-endpoint", Usage: "with --store: the object store's URL", EnvVars: []string{"SECUREFSD_S3_ENDPOINT"}},
	&cli.StringFlag{Name: "s3-region", Value: "us-east-1", Usage: "with --store: the bucket's region", EnvVars: []string{"SECUREFSD_S3_REGION"}},
	&cli.StringFlag{Name: "etcd-cert", Usage: "with --etcd-endpoints: client certificate (PEM)", EnvVars: []string{"SECUREFSD_ETCD_CERT"}},
	&cli.StringFlag{Name: "etcd-key", Usage: "with --etcd-endpoints: its private key (PEM)", EnvVars: []string{"SECUREFSD_ETCD_KEY"}},
	&cli.StringFlag{Name: "etcd-ca", Usage: "with --etcd-endpoints: CA certificates (PEM)", EnvVars: []string{"SECUREFSD_ETCD_CA"}},
	&cli.StringFlag{Name: "etcd-prefix", Value: "securefsd/", Usage: "with --etcd-endpoints: the cluster's key prefix", EnvVars: []string{"SECUREFSD_ETCD_PREFIX"}},
	&cli.DurationFlag{Name: "etcd-timeout", Value: index.DefaultEtcdTimeout, Usage: "with --etcd-endpoints: how long one request to etcd may take", EnvVars: []string{"SECUREFSD_ETCD_TIMEOUT"}},
}

// The files of a cluster backup, in DEST/<time>/.
const (
	etcdSnapshotName  = "etcd.snapshot"  // etcd's own snapshot (etcdutl snapshot restore)
	blobManifestName  = "blobs.manifest" // the blob ids, hex, one a line, sorted
	clusterBackupInfo = "cluster-backup.json"
	backupBlobsDir    = "blobs" // the objects, named as in the bucket under its prefix
)

// clusterBackupMeta is cluster-backup.json: where the backup came from
// (no secret).
type clusterBackupMeta struct {
	Time       string `json:"time"`
	EtcdPrefix string `json:"etcd_prefix"`
	Store      string `json:"store"`
	PinEpoch   uint64 `json:"pin_epoch"`
	Blobs      int    `json:"blobs"`
	Bytes      int64  `json:"bytes"`
}

func (e *env) clusterBackup(c *cli.Context) error {
	ctx := c.Context
	if c.NArg() != 1 {
		return errors.New("want DEST")
	}
	if c.Bool("include-keyring") {
		return errors.New("--include-keyring: not with --etcd-endpoints (escrow the cluster's keyring on its own)")
	}
	dest, err := filepath.Abs(c.Args().First())
	if err != nil {
		return err
	}
	if c.String("store") == "" {
		return errors.New("--etcd-endpoints needs --store: a snapshot of etcd without the blobs it names restores nothing")
	}
	bucket, s3prefix, err := parseStoreURL(c.String("store"))
	if err != nil {
		return err
	}
	if c.String("s3-endpoint") == "" {
		return errors.New("--store needs --s3-endpoint")
	}
	pfx := c.String("etcd-prefix")
	if pfx == "" {
		return errors.New("--etcd-prefix: must not be empty")
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kr, _, err := loadKeyring(c, e, dir, false, log)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return err
	}
	// The object store's cache is never used (Download bypasses it).
	cache, err := os.MkdirTemp(dest, ".cache-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	bs, err := s3blob.New(s3blob.Config{Endpoint: c.String("s3-endpoint"), Region: c.String("s3-region"), Bucket: bucket, Prefix: s3prefix, CacheDir: cache, CacheSize: 1 << 20})
	if err != nil {
		return err
	}
	defer bs.Close()
	if err := bs.Check(); err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	tlsConf, err := etcdTLS(c)
	if err != nil {
		return err
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.String("etcd-endpoints"), ","), DialTimeout: 5 * time.Second, TLS: tlsConf, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer cl.Close()
	timeout := c.Duration("etcd-timeout")
	key, err := loadIndexKey(dir, kr, false)
	if err != nil {
		return err
	}
	x, err := index.OpenEtcd(index.EtcdConfig{Client: cl, Prefix: pfx + "i/", Timeout: timeout}, key)
	clear(key)
	if err != nil {
		return err
	}
	defer x.Close()

	// The pin first (see the top of this file).
	node, err := cluster.Join(cluster.Config{Client: cl, Prefix: pfx, Timeout: timeout})
	if err != nil {
		return err
	}
	defer node.Close()
	pin, err := x.Epoch()
	if err != nil {
		return err
	}
	if err := node.Publish(pin); err != nil {
		return err
	}

	start := time.Now().UTC()
	name := start.Format("20060102T150405.000Z")
	work := filepath.Join(dest, name+".partial")
	if err := os.MkdirAll(filepath.Join(work, backupBlobsDir), 0o700); err != nil {
		return err
	}
	if err := writeSnapshot(ctx, cl, filepath.Join(work, etcdSnapshotName)); err != nil {
		return err
	}
	e.printf("etcd snapshot written\n")
	ids, err := namespace.New(x, nil).Referenced(pin)
	if err != nil {
		return err
	}
	var man strings.Builder
	for _, id := range ids {
		man.WriteString(id.String() + "\n")
	}
	if err := writeSynced(filepath.Join(work, blobManifestName), []byte(man.String())); err != nil {
		return err
	}
	copied, linked, size, err := e.copyClusterBlobs(dest, work, bs, ids)
	if err != nil {
		return fmt.Errorf("backup: %w (run it again: blobs copied so far are linked, not downloaded again)", err)
	}
	// The pin must have held all along: a node cut off from etcd long
	// enough loses its lease, and with it the pin (Oldest fails then).
	if _, err := node.Oldest(); err != nil {
		return fmt.Errorf("backup: the pin may have lapsed while the blobs were copied, some may be missing: run it again: %w", err)
	}
	for _, f := range []string{indexKeyFileName, usersKeyFileName, keyCheckFileName} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := writeSynced(filepath.Join(work, f), b); err != nil {
			return err
		}
	}
	meta, _ := json.MarshalIndent(clusterBackupMeta{Time: start.Format(time.RFC3339), EtcdPrefix: pfx, Store: c.String("store"), PinEpoch: pin, Blobs: len(ids), Bytes: size}, "", "  ")
	if err := writeSynced(filepath.Join(work, clusterBackupInfo), append(meta, '\n')); err != nil {
		return err
	}
	final := filepath.Join(dest, name)
	if err := os.Rename(work, final); err != nil {
		return err
	}
	if err := syncDir(dest); err != nil {
		return err
	}
	// Stopped runs' partial backups served as link sources; now spent.
	if olds, _ := filepath.Glob(filepath.Join(dest, "*.partial")); len(olds) > 0 {
		for _, o := range olds {
			os.RemoveAll(o)
		}
	}
	return e.printf("backup %s: etcd snapshot and %d blobs, %d bytes (%d downloaded, %d linked from earlier backups); pinned epoch %d; keyring not included\n",
		final, len(ids), size, copied, linked, pin)
}

// writeSnapshot streams etcd's snapshot (of the member the client talks
// to: its whole keyspace at one revision) into path, synced.
func writeSnapshot(ctx context.Context, cl *clientv3.Client, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	rc, err := cl.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("etcd snapshot: %w", err)
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("etcd snapshot: %w", err)
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyClusterBlobs puts every blob of ids into work/blobs/: a hard link
// to the same blob in another backup (or stopped run) under dest when
// there is one, else a download (into a temporary name, synced, then
// renamed, so a blob file is always whole).
func (e *env) copyClusterBlobs(dest, work string, bs *s3blob.Store, ids []blob.ID) (copied, linked int64, size int64, err error) {
	var sources []string
	ents, _ := os.ReadDir(dest)
	for _, en := range ents {
		p := filepath.Join(dest, en.Name(), backupBlobsDir)
		if en.IsDir() && p != filepath.Join(work, backupBlobsDir) {
			if _, err := os.Stat(p); err == nil {
				sources = append(sources, p)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(sources))) // newest first
	out := filepath.Join(work, backupBlobsDir)
	one := func(id blob.ID) (bool, int64, error) {
		dst := filepath.Join(out, id.String())
		if st, err := os.Stat(dst); err == nil {
			return false, st.Size(), nil
		}
		for _, s := range sources {
			src := filepath.Join(s, id.String())
			if st, err := os.Stat(src); err == nil && os.Link(src, dst) == nil {
				return false, st.Size(), nil
			}
		}
		tmp := dst + ".tmp"
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return false, 0, err
		}
		n, err := bs.Download(id, f)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, dst)
		}
		if err != nil {
			os.Remove(tmp)
			return false, 0, err
		}
		return true, n, nil
	}
	var (
		next          atomic.Int64
		nc, nl, bytes atomic.Int64
		mu            sync.Mutex
		firstErr      error
		wg            sync.WaitGroup
	)
	last := time.Now()
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(ids)) {
					return
				}
				dl, n, err := one(ids[i])
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("blob %s: %w", ids[i], err)
				}
				stop := firstErr != nil
				if time.Since(last) > time.Second {
					last = time.Now()
					e.printf("blobs: %d/%d\n", nc.Load()+nl.Load(), len(ids))
				}
				mu.Unlock()
				if stop {
					return
				}
				if dl {
					migrateKillPoint(fmt.Sprintf("backup:%d", nc.Add(1)))
				} else {
					nl.Add(1)
				}
				bytes.Add(n)
			}
		})
	}
	wg.Wait()
	if err := syncDir(out); err != nil && firstErr == nil {
		firstErr = err
	}
	return nc.Load(), nl.Load(), bytes.Load(), firstErr
}
