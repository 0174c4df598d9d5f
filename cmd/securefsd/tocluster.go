package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/s3blob"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// Moving a single node's data directory into a cluster (`securefsd migrate
// --to-store s3://... --to-etcd ...`, docs/CLUSTER.md "Moving a single
// node into a cluster"): the blobs go into the bucket, the index and the
// users database into etcd, byte for byte, then the data directory
// becomes a node's.
//
// The state of a move is two things: DATA-DIR/cluster-migration (the
// target, a random id and the stage reached) and, in etcd,
// PREFIX/migrating holding that id: the claim that keeps other stores
// out of the prefix and nodes from starting on it until the move ends.
// Every step can run again: a run killed anywhere is finished by the next.

// clusterMigrationFileName, in a data directory, says a move into a
// cluster is under way (serve and the offline commands refuse it).
const clusterMigrationFileName = "cluster-migration"

// migratingKey, under the etcd prefix, holds the id of the move that
// claimed the prefix; serve refuses a prefix that has it.
const migratingKey = "migrating"

// The stages of a move, in order.
const (
	stageCopying   = "copying"   // blobs, index and users going in
	stageVerifying = "verifying" // copied; read back through the cluster's engines (which change the index: no more byte comparisons)
	stageVerified  = "verified"  // verified; the local store is removed, the directory marked, the claim dropped
)

// clusterMigration is DATA-DIR/cluster-migration (no secret: the id only
// claims the prefix).
type clusterMigration struct {
	ID         string `json:"id"`
	Store      string `json:"store"`
	S3Endpoint string `json:"s3_endpoint"`
	Etcd       string `json:"etcd_endpoints"`
	Prefix     string `json:"etcd_prefix"`
	Stage      string `json:"stage"`
}

// migrateFlags are migrate's flags for a move into a cluster; the ones
// serve has too take the same environment variables.
var migrateFlags = []cli.Flag{
	&cli.StringFlag{Name: "to-store", Usage: "move the data directory into a cluster: its blobs into this object store, s3://BUCKET[/PREFIX] (needs --to-etcd; credentials as for serve --store)"},
	&cli.StringFlag{Name: "to-etcd", Usage: "with --to-store: the cluster's etcd, URL,URL,...: the index and the users database go there"},
	&cli.StringFlag{Name: "s3-endpoint", Usage: "with --to-store: the object store's URL, http(s)://HOST[:PORT]", EnvVars: []string{"SECUREFSD_S3_ENDPOINT"}},
	&cli.StringFlag{Name: "s3-region", Value: "us-east-1", Usage: "with --to-store: the bucket's region", EnvVars: []string{"SECUREFSD_S3_REGION"}},
	&cli.StringFlag{Name: "cache-dir", Usage: "with --to-store: the blob cache the verification downloads into (default DATA-DIR/cache, the node's)", EnvVars: []string{"SECUREFSD_CACHE_DIR"}},
	&cli.StringFlag{Name: "cache-size", Value: "1G", Usage: "with --to-store: bound of that cache", EnvVars: []string{"SECUREFSD_CACHE_SIZE"}},
	&cli.StringFlag{Name: "etcd-cert", Usage: "with --to-etcd: client certificate (PEM)", EnvVars: []string{"SECUREFSD_ETCD_CERT"}},
	&cli.StringFlag{Name: "etcd-key", Usage: "with --to-etcd: its private key (PEM)", EnvVars: []string{"SECUREFSD_ETCD_KEY"}},
	&cli.StringFlag{Name: "etcd-ca", Usage: "with --to-etcd: CA certificates (PEM) of etcd's server certificates", EnvVars: []string{"SECUREFSD_ETCD_CA"}},
	&cli.StringFlag{Name: "etcd-prefix", Value: "securefsd/", Usage: "with --to-etcd: the cluster's key prefix (it must hold nothing)", EnvVars: []string{"SECUREFSD_ETCD_PREFIX"}},
	&cli.DurationFlag{Name: "etcd-timeout", Value: index.DefaultEtcdTimeout, Usage: "with --to-etcd: how long one request to etcd may take", EnvVars: []string{"SECUREFSD_ETCD_TIMEOUT"}},
	&cli.IntFlag{Name: "etcd-max-txn-ops", Value: index.DefaultMaxTxnOps, Usage: "with --to-etcd: etcd's --max-txn-ops", EnvVars: []string{"SECUREFSD_ETCD_MAX_TXN_OPS"}},
}

