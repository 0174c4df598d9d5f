// Package s3blob stores storage version 2's content blobs in an
// S3-compatible object store (docs/CLUSTER.md), as content.Blobs: blob ID
// is the object PREFIX/<hex id> of one bucket. What goes there is the
// envelope's ciphertext, under random ids; the store never sees a name, a
// key or a plaintext byte.
//
// An envelope is written at offsets, which an object cannot be, so a blob
// being written is a local file; Publish uploads it (write-once: a
// conditional PUT never replaces an object) and keeps it. The segments of
// a large sequential upload past its first are written in memory instead
// (CreateStream, bounded by Config.StreamMemory) and not kept. Reads go through
// the same local cache: a blob not there is downloaded whole first. The
// cache holds ciphertext only, is bounded in size (least recently used
// blobs go first, never one open) and never needs invalidating, blobs
// being write-once.
//
// The cache directory is opened with os.Root and every name in it is made
// here from an id, so no caller's input and no object name ever becomes a
// path.
package s3blob

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
)

var _ content.Blobs = (*Store)(nil)

// ErrUnreachable: the object store did not answer (refused, reset, timed
// out, or a gateway error). Callers tell a user "storage unavailable,
// retry" (SFTP failure, HTTP 503) rather than "no such file".
// It wraps blob.ErrUnavailable.
var ErrUnreachable = fmt.Errorf("s3blob: object store unreachable: %w", blob.ErrUnavailable)

// PartSize is the part size of uploads: a blob up to it goes in one PUT,
// a larger one as a multipart upload of parts this size, one after the
// other, each streamed from the local file.
const PartSize = 16 << 20

// Ahead is how many segments of a sequential upload a content.File
// publishes in the background while its writer goes on
// (content.Options.Ahead): enough to keep the server busy while the
// next segment is encrypted, few enough that a fast writer waits for the
// uploads rather than fill the cache directory.
const Ahead = 4

// DefaultCacheSize bounds the cache when Config.CacheSize is zero.
const DefaultCacheSize = 1 << 30

// DefaultTimeout bounds one operation when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// Config says where the blobs are and how to reach them.
type Config struct {
	// Endpoint is the server's URL: http://host:port or https://host.
	Endpoint string
	// Region ("" : us-east-1).
	Region string
	Bucket string
	// Prefix is the folder of the blobs in the bucket ("" : the top).
	Prefix string
	// AccessKey and SecretKey, if set, are the credentials; else they
	// come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and
	// AWS_SESSION_TOKEN), then the shared credentials file
	// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile
	// AWS_PROFILE or default).
	AccessKey, SecretKey string
	// CacheDir holds the blobs being written and the cached ones
	// (created, mode 0700). One Store per directory: New empties its
	// tmp/ of what a crash left.
	CacheDir string
	// CacheSize bounds the cached blobs' bytes (zero: DefaultCacheSize).
	// Blobs open or being written are not counted against it and never
	// evicted, so the cache can exceed it while they are.
	CacheSize int64
	// StreamMemory bounds the memory of the blobs written by CreateStream
	// (the segments of large uploads past their first) across all
	// uploads (zero: DefaultStreamMemory; negative: none, every blob is
	// written in the cache directory).
	StreamMemory int64
	// Timeout bounds one upload, download, delete or listing (zero:
	// DefaultTimeout).
	Timeout time.Duration
	// MaxRetries is the attempts of one request before it fails (zero:
	// minio-go's default of 10, with backoff; 1: no retry).
	MaxRetries int
	// Transport is the HTTP transport (nil: minio-go's default).
	Transport http.RoundTripper
	// ListMinAge: List skips objects written less than this long ago
	// (by the server's clock). In a cluster another node's blob may be
	// published and not yet referenced by the index transaction that
	// follows; the collector must not take it for an orphan.
	ListMinAge time.Duration
}

const (
	cacheDir = "blobs" // cached blobs, named by hex id
	tmpDir   = "tmp"   // blobs being written or downloaded
)

// Store is a blob store in a bucket with a local cache. Safe for
// concurrent use. Besides content.Blobs it offers Delete and List, the
// collector's operations (namespace.BlobStore).
type Store struct {
	client  *minio.Client
	core    minio.Core // the same client, for the conditional uploads
	bucket  string
	prefix  string // "" or ending in "/"
	timeout time.Duration
	minAge  time.Duration
	root    *os.Root

	mu    sync.Mutex
	limit int64
	used  int64                     // bytes of cached blobs
	ents  map[blob.ID]*list.Element // of *entry
	lru   list.List                 // front: most recently used

	streamLimit, streamUsed int64     // memory of blobs written by CreateStream
	blocks                  sync.Pool // of *[]byte, streamBlock long
}

