package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/cluster"
	"github.com/securefsd/securefsd/internal/davd"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/etcdsess"
	"github.com/securefsd/securefsd/internal/index"
	"github.com/securefsd/securefsd/internal/s3blob"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
	"github.com/securefsd/securefsd/internal/webui"
)

// The flags of a node of a cluster (issue 21, docs/CLUSTER.md): content
// blobs in an S3-compatible object store, the namespace index in etcd.
// Either one means storage version 2.
var clusterFlags = []cli.Flag{
	altsrc.NewStringFlag(&cli.StringFlag{Name: "store", Usage: "storage v2: keep file contents (encrypted blobs) in an S3-compatible object store, s3://BUCKET[/PREFIX]; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the shared credentials file (AWS_PROFILE)", EnvVars: []string{"SECUREFSD_STORE"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-endpoint", Usage: "with --store: the object store's URL, http(s)://HOST[:PORT] (path-style addressing)", EnvVars: []string{"SECUREFSD_S3_ENDPOINT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "s3-region", Value: "us-east-1", Usage: "with --store: the bucket's region", EnvVars: []string{"SECUREFSD_S3_REGION"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "cache-dir", Usage: "with --store: local cache of blobs (ciphertext only; default DATA-DIR/cache)", EnvVars: []string{"SECUREFSD_CACHE_DIR"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "stream-memory", Value: "64M", Usage: "with --store: memory for the segments of large uploads on their way to the object store (0: none, through --cache-dir)", EnvVars: []string{"SECUREFSD_STREAM_MEMORY"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "cache-size", Value: "1G", Usage: "with --store: bound of the cache, e.g. 10G (blobs open or being written may exceed it)", EnvVars: []string{"SECUREFSD_CACHE_SIZE"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "etcd-endpoints", Usage: "a cluster node: keep the namespace index, the users database, WebDAV locks and browser sessions in etcd, shared by every node given the same endpoints and prefix (needs --store): URL,URL,...", EnvVars: []string{"SECUREFSD_ETCD_ENDPOINTS"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "etcd-cert", Usage: "with --etcd-endpoints: client certificate (PEM) for etcd's TLS", EnvVars: []string{"SECUREFSD_ETCD_CERT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "etcd-key", Usage: "with --etcd-endpoints: its private key (PEM)", EnvVars: []string{"SECUREFSD_ETCD_KEY"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "etcd-ca", Usage: "with --etcd-endpoints: CA certificates (PEM) that sign etcd's server certificates", EnvVars: []string{"SECUREFSD_ETCD_CA"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "etcd-prefix", Value: "securefsd/", Usage: "with --etcd-endpoints: the cluster's key prefix in etcd (the index under PREFIX/i/, the nodes' pins under PREFIX/n/, users under PREFIX/u/, WebDAV locks under PREFIX/davlocks/, sessions under PREFIX/sessions/)", EnvVars: []string{"SECUREFSD_ETCD_PREFIX"}}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "etcd-timeout", Value: index.DefaultEtcdTimeout, Usage: "with --etcd-endpoints: how long one request to etcd may take; past it the operation fails (without a quorum the node refuses every operation, each after this long)", EnvVars: []string{"SECUREFSD_ETCD_TIMEOUT"}}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "node-name", Usage: "with --etcd-endpoints: this node's name in `session list` (default: the host name)", EnvVars: []string{"SECUREFSD_NODE_NAME"}}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "etcd-max-txn-ops", Value: index.DefaultMaxTxnOps, Usage: "with --etcd-endpoints: etcd's --max-txn-ops (run etcd with 1024 and say so here)", EnvVars: []string{"SECUREFSD_ETCD_MAX_TXN_OPS"}}),
}

// remoteFileName, in a data directory, says that its store is remote
// (--store, --etcd-endpoints): written by the first serve with them, it
// makes the commands that open the store offline refuse (they would see
// an empty local store and write into it). It holds the flags' values,
// no secret.
const remoteFileName = "remote-store"

// checkNotRemote refuses to open dir's store without its object store.
func checkNotRemote(dir string, o vfs.Options) error {
	if o.Blobs != nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, remoteFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("the store of %s is remote (%s): run this command while the node serves (it goes through the admin socket), or serve with the same flags", dir, strings.TrimSpace(string(b)))
}

// markRemote records in dir that its store is remote.
func markRemote(dir, store, endpoints, prefix string) error {
	text := "--store " + store
	if endpoints != "" {
		text += " --etcd-endpoints " + endpoints + " --etcd-prefix " + prefix
	}
	return os.WriteFile(filepath.Join(dir, remoteFileName), []byte(text+"\n"), 0o600)
}

// refreshInterval is how often a cluster node publishes its pin and
// collects the garbage no node reads any more (vfs.Store.Refresh).
const refreshInterval = 5 * time.Second

// etcdKeepAlive is how often the etcd client pings an idle connection
// and how long it waits for the answer before it drops the connection.
const etcdKeepAlive = 10 * time.Second

// remote is what a node opens outside its data directory: the object
// store, etcd and its membership. close closes them, after the Store.
type remote struct {
	blobs *s3blob.Store
	etcd  *clientv3.Client
	index *index.Index
	node  *cluster.Node
	// locks is the cluster's WebDAV lock table (openClusterUsers).
	locks *davd.EtcdLocks
	// sessions holds the cluster's browser sessions and the registry of
	// its nodes' live sessions (openClusterUsers).
	sessions *etcdsess.Store
	// localUsers is the data directory's users.db, held open while the
	// node serves from etcd's: its lock says a server runs here, and it
	// seeded an empty cluster (openClusterUsers). Never read otherwise.
	localUsers *users.DB
}

func (r *remote) clustered() bool { return r != nil && r.node != nil }

// davLocks is the cluster's WebDAV lock table (nil: in memory).
func (r *remote) davLocks() *davd.EtcdLocks {
	if r == nil {
		return nil
	}
	return r.locks
}

// webSessions is where the browser sessions live: nil (this process)
// on one server, the cluster's store on a node.
func (r *remote) webSessions() webui.SharedSessions {
	if r == nil || r.sessions == nil {
		return nil
	}
	return r.sessions
}

// liveSessions is the cluster's session registry (nil: one server).
func (r *remote) liveSessions() *etcdsess.Store {
	if r == nil {
		return nil
	}
	return r.sessions
}

func (r *remote) close() {
	if r == nil {
		return
	}
	if r.sessions != nil {
		r.sessions.Close()
	}
	if r.locks != nil {
		r.locks.Close()
	}
	if r.node != nil {
		r.node.Close()
	}
	if r.index != nil {
		r.index.Close()
	}
	if r.etcd != nil {
		r.etcd.Close()
	}
	if r.blobs != nil {
		r.blobs.Close()
	}
	if r.localUsers != nil {
		r.localUsers.Close()
	}
}

// wantsRemote reports whether serve was given --store or --etcd-endpoints.
func wantsRemote(c *cli.Context) bool {
	return c.String("store") != "" || c.String("etcd-endpoints") != ""
}

// parseStoreURL splits s3://BUCKET[/PREFIX].
func parseStoreURL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("--store %q: want s3://BUCKET[/PREFIX]", s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// openRemote opens the object store (checking the bucket) and, with
// --etcd-endpoints, the index in etcd under the data directory's index
// key and this node's membership. o gets them; on error nothing stays
// open.
func openRemote(c *cli.Context, dir string, kr *envelope.Keyring, log *slog.Logger, o *vfs.Options) (r *remote, err error) {
	r = &remote{}
	defer func() {
		if err != nil {
			r.close()
			r = nil
		}
	}()
	store, endpoints := c.String("store"), c.String("etcd-endpoints")
	if endpoints != "" && store == "" {
		return nil, errors.New("--etcd-endpoints needs --store: nodes sharing one index must share the blobs it names")
	}
	bucket, prefix, err := parseStoreURL(store)
	if err != nil {
		return nil, err
	}
	if c.String("s3-endpoint") == "" {
		return nil, errors.New("--store needs --s3-endpoint")
	}
	size, err := parseSize(c.String("cache-size"))
	if err != nil || size <= 0 {
		return nil, fmt.Errorf("--cache-size %q: a positive size", c.String("cache-size"))
	}
	streamMem, err := parseSize(c.String("stream-memory"))
	if err != nil || streamMem < 0 {
		return nil, fmt.Errorf("--stream-memory %q: a size, 0 for none", c.String("stream-memory"))
	}
	if streamMem == 0 {
		streamMem = -1 // s3blob: none
	}
	cacheDir := c.String("cache-dir")
	if cacheDir == "" {
		cacheDir = filepath.Join(dir, "cache")
	}
	cfg := s3blob.Config{Endpoint: c.String("s3-endpoint"), Region: c.String("s3-region"), Bucket: bucket, Prefix: prefix,
		CacheDir: cacheDir, CacheSize: size, StreamMemory: streamMem}
	if endpoints != "" {
		// Another node's blob is in the bucket a moment before the index
		// transaction that references it: the orphan pass leaves young
		// objects alone.
		cfg.ListMinAge = time.Hour
	}
	if r.blobs, err = s3blob.New(cfg); err != nil {
		return nil, err
	}
	if err := r.blobs.Check(); err != nil {
		return nil, fmt.Errorf("object store: %w", err)
	}
	o.Blobs = r.blobs
	o.Storage = vfs.StorageV2
	if err := markRemote(dir, store, endpoints, c.String("etcd-prefix")); err != nil {
		return nil, err
	}
	if endpoints == "" {
		log.Info("storage v2 with contents in the object store", "bucket", bucket)
		return r, nil
	}
	tlsConf, err := etcdTLS(c)
	if err != nil {
		return nil, err
	}
	if r.etcd, err = clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second, TLS: tlsConf, Logger: zap.NewNop(),
		// A silent cut (no RST) must break the users database's watch,
		// so the node notices it stopped hearing other nodes' changes.
		DialKeepAliveTime: etcdKeepAlive, DialKeepAliveTimeout: etcdKeepAlive}); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	key, err := loadIndexKey(dir, kr, true)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	pfx := c.String("etcd-prefix")
	if pfx == "" {
		return nil, errors.New("--etcd-prefix: must not be empty")
	}
	timeout := c.Duration("etcd-timeout")
	if timeout <= 0 {
		return nil, errors.New("--etcd-timeout: must be positive")
	}
	// A move of a single node into this prefix (migrate --to-etcd) not
	// finished: what is there is not yet a cluster's state.
	gctx, cancel := context.WithTimeout(context.Background(), timeout)
	resp, err := r.etcd.Get(gctx, pfx+migratingKey)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if len(resp.Kvs) != 0 {
		return nil, fmt.Errorf("a move of a data directory into the etcd prefix %q is not finished: run its securefsd migrate --to-store ... --to-etcd ... again to finish it, then start the nodes", pfx)
	}
	r.index, err = index.OpenEtcd(index.EtcdConfig{Client: r.etcd, Prefix: pfx + "i/", MaxTxnOps: c.Int("etcd-max-txn-ops"), Timeout: timeout}, key)
	if errors.Is(err, index.ErrAuth) {
		return nil, fmt.Errorf("the index in etcd (prefix %q) is another index key's: every node needs the first node's %s (and keyring) in its data directory before its first start (docs/CLUSTER.md): %w", pfx, indexKeyFileName, err)
	}
	if err != nil {
		return nil, err
	}
	if r.node, err = cluster.Join(cluster.Config{Client: r.etcd, Prefix: pfx, Timeout: timeout}); err != nil {
		return nil, err
	}
	o.Index, o.Pins = r.index, r.node
	log.Info("cluster node: storage v2 with the index in etcd and contents in the object store", "bucket", bucket, "etcd_prefix", pfx)
	return r, nil
}

// etcdTLS is the client TLS of --etcd-cert/--etcd-key/--etcd-ca (nil:
// plain connections, for endpoints that are http://).
func etcdTLS(c *cli.Context) (*tls.Config, error) {
	cert, key, ca := c.String("etcd-cert"), c.String("etcd-key"), c.String("etcd-ca")
	if cert == "" && key == "" && ca == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if (cert == "") != (key == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-ca %s: no certificate", ca)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// keepRefreshed publishes a cluster node's pin and collects the garbage
// no node reads any more, every refreshInterval until the group ends.
func keepRefreshed(g *group, store *vfs.Store, r *remote, log *slog.Logger) {
	if !r.clustered() {
		return
	}
	g.run(func(ctx context.Context) error {
		t := time.NewTicker(refreshInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if err := store.Refresh(); err != nil {
					log.Warn("cluster: refreshing this node's pin", "err", err)
				}
			}
		}
	}, nil)
}

// openClusterUsers opens the cluster's user database in etcd
// (PREFIX/u/: users, groups, folders, links, invitations, bans) in place
// of local, the data directory's users.db, and the cluster's WebDAV lock
// table (PREFIX/davlocks/) into r.locks. Both are sealed with the
// users.key every node has (docs/CLUSTER.md, "Adding a node").
//
// The rule for the first start: a node that finds PREFIX/u/ holding no
// database copies its users.db into it (users.CopyToEtcd), and says so
// in the log; a new data directory's users.db is empty, so a new cluster
// starts empty and serve makes its first user there. Once the prefix
// holds a database, users.db is never read again: it stays open (its
// lock) as the sign that a server runs in this data directory. Two nodes
// starting at once on an empty prefix: one copy wins, the other node
// opens what it wrote.
//
// On success r owns local; on error the caller closes it.
func openClusterUsers(ctx context.Context, c *cli.Context, dir string, kr *envelope.Keyring, local *users.DB, opts users.Options, r *remote, log *slog.Logger) (*users.DB, error) {
	key, err := loadUsersKey(dir, kr)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	pfx := c.String("etcd-prefix")
	cfg := users.EtcdConfig{Client: r.etcd, Prefix: pfx + "u/", Timeout: c.Duration("etcd-timeout"), MaxTxnOps: c.Int("etcd-max-txn-ops")}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = local.CopyToEtcd(cctx, cfg)
	cancel()
	switch {
	case err == nil:
		n := -1
		if us, err := local.List(ctx); err == nil {
			n = len(us)
		}
		log.Info("cluster: the user database in etcd was empty: copied this node's users.db into it; from now on every node reads etcd's, never its users.db",
			"etcd_prefix", cfg.Prefix, "users", n)
	case errors.Is(err, users.ErrPrefixInUse):
		// The usual start: the cluster has its database.
	default:
		return nil, fmt.Errorf("copying users.db into etcd (prefix %q): %w", cfg.Prefix, err)
	}
	opts.Key = key
	db, err := users.OpenEtcd(cfg, opts)
	if errors.Is(err, users.ErrSealed) {
		return nil, fmt.Errorf("the user database in etcd (prefix %q) is another users key's: every node needs the first node's %s, with its keyring and %s, in its data directory before its first start (docs/CLUSTER.md); this data directory made its own: stop, remove its %s and %s, copy the first node's %s: %w",
			cfg.Prefix, usersKeyFileName, indexKeyFileName, usersKeyFileName, usersDBFileName, usersKeyFileName, err)
	}
	if err != nil {
		return nil, err
	}
	// The users key keys the lock table too (NewEtcdLocks derives its
	// own subkeys from it): every node has it, and nothing else needs
	// distributing.
	locks, err := davd.NewEtcdLocks(davd.EtcdLocksConfig{Client: r.etcd, Prefix: pfx + "davlocks/", Key: key, Timeout: c.Duration("etcd-timeout")})
	if err != nil {
		db.Close()
		return nil, err
	}
	// Browser sessions and the live-session registry: keyed by the
	// users key too (etcdsess derives its own subkeys).
	node := c.String("node-name")
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			node = "?"
		}
	}
	sessions, err := etcdsess.New(etcdsess.Config{Client: r.etcd, Prefix: pfx + "sessions/", Key: key, Node: node, Timeout: c.Duration("etcd-timeout"), Logger: log})
	if err != nil {
		locks.Close()
		db.Close()
		return nil, err
	}
	r.locks, r.localUsers, r.sessions = locks, local, sessions
	log.Info("cluster node: users, groups, folders, links, invitations, bans, WebDAV locks and browser sessions in etcd", "etcd_prefix", pfx, "node", node)
	return db, nil
}