// clusterMigrationUnderWay says why a command must not touch dir's store
// or users: a move into a cluster was begun and not finished (nil: none).
func clusterMigrationUnderWay(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, clusterMigrationFileName)); err == nil {
		return fmt.Errorf("a move of %s into a cluster is not finished (%s exists): run securefsd migrate --to-store ... --to-etcd ... again with the same flags to finish it", dir, clusterMigrationFileName)
	}
	return nil
}

func readClusterMigration(dir string) (*clusterMigration, error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterMigrationFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m clusterMigration
	if err := json.Unmarshal(b, &m); err != nil || m.ID == "" {
		return nil, fmt.Errorf("%s: damaged (%v)", clusterMigrationFileName, err)
	}
	return &m, nil
}

// write replaces the state file durably (a temporary file renamed over
// it, then the directory synced).
func (m *clusterMigration) write(dir string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, clusterMigrationFileName)
	f, err := os.OpenFile(p+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".tmp", p)
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// migrateKillPoint, in the crash tests, kills the process (SIGKILL, no
// clean-up) when the point named by SECUREFSD_TEST_MIGRATE_STOP is
// reached: "blobs:N" after N uploads, "index", "users", "verifying",
// "verified", "dropped"; in a cluster backup "backup:N" after N downloads.
func migrateKillPoint(point string) {
	if os.Getenv("SECUREFSD_TEST_MIGRATE_STOP") == point {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			p.Kill() // SIGKILL on Unix
		}
		select {} // the signal is on its way
	}
}