// entry is a cached blob: its size and how many opens hold it (an open
// blob is never evicted).
type entry struct {
	id   blob.ID
	size int64
	refs int
}

// New opens the store: it checks the configuration and makes the cache
// (cleaning what a crash left being written, and counting what is
// cached). It does not contact the server: Check does.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("s3blob: endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("s3blob: no cache directory")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	creds, err := credentialsFor(cfg)
	if err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       u.Scheme == "https",
		Region:       region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   cfg.MaxRetries,
		Transport:    cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3blob: %w", err)
	}
	s := &Store{
		client:  client,
		core:    minio.Core{Client: client},
		bucket:  cfg.Bucket,
		prefix:  prefix,
		timeout: cfg.Timeout,
		minAge:  cfg.ListMinAge,
		limit:   cfg.CacheSize,
		ents:    map[blob.ID]*list.Element{},
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.limit <= 0 {
		s.limit = DefaultCacheSize
	}
	switch s.streamLimit = cfg.StreamMemory; {
	case s.streamLimit == 0:
		s.streamLimit = DefaultStreamMemory
	case s.streamLimit < 0:
		s.streamLimit = 0
	}
	if err := s.openCache(cfg.CacheDir); err != nil {
		return nil, err
	}
	return s, nil
}

// credentialsFor returns the configured key pair, else the first of the
// AWS environment variables and the shared credentials file that has one.
// None is an error: anonymous requests would only fail later, less clearly.
func credentialsFor(cfg Config) (*credentials.Credentials, error) {
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return nil, errors.New("s3blob: access key and secret key go together")
		}
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""), nil
	}
	c := credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}})
	v, err := c.GetWithContext(nil) // reads the variables and the file, no request
	if err != nil || v.AccessKeyID == "" {
		return nil, errors.New("s3blob: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a shared credentials file")
	}
	return c, nil
}