// migrateToCluster moves the stopped data directory dir into the cluster
// the flags name (or finishes the move a killed run began). db is its
// users database, open (its lock keeps a server out meanwhile).
func (e *env) migrateToCluster(c *cli.Context, dir string, kr *envelope.Keyring, db *users.DB, log *slog.Logger) error {
	ctx := c.Context
	want := clusterMigration{Store: c.String("to-store"), S3Endpoint: c.String("s3-endpoint"), Etcd: c.String("to-etcd"), Prefix: c.String("etcd-prefix")}
	if want.Store == "" || want.Etcd == "" {
		return errors.New("--to-store and --to-etcd go together: a cluster keeps its blobs in the object store and its index and users in etcd")
	}
	bucket, s3prefix, err := parseStoreURL(want.Store)
	if err != nil {
		return err
	}
	if want.S3Endpoint == "" {
		return errors.New("--to-store needs --s3-endpoint")
	}
	if want.Prefix == "" {
		return errors.New("--etcd-prefix: must not be empty")
	}
	m, err := readClusterMigration(dir)
	if err != nil {
		return err
	}
	if m == nil {
		if b, err := os.ReadFile(filepath.Join(dir, remoteFileName)); err == nil {
			return e.printf("%s is already a cluster node's data directory (%s): nothing to move\n", dir, strings.TrimSpace(string(b)))
		}
		// A version 1 store becomes version 2 first, in this run
		// (resumable on its own: see migrate).
		if _, err := os.Stat(filepath.Join(dir, storeDirName, vfs.IndexFileName)); errors.Is(err, fs.ErrNotExist) {
			if err := e.migrate(ctx, dir, kr, log); err != nil {
				return err
			}
		}
		id := make([]byte, 16)
		rand.Read(id)
		m = &want
		m.ID, m.Stage = hex.EncodeToString(id), stageCopying
		if err := m.write(dir); err != nil {
			return err
		}
	} else if m.Store != want.Store || m.S3Endpoint != want.S3Endpoint || m.Etcd != want.Etcd || m.Prefix != want.Prefix {
		return fmt.Errorf("a move of %s into another cluster is under way (%s, --s3-endpoint %s, --to-etcd %s, --etcd-prefix %s): run it again with those flags", dir, m.Store, m.S3Endpoint, m.Etcd, m.Prefix)
	}

	size, err := parseSize(c.String("cache-size"))
	if err != nil || size <= 0 {
		return fmt.Errorf("--cache-size %q: a positive size", c.String("cache-size"))
	}
	cacheDir := c.String("cache-dir")
	if cacheDir == "" {
		cacheDir = filepath.Join(dir, "cache")
	}
	bs, err := s3blob.New(s3blob.Config{Endpoint: want.S3Endpoint, Region: c.String("s3-region"), Bucket: bucket, Prefix: s3prefix, CacheDir: cacheDir, CacheSize: size})
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
	cl, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(want.Etcd, ","), DialTimeout: 5 * time.Second, TLS: tlsConf, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer cl.Close()
	timeout := c.Duration("etcd-timeout")
	if timeout <= 0 {
		return errors.New("--etcd-timeout: must be positive")
	}
	// Once verified, the claim may already be gone (killed after it was
	// dropped): what is under the prefix is then this move's cluster.
	if m.Stage != stageVerified {
		if err := claimPrefix(ctx, cl, want.Prefix, m.ID, timeout); err != nil {
			return err
		}
	}
	ixCfg := index.EtcdConfig{Client: cl, Prefix: want.Prefix + "i/", MaxTxnOps: c.Int("etcd-max-txn-ops"), Timeout: timeout}
	uCfg := users.EtcdConfig{Client: cl, Prefix: want.Prefix + "u/", Timeout: timeout, MaxTxnOps: c.Int("etcd-max-txn-ops")}
	start := time.Now()

	if m.Stage == stageCopying {
		if err := e.copyBlobs(dir, bs); err != nil {
			return fmt.Errorf("move into the cluster (run it again to resume): %w", err)
		}
		if err := copyIndex(ctx, dir, kr, ixCfg); err != nil {
			return fmt.Errorf("move into the cluster (run it again to resume): %w", err)
		}
		migrateKillPoint("index")
		if err := copyUsers(ctx, db, uCfg); err != nil {
			return fmt.Errorf("move into the cluster (run it again to resume): %w", err)
		}
		migrateKillPoint("users")
		m.Stage = stageVerifying
		if err := m.write(dir); err != nil {
			return err
		}
	}
	if m.Stage == stageVerifying {
		if err := e.verifyCluster(ctx, dir, kr, db, bs, ixCfg, uCfg); err != nil {
			return fmt.Errorf("move into the cluster: verification (run it again to resume): %w", err)
		}
		m.Stage = stageVerified
		if err := m.write(dir); err != nil {
			return err
		}
	}
	// Verified: the data directory becomes a node's. The marker first,
	// so nothing opens the local store any more, then the store (every
	// blob and record of it is in the cluster), then the claim.
	if err := markRemote(dir, want.Store, want.Etcd, want.Prefix); err != nil {
		return err
	}
	store := filepath.Join(dir, storeDirName)
	makeRemovable(store)
	if err := os.RemoveAll(store); err != nil {
		return fmt.Errorf("remove the local store (in the cluster now): %w", err)
	}
	migrateKillPoint("verified")
	cctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = cl.Txn(cctx).If(clientv3.Compare(clientv3.Value(want.Prefix+migratingKey), "=", m.ID)).Then(clientv3.OpDelete(want.Prefix + migratingKey)).Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("etcd: drop the claim on the prefix (run it again): %w", err)
	}
	migrateKillPoint("dropped")
	if err := os.Remove(filepath.Join(dir, clusterMigrationFileName)); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return e.printf("moved into the cluster (this run took %s): this data directory is now a cluster node's (%s)\n"+
		"start it:  securefsd --data-dir %s serve --store %s --s3-endpoint %s --etcd-endpoints %s --etcd-prefix %s\n"+
		"           (with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE for the bucket, and the etcd TLS flags if any)\n"+
		"more nodes: copy keyring, %s and %s (mode 0600) into each new node's data directory, then start it with the same flags (docs/CLUSTER.md)\n",
		time.Since(start).Round(time.Millisecond), remoteFileName, dir, want.Store, want.S3Endpoint, want.Etcd, want.Prefix, indexKeyFileName, usersKeyFileName)
}

// claimPrefix puts PREFIX/migrating = id if the prefix holds no key at
// all, or finds it there already (this move's, resumed). Anything else
// under the prefix is another store's or cluster's: refused.
func claimPrefix(ctx context.Context, cl *clientv3.Client, prefix, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := prefix + migratingKey
	r, err := cl.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(prefix), "=", 0).WithPrefix()).
		Then(clientv3.OpPut(key, id)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("etcd: claim the prefix %q: %w", prefix, err)
	}
	if r.Succeeded {
		return nil
	}
	if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 && string(kvs[0].Value) == id {
		return nil
	}
	return fmt.Errorf("the etcd prefix %q already holds another store's or cluster's keys: nothing was written (pick an empty --etcd-prefix)", prefix)
}

// copyBlobs uploads every local blob the bucket does not have yet (one
// listing tells), four at a time. The bucket's prefix must hold nothing
// but this store's blobs: an object that is none of them is another
// store's, and the move is refused before anything is uploaded.
func (e *env) copyBlobs(dir string, bs *s3blob.Store) error {
	local, err := blob.OpenDir(filepath.Join(dir, storeDirName, "blobs"))
	if err != nil {
		return err
	}
	defer local.Close()
	type item struct {
		id   blob.ID
		size int64
	}
	var all []item
	have := map[blob.ID]int64{}
	if err := local.List(func(id blob.ID, size int64) error {
		all = append(all, item{id, size})
		have[id] = size
		return nil
	}); err != nil {
		return err
	}
	there := map[blob.ID]int64{}
	if err := bs.List(func(id blob.ID, size int64) error {
		there[id] = size
		return nil
	}); err != nil {
		return err
	}
	for id, size := range there {
		want, ok := have[id]
		if !ok {
			return errors.New("the bucket prefix holds objects that are not this store's blobs (another store's?): nothing was uploaded (pick an empty s3://BUCKET/PREFIX)")
		}
		if want != size {
			return fmt.Errorf("blob %s is in the bucket with %d bytes, %d here", id, size, want)
		}
	}
	var todo []item
	var total int64
	for _, it := range all {
		total += it.size
		if _, ok := there[it.id]; !ok {
			todo = append(todo, it)
		}
	}
	e.printf("blobs: %d in the store (%d MB), %d already in the bucket, %d to upload\n", len(all), total>>20, len(all)-len(todo), len(todo))
	var (
		next, done atomic.Int64
		bytes      atomic.Int64
		mu         sync.Mutex
		firstErr   error
		wg         sync.WaitGroup
		stopped    atomic.Bool
	)
	upload := func(it item) error {
		b, err := local.Open(it.id)
		if err != nil {
			return err
		}
		defer b.Close()
		if err := bs.Upload(it.id, b, b.Size()); err != nil && !errors.Is(err, blob.ErrExists) {
			return err
		}
		return nil
	}
	began, last := time.Now(), time.Now()
	for range 4 {
		wg.Go(func() {
			for !stopped.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(todo)) {
					return
				}
				if err := upload(todo[i]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					stopped.Store(true)
					return
				}
				n := done.Add(1)
				bytes.Add(todo[i].size)
				migrateKillPoint("blobs:" + strconv.FormatInt(n, 10))
				mu.Lock()
				if time.Since(last) > time.Second {
					last = time.Now()
					e.printf("uploading: %d/%d blobs, %d MB\n", n, len(todo), bytes.Load()>>20)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return e.printf("blobs: %d uploaded (%d MB) in %s\n", done.Load(), bytes.Load()>>20, time.Since(began).Round(time.Millisecond))
}

// copyIndex copies the local index into etcd byte for byte
// (index.CopyToEtcd). A prefix that already holds an index must hold
// this one, unchanged: a copy this move finished before it was killed.
func copyIndex(ctx context.Context, dir string, kr *envelope.Keyring, cfg index.EtcdConfig) error {
	key, err := loadIndexKey(dir, kr, false)
	if err != nil {
		return err
	}
	defer clear(key)
	src, err := index.Open(filepath.Join(dir, storeDirName, vfs.IndexFileName), key)
	if err != nil {
		return err
	}
	defer src.Close()
	err = src.CopyToEtcd(ctx, cfg)
	if !errors.Is(err, index.ErrPrefixInUse) {
		return err
	}
	dst, err := index.OpenEtcd(cfg, key)
	if err != nil {
		return fmt.Errorf("the etcd prefix %q holds another index: %w", cfg.Prefix, err)
	}
	defer dst.Close()
	a, _, err := src.Digest()
	if err != nil {
		return err
	}
	b, _, err := dst.Digest()
	if err != nil {
		return err
	}
	if a != b {
		return fmt.Errorf("the etcd prefix %q holds an index that is not this store's as it is now", cfg.Prefix)
	}
	return nil
}

// copyUsers copies users.db into etcd byte for byte (users.CopyToEtcd),
// after removing what a copy cut short left. A prefix that already holds
// a database must hold this one, unchanged.
func copyUsers(ctx context.Context, db *users.DB, cfg users.EtcdConfig) error {
	schema := cfg.Prefix + "meta/schema"
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := cfg.Client.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(schema), "=", 0)).
		Then(clientv3.OpDelete(cfg.Prefix, clientv3.WithPrefix())).Commit(); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	err := db.CopyToEtcd(cctx, cfg)
	if !errors.Is(err, users.ErrPrefixInUse) {
		return err
	}
	same, err := db.MatchesEtcd(cctx, cfg)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("the etcd prefix %q holds a user database that is not this users.db as it is now", cfg.Prefix)
	}
	return nil
}