// openCache opens the cache directory, empties tmp/ and indexes blobs/,
// oldest modification first (the least recently used order a restart
// can know).
func (s *Store) openCache(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("s3blob: cache: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("s3blob: cache: %w", err)
	}
	if err := root.RemoveAll(tmpDir); err == nil {
		err = root.Mkdir(tmpDir, 0o700)
	}
	if err == nil {
		err = root.Mkdir(cacheDir, 0o700)
		if errors.Is(err, fs.ErrExist) {
			err = nil
		}
	}
	if err != nil {
		root.Close()
		return fmt.Errorf("s3blob: cache %s: %w", dir, err)
	}
	ents, err := fs.ReadDir(root.FS(), cacheDir)
	if err != nil {
		root.Close()
		return fmt.Errorf("s3blob: cache %s: %w", dir, err)
	}
	type old struct {
		id    blob.ID
		size  int64
		mtime time.Time
	}
	var found []old
	for _, e := range ents {
		id, err := blob.ParseID(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue // not ours: left alone, never served
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		found = append(found, old{id, info.Size(), info.ModTime()})
	}
	// Oldest first, each pushed to the front: the newest ends in front.
	slices.SortFunc(found, func(a, b old) int { return a.mtime.Compare(b.mtime) })
	s.root = root
	for _, o := range found {
		s.ents[o.id] = s.lru.PushFront(&entry{id: o.id, size: o.size})
		s.used += o.size
	}
	s.mu.Lock()
	s.evictLocked()
	s.mu.Unlock()
	return nil
}

// Close closes the cache directory.
func (s *Store) Close() error { return s.root.Close() }

// key is blob id's object name.
func (s *Store) key(id blob.ID) string { return s.prefix + id.String() }

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// Check asks the server whether the bucket exists: ErrUnreachable if the
// server does not answer, an error if the bucket is missing or the
// credentials are refused.
func (s *Store) Check() error {
	ctx, cancel := s.ctx()
	defer cancel()
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.wrap("check bucket "+s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3blob: no bucket %q at the object store", s.bucket)
	}
	return nil
}

// wrap gives err its context and, if the server was not reached,
// ErrUnreachable.
func (s *Store) wrap(op string, err error) error {
	if unreachable(err) {
		return fmt.Errorf("%w: %s (%v)", ErrUnreachable, op, err)
	}
	return fmt.Errorf("s3blob: %s: %w", op, err)
}

// unreachable reports whether err says the server was not reached or could
// not serve (a transport error, a timeout, a gateway error), as opposed to
// an answer (no such key, access denied, precondition failed).
func unreachable(err error) bool {
	if r := minio.ToErrorResponse(err); r.StatusCode != 0 {
		switch r.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var ne net.Error
	var ue *url.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// Pending is a blob being written: a local file the caller writes at any
// offset (an envelope backing), then publishes (uploads) or aborts.
type Pending struct {
	*os.File
	s    *Store
	id   blob.ID
	tmp  string
	done bool
}

// Create starts blob id in the cache directory (a *Pending). Nothing is in
// the bucket until Publish.
func (s *Store) Create(id blob.ID) (content.Pending, error) {
	tmp := path.Join(tmpDir, id.String()+".new")
	f, err := s.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("s3blob: create %s: %w", id, err)
	}
	return &Pending{File: f, s: s, id: id, tmp: tmp}, nil
}

// PublishAhead implements content.Ahead: a publish is an upload, worth
// starting while the writer goes on.
func (s *Store) PublishAhead() int { return Ahead }

// ID is the id the blob will have.
func (p *Pending) ID() blob.ID { return p.id }

// Publish makes the local file durable, uploads it as the object of its
// id (one PUT up to PartSize, multipart above, streamed from the file)
// and keeps it in the cache. The PUT is conditional (If-None-Match: *,
// also on the multipart upload's completion): an object under the id
// already is never replaced, and the server, not a check before the PUT,
// decides, so two writers of one id cannot both succeed (blob.ErrExists).
// On any failure the blob is dropped: the caller writes it again under a
// new id.
func (p *Pending) Publish() error {
	if p.done {
		return fmt.Errorf("s3blob: blob %s: %w", p.id, fs.ErrClosed)
	}
	p.done = true
	s := p.s
	st, err := p.File.Stat()
	if err != nil {
		p.File.Close()
		s.root.Remove(p.tmp)
		return fmt.Errorf("s3blob: publish %s: %w", p.id, err)
	}
	size := st.Size()
	// The local file's fsync is for the cache only (a cached blob must
	// not be torn after a crash); the upload does not wait for it.
	synced := make(chan error, 1)
	go func() { synced <- p.File.Sync() }()
	err = s.put(p.id, p.File, size)
	if serr := <-synced; err == nil && serr != nil {
		err = fmt.Errorf("s3blob: publish %s: %w", p.id, serr)
	}
	if cerr := p.File.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("s3blob: publish %s: %w", p.id, cerr)
	}
	if err != nil {
		s.root.Remove(p.tmp)
		return err
	}
	// Into the cache; a failure here loses only the cached copy.
	if s.root.Rename(p.tmp, path.Join(cacheDir, p.id.String())) != nil {
		s.root.Remove(p.tmp)
		return nil
	}
	s.mu.Lock()
	s.addLocked(p.id, size, 0)
	s.mu.Unlock()
	return nil
}

// Upload puts size bytes of r, a blob written elsewhere (a single node's
// blob directory being moved into a cluster), as the object of id, under
// the same condition as Publish: an object already under id is never
// replaced (blob.ErrExists). Nothing goes into the cache.
func (s *Store) Upload(id blob.ID, r io.ReaderAt, size int64) error {
	return s.put(id, r, size)
}

func (s *Store) put(id blob.ID, r io.ReaderAt, size int64) error {
	ctx, cancel := s.ctx()
	defer cancel()
	// UNSIGNED-PAYLOAD: the body is not hashed into the signature. Over
	// plain HTTP minio-go would otherwise sign it in chunks (SHA-256 of
	// every 64 KiB on both sides, a second pass over the data); what is
	// uploaded is envelope ciphertext whose every chunk is authenticated
	// on read, so a body changed on the way fails there, never serves
	// other bytes (docs/CLUSTER.md).
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	opts.SetMatchETagExcept("*") // If-None-Match: *
	var err error
	if size <= PartSize {
		_, err = s.core.PutObject(ctx, s.bucket, s.key(id), io.NewSectionReader(r, 0, size), size, "", "", opts)
	} else {
		err = s.putMultipart(ctx, s.key(id), r, size, opts)
	}
	if err == nil {
		return nil
	}
	switch r := minio.ToErrorResponse(err); {
	case r.StatusCode == http.StatusPreconditionFailed,
		r.StatusCode == http.StatusConflict && r.Code == "ConditionalRequestConflict":
		return fmt.Errorf("s3blob: publish %s: %w", id, blob.ErrExists)
	}
	return s.wrap("publish "+id.String(), err)
}

// putMultipart uploads r in parts of PartSize, each streamed from r at its
// offset, then completes the upload under the condition in opts.
// minio-go's PutObject drops If-None-Match from the completion (it sends
// only encryption and checksum headers there), which would let a
// multipart upload replace an object: the parts are driven here instead.
func (s *Store) putMultipart(ctx context.Context, key string, r io.ReaderAt, size int64, opts minio.PutObjectOptions) (err error) {
	upload, err := s.core.NewMultipartUpload(ctx, s.bucket, key, minio.PutObjectOptions{ContentType: opts.ContentType})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Best effort, on its own clock: the parts would otherwise
			// hold space until the bucket's lifecycle removes them.
			actx, cancel := context.WithTimeout(context.Background(), time.Minute)
			s.core.AbortMultipartUpload(actx, s.bucket, key, upload)
			cancel()
		}
	}()
	var parts []minio.CompletePart
	for n, off := 1, int64(0); off < size; n, off = n+1, off+PartSize {
		l := min(PartSize, size-off)
		p, err := s.core.PutObjectPart(ctx, s.bucket, key, upload, n, io.NewSectionReader(r, off, l), l, minio.PutObjectPartOptions{DisableContentSha256: opts.DisableContentSha256})
		if err != nil {
			return fmt.Errorf("part %d: %w", n, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
	}
	_, err = s.core.CompleteMultipartUpload(ctx, s.bucket, key, upload, parts, opts)
	return err
}

// Abort drops the blob; after Publish it does nothing.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	p.File.Close()
	p.s.root.Remove(p.tmp)
}