// verifyCluster reads back what the move wrote through the engines a
// node serves from: the users database in etcd opens with the users key
// and verifies, with as many users as users.db; the index in etcd
// verifies (every record opens, the root hash holds), and every file of
// every tree, read through it and the object store (downloads into the
// cache), authenticates.
func (e *env) verifyCluster(ctx context.Context, dir string, kr *envelope.Keyring, db *users.DB, bs *s3blob.Store, ixCfg index.EtcdConfig, uCfg users.EtcdConfig) error {
	began := time.Now()
	ukey, err := loadUsersKey(dir, kr)
	if err != nil {
		return err
	}
	// No logger for what reads back the store and the users: their
	// messages may name a file or a user; failures are counted instead.
	udb, err := users.OpenEtcd(uCfg, users.Options{Key: ukey})
	clear(ukey)
	if err != nil {
		return err
	}
	bad := 0
	nrec, err := udb.Verify(func(string, error) { bad++ })
	var remote, local []users.User
	if err == nil {
		remote, err = udb.List(ctx)
	}
	udb.Close()
	if err == nil {
		local, err = db.List(ctx)
	}
	if err != nil {
		return err
	}
	if bad > 0 || len(remote) != len(local) {
		return fmt.Errorf("the users database in etcd: %d records do not verify, %d users against %d in users.db", bad, len(remote), len(local))
	}
	migrateKillPoint("verifying")
	key, err := loadIndexKey(dir, kr, false)
	if err != nil {
		return err
	}
	x, err := index.OpenEtcd(ixCfg, key)
	clear(key)
	if err != nil {
		return err
	}
	defer x.Close()
	records, err := x.Verify()
	if err != nil {
		return err
	}
	// An empty store directory of its own: the local one still holds
	// the index file, which a store given an index refuses.
	tmp, err := os.MkdirTemp(dir, "verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	st, err := vfs.NewStore(tmp, vfs.Options{Keyring: kr, Index: x, Blobs: bs})
	if err != nil {
		return err
	}
	failed := 0
	files, err := st.Verify(ctx, "", func(string, error) { failed++ })
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d files read back through etcd and the object store do not verify (securefsd verify on a node names them)", failed)
	}
	return e.printf("verified through etcd and the object store: %d index records, %d files, %d users (%d records) in %s\n", records, files, len(remote), nrec, time.Since(began).Round(time.Millisecond))
}