// cachedBlob is a cached blob open for reading; Close lets the cache
// evict it again.
type cachedBlob struct {
	*os.File
	s    *Store
	e    *entry
	size int64
	once sync.Once
}

func (b *cachedBlob) Size() int64 { return b.size }

func (b *cachedBlob) Close() error {
	err := b.File.Close()
	b.once.Do(func() { b.s.unpin(b.e) })
	return err
}

// Open opens blob id for reading: from the cache, else downloaded into it
// first (blob.ErrNotFound if the bucket has no such object,
// ErrUnreachable if the server does not answer).
func (s *Store) Open(id blob.ID) (blob.Blob, error) {
	if b, err := s.openCached(id); b != nil || err != nil {
		return b, err
	}
	e, err := s.download(id)
	if err != nil {
		return nil, err
	}
	f, err := s.root.Open(path.Join(cacheDir, id.String()))
	if err != nil {
		s.unpin(e)
		return nil, fmt.Errorf("s3blob: open %s: %w", id, err)
	}
	return &cachedBlob{File: f, s: s, e: e, size: e.size}, nil
}

func (s *Store) unpin(e *entry) {
	s.mu.Lock()
	e.refs--
	s.evictLocked()
	s.mu.Unlock()
}

// openCached opens id if it is cached (nil, nil if not), holding it
// against eviction until Close.
func (s *Store) openCached(id blob.ID) (blob.Blob, error) {
	s.mu.Lock()
	el, ok := s.ents[id]
	if !ok {
		s.mu.Unlock()
		return nil, nil
	}
	e := el.Value.(*entry)
	e.refs++
	s.lru.MoveToFront(el)
	s.mu.Unlock()
	f, err := s.root.Open(path.Join(cacheDir, id.String()))
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() == e.size {
			return &cachedBlob{File: f, s: s, e: e, size: e.size}, nil
		}
		f.Close()
	}
	// Gone or changed under us (removed by hand): forget it, download
	// again.
	s.mu.Lock()
	e.refs--
	if cur, ok := s.ents[id]; ok && cur == el {
		s.removeLocked(el)
	}
	s.mu.Unlock()
	return nil, nil
}

// download fetches object id into the cache: a temporary file, made
// durable, then renamed into place, so the cache never holds part of a
// blob under its id. It returns the blob's entry held open (the caller
// opens the file, then unpins): a cache smaller than the blob still
// serves it.
func (s *Store) download(id blob.ID) (*entry, error) {
	tmp := path.Join(tmpDir, id.String()+"."+blob.NewID().String()+".get")
	f, err := s.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("s3blob: download %s: %w", id, err)
	}
	size, err := s.get(id, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		// Under the lock: an eviction of the same id (another download
		// of it, closed meanwhile) removes the file between a rename
		// and its entry otherwise, and the caller's open fails.
		err = s.root.Rename(tmp, path.Join(cacheDir, id.String()))
	}
	if err != nil {
		s.root.Remove(tmp)
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, ErrUnreachable) {
			return nil, err
		}
		return nil, fmt.Errorf("s3blob: download %s: %w", id, err)
	}
	return s.addLocked(id, size, 1), nil
}

// Download writes the object of blob id to w as stored (ciphertext),
// bypassing the cache (a backup's copy of the bucket); blob.ErrNotFound if
// there is none.
func (s *Store) Download(id blob.ID, w io.Writer) (int64, error) {
	return s.get(id, w)
}

func (s *Store) get(id blob.ID, w io.Writer) (int64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(id), minio.GetObjectOptions{})
	if err == nil {
		defer obj.Close()
		var st minio.ObjectInfo
		if st, err = obj.Stat(); err == nil {
			var n int64
			n, err = io.Copy(w, obj)
			if err == nil && n != st.Size {
				err = fmt.Errorf("got %d bytes of %d: %w", n, st.Size, io.ErrUnexpectedEOF)
			}
			if err == nil {
				return n, nil
			}
		}
	}
	if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket" {
		return 0, fmt.Errorf("s3blob: blob %s: %w", id, blob.ErrNotFound)
	}
	return 0, s.wrap("download "+id.String(), err)
}

// addLocked records a blob just put in the cache, held refs times, then
// evicts down to the limit.
func (s *Store) addLocked(id blob.ID, size int64, refs int) *entry {
	if el, ok := s.ents[id]; ok {
		// Downloaded twice at once: the rename replaced the file with
		// the same bytes (write-once); keep the one entry.
		e := el.Value.(*entry)
		e.refs += refs
		s.lru.MoveToFront(el)
		s.evictLocked()
		return e
	}
	e := &entry{id: id, size: size, refs: refs}
	s.ents[id] = s.lru.PushFront(e)
	s.used += size
	s.evictLocked()
	return e
}

// evictLocked removes least recently used blobs not open until the cached
// bytes are within the limit.
func (s *Store) evictLocked() {
	for el := s.lru.Back(); el != nil && s.used > s.limit; {
		prev := el.Prev()
		if el.Value.(*entry).refs == 0 {
			s.removeLocked(el)
		}
		el = prev
	}
}

func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	s.lru.Remove(el)
	delete(s.ents, e.id)
	s.used -= e.size
	s.root.Remove(path.Join(cacheDir, e.id.String()))
}

// CacheUsed is the bytes of blobs in the cache.
func (s *Store) CacheUsed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// Cached reports whether blob id is in the cache.
func (s *Store) Cached(id blob.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ents[id]
	return ok
}

// Delete removes blob id from the bucket and the cache; a missing blob is
// no error (deletes are retried by the collector). A cached copy open
// for reading stays readable until closed (the file is unlinked).
func (s *Store) Delete(id blob.ID) error {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(id), minio.RemoveObjectOptions{}); err != nil {
		if r := minio.ToErrorResponse(err); r.Code != "NoSuchKey" {
			return s.wrap("delete "+id.String(), err)
		}
	}
	s.mu.Lock()
	if el, ok := s.ents[id]; ok {
		s.removeLocked(el)
	}
	s.mu.Unlock()
	return nil
}

// List calls fn for every blob in the bucket under the prefix with its
// stored size, in no particular order. Object names that are not blob ids
// (planted, or another program's) are skipped; the first error of fn
// stops the listing.
func (s *Store) List(fn func(id blob.ID, size int64) error) error {
	ctx, cancel := s.ctx()
	defer cancel()
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if obj.Err != nil {
			return s.wrap("list", obj.Err)
		}
		id, err := blob.ParseID(strings.TrimPrefix(obj.Key, s.prefix))
		if err != nil || !strings.HasPrefix(obj.Key, s.prefix) {
			continue
		}
		if s.minAge > 0 && (obj.LastModified.IsZero() || time.Since(obj.LastModified) < s.minAge) {
			continue
		}
		if err := fn(id, obj.Size); err != nil {
			return err
		}
	}
	return nil
}
