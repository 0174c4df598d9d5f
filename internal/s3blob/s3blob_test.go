package s3blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/content"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/s3blob"
	"github.com/securefsd/securefsd/internal/testutil"
)

const (
	bucket = "blobs"
	prefix = "securefsd/v2"
)

// config is a store over srv's bucket with its own empty cache. One try
// per request: a stopped server fails at once rather than after minio-go's
// backoff.
func config(t testing.TB, srv *testutil.S3Server, cacheSize int64) s3blob.Config {
	return s3blob.Config{
		Endpoint:   srv.Endpoint,
		Region:     srv.Region,
		Bucket:     bucket,
		Prefix:     prefix,
		AccessKey:  srv.AccessKey,
		SecretKey:  srv.SecretKey,
		CacheDir:   filepath.Join(t.TempDir(), "cache"),
		CacheSize:  cacheSize,
		MaxRetries: 1,
	}
}

func open(t testing.TB, cfg s3blob.Config) *s3blob.Store {
	t.Helper()
	s, err := s3blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t testing.TB, srv *testutil.S3Server, cacheSize int64) *s3blob.Store {
	t.Helper()
	return open(t, config(t, srv, cacheSize))
}

func randBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// put publishes p as a new blob.
func put(t testing.TB, s *s3blob.Store, p []byte) blob.ID {
	t.Helper()
	id := blob.NewID()
	if err := putID(s, id, p); err != nil {
		t.Fatal(err)
	}
	return id
}

func putID(s *s3blob.Store, id blob.ID, p []byte) error {
	pend, err := s.Create(id)
	if err != nil {
		return err
	}
	if _, err := pend.WriteAt(p, 0); err != nil {
		pend.Abort()
		return err
	}
	return pend.Publish()
}

func get(t testing.TB, s *s3blob.Store, id blob.ID) []byte {
	t.Helper()
	b, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := make([]byte, b.Size())
	if _, err := b.ReadAt(p, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return p
}

func list(t testing.TB, s *s3blob.Store) map[blob.ID]int64 {
	t.Helper()
	m := map[blob.ID]int64{}
	if err := s.List(func(id blob.ID, size int64) error { m[id] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

type fileEnv struct {
	o     content.Options
	inode [content.InodeIDSize]byte
}

func newFileEnv(t testing.TB) *fileEnv {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	// 2 chunks, 128 KiB segments: a file of several segments stays small.
	return &fileEnv{o: content.Options{Keyring: kr, SegmentChunks: 2, Pad: true}, inode: [content.InodeIDSize]byte{7}}
}

// write writes p at off into the file of layout l at generation gen and
// commits; the replaced blobs are deleted (as the collector would).
func (e *fileEnv) write(t testing.TB, s *s3blob.Store, l content.Layout, gen uint64, p []byte, off int64) (content.Layout, error) {
	t.Helper()
	f, err := content.Open(s, e.inode, l, gen, e.o)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		return content.Layout{}, err
	}
	nl, garbage, err := f.Commit()
	if err != nil {
		return content.Layout{}, err
	}
	for _, id := range garbage {
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	return nl, nil
}

func (e *fileEnv) read(s *s3blob.Store, l content.Layout, gen uint64) ([]byte, error) {
	f, err := content.Open(s, e.inode, l, gen, e.o)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := make([]byte, f.Size())
	if _, err := f.ReadAt(p, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return p, nil
}

// TestRoundTripThroughContent writes a file of several segments through
// content.File into the bucket, then reads it through stores whose caches
// are empty (another node): every byte comes back from the object store;
// an overwrite across a segment boundary replaces only the segments it
// touches; the bucket then holds exactly the layout's blobs.
func TestRoundTripThroughContent(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	e := newFileEnv(t)
	rng := rand.New(rand.NewPCG(1, 2))
	ss := int64(2 * envelope.DefaultChunkSize)
	model := randBytes(rng, int(5*ss+12345))

	w := newStore(t, srv, 0)
	l, err := e.write(t, w, content.Layout{}, 1, model, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Segs) != 6 {
		t.Fatalf("%d segments, want 6", len(l.Segs))
	}
	got, err := e.read(newStore(t, srv, 0), l, 2)
	if err != nil || !bytes.Equal(got, model) {
		t.Fatalf("read back through an empty cache: %v, equal %v", err, bytes.Equal(got, model))
	}

	// Overwrite across the boundary of segments 2 and 3 from a second node.
	patch := randBytes(rng, 1000)
	off := 3*ss - 500
	l2, err := e.write(t, newStore(t, srv, 0), l, 2, patch, off)
	if err != nil {
		t.Fatal(err)
	}
	copy(model[off:], patch)
	for i := range l.Segs {
		if changed := l2.Segs[i].Blob != l.Segs[i].Blob; changed != (i == 2 || i == 3) {
			t.Errorf("segment %d: changed %v", i, changed)
		}
	}
	got, err = e.read(newStore(t, srv, 0), l2, 3)
	if err != nil || !bytes.Equal(got, model) {
		t.Fatalf("read after overwrite: %v, equal %v", err, bytes.Equal(got, model))
	}
	objs := list(t, w)
	var want, have []string
	for _, r := range l2.Segs {
		want = append(want, r.Blob.String())
	}
	for id := range objs {
		have = append(have, id.String())
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(want, have) {
		t.Fatalf("bucket holds %v, layout %v", have, want)
	}
	// The objects are where the configuration says, and hold ciphertext.
	for _, r := range l2.Segs {
		b, err := os.ReadFile(srv.ObjectPath(bucket, prefix+"/"+r.Blob.String()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, patch[:64]) || bytes.Contains(b, model[:64]) {
			t.Fatal("plaintext in the bucket")
		}
	}
}

// TestMultipart publishes a blob larger than a part: it goes up as a
// multipart upload (streamed from the local file) and comes back whole;
// write-once holds for it too (the condition is on the completion).
func TestMultipart(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	s := newStore(t, srv, 0)
	id := blob.NewID()
	pend, err := s.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	h := sha256.New()
	const piece = 1 << 20
	size := int64(s3blob.PartSize + 3*piece + 77)
	for off := int64(0); off < size; off += piece {
		p := randBytes(rng, int(min(piece, size-off)))
		h.Write(p)
		if _, err := pend.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := pend.Publish(); err != nil {
		t.Fatal(err)
	}
	sum := h.Sum(nil)
	r := newStore(t, srv, 0)
	b, err := r.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	if _, err := io.Copy(h, io.NewSectionReader(b, 0, b.Size())); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if b.Size() != size || !bytes.Equal(h.Sum(nil), sum) {
		t.Fatalf("downloaded %d bytes, want %d; same content: %v", b.Size(), size, bytes.Equal(h.Sum(nil), sum))
	}
	err = putID(newStore(t, srv, 0), id, make([]byte, s3blob.PartSize+1))
	if !errors.Is(err, blob.ErrExists) {
		t.Fatalf("multipart publish over an existing id: %v, want ErrExists", err)
	}
	if st, err := os.Stat(srv.ObjectPath(bucket, prefix+"/"+id.String())); err != nil || st.Size() != size {
		t.Fatalf("object after the refused publish: %v %v", st, err)
	}
}

// TestWriteOnce: publishing under an id the bucket has fails with
// blob.ErrExists, from another node too (the server decides, not a cache),
// and the object keeps its content.
func TestWriteOnce(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	a, b := newStore(t, srv, 0), newStore(t, srv, 0)
	first := []byte("first version of the blob")
	id := put(t, a, first)
	for _, s := range []*s3blob.Store{a, b} {
		if err := putID(s, id, []byte("second")); !errors.Is(err, blob.ErrExists) {
			t.Fatalf("publish over an existing id: %v, want ErrExists", err)
		}
	}
	if got := get(t, newStore(t, srv, 0), id); !bytes.Equal(got, first) {
		t.Fatalf("object now %q", got)
	}
	// The refused blobs left nothing in the caches' temporary space.
	if n := list(t, a); len(n) != 1 {
		t.Fatalf("bucket has %d blobs", len(n))
	}
}

// TestUpload: a blob written elsewhere is uploaded as it is (read back
// byte for byte through an empty cache), and not over an existing object.
func TestUpload(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	s := newStore(t, srv, 0)
	p := randBytes(rand.New(rand.NewPCG(7, 7)), 3<<20)
	id := blob.NewID()
	if err := s.Upload(id, bytes.NewReader(p), int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if s.Cached(id) {
		t.Error("an uploaded blob went into the cache")
	}
	if got := get(t, newStore(t, srv, 0), id); !bytes.Equal(got, p) {
		t.Fatal("the uploaded blob reads back different")
	}
	if err := s.Upload(id, bytes.NewReader(p[:10]), 10); !errors.Is(err, blob.ErrExists) {
		t.Fatalf("upload over an existing object: %v, want ErrExists", err)
	}
}

// TestCacheEviction: with a cache of three blobs, publishing more evicts
// the least recently used (not the one just read); evicted blobs download
// again on Open; a blob held open is never evicted, and goes once closed.
func TestCacheEviction(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	const n = 100 << 10
	s := newStore(t, srv, 3*n)
	rng := rand.New(rand.NewPCG(5, 6))
	var ids []blob.ID
	var data [][]byte
	for i := range 3 {
		data = append(data, randBytes(rng, n))
		ids = append(ids, put(t, s, data[i]))
	}
	get(t, s, ids[0]) // ids[1] is now the least recently used
	data = append(data, randBytes(rng, n))
	ids = append(ids, put(t, s, data[3]))
	if s.Cached(ids[1]) || !s.Cached(ids[0]) || !s.Cached(ids[2]) || !s.Cached(ids[3]) {
		t.Fatalf("cached: %v %v %v %v", s.Cached(ids[0]), s.Cached(ids[1]), s.Cached(ids[2]), s.Cached(ids[3]))
	}
	if s.CacheUsed() > 3*n {
		t.Fatalf("cache holds %d bytes, limit %d", s.CacheUsed(), 3*n)
	}
	// Read back everything: evicted ones come from the bucket.
	for i, id := range ids {
		if got := get(t, s, id); !bytes.Equal(got, data[i]) {
			t.Fatalf("blob %d differs", i)
		}
		if !s.Cached(id) {
			t.Fatalf("blob %d not cached after its read", i)
		}
	}

	// Held open, ids[0] survives any number of newer blobs.
	held, err := s.Open(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		put(t, s, randBytes(rng, n))
	}
	if !s.Cached(ids[0]) {
		t.Fatal("an open blob was evicted")
	}
	p := make([]byte, n)
	if _, err := held.ReadAt(p, 0); err != nil || !bytes.Equal(p, data[0]) {
		t.Fatalf("open blob read: %v", err)
	}
	held.Close()
	put(t, s, randBytes(rng, n))
	if s.Cached(ids[0]) {
		t.Fatal("closed least recently used blob not evicted")
	}
	if s.CacheUsed() > 3*n {
		t.Fatalf("cache holds %d bytes, limit %d", s.CacheUsed(), 3*n)
	}
	// A cache smaller than a blob still serves it, holding it while open
	// only.
	tiny := newStore(t, srv, 1)
	if got := get(t, tiny, ids[2]); !bytes.Equal(got, data[2]) || tiny.CacheUsed() != 0 {
		t.Fatalf("read through a 1-byte cache: equal %v, cache holds %d", bytes.Equal(got, data[2]), tiny.CacheUsed())
	}
	// A cache reopened (a restart) knows what it holds and its bound.
	cfg := config(t, srv, 3*n)
	s1 := open(t, cfg)
	put(t, s1, data[0])
	put(t, s1, data[1])
	s1.Close()
	cfg.CacheSize = n
	s2 := open(t, cfg)
	if s2.CacheUsed() != n {
		t.Fatalf("reopened cache holds %d bytes, limit %d", s2.CacheUsed(), n)
	}
}

// TestServerDown stops the S3 server: writing and reading what is not
// cached fail with ErrUnreachable and say so; cached blobs still read,
// through content too. Started again, everything works and nothing
// published is lost.
func TestServerDown(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	e := newFileEnv(t)
	rng := rand.New(rand.NewPCG(7, 8))
	model := randBytes(rng, 3*2*envelope.DefaultChunkSize+99)
	cfg := config(t, srv, 0)
	s := open(t, cfg)
	l, err := e.write(t, s, content.Layout{}, 1, model, 0)
	if err != nil {
		t.Fatal(err)
	}
	other := []byte("published by another node, not in this cache")
	remote := put(t, newStore(t, srv, 0), other)
	// Read once: the segments past the first went up from memory
	// (CreateStream) and are cached only once read.
	if got, err := e.read(s, l, 2); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("read with the server up: %v", err)
	}

	srv.Stop()
	isDown := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, s3blob.ErrUnreachable) || !strings.Contains(err.Error(), "object store unreachable") {
			t.Fatalf("%s with the server down: %v, want ErrUnreachable", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
	err = putID(s, blob.NewID(), []byte("x"))
	isDown("publish", err)
	_, err = s.Open(remote)
	isDown("open of an uncached blob", err)
	isDown("list", s.List(func(blob.ID, int64) error { return nil }))
	isDown("delete", s.Delete(remote))
	isDown("check", s.Check())
	_, err = e.write(t, s, l, 2, []byte("change"), 10)
	isDown("content commit", err)
	// A long upload fails while it is written, once a segment it
	// published ahead failed, not only at its commit; closed, it leaves
	// nothing being written in the cache.
	f, err := content.Open(s, e.inode, content.Layout{}, 1, e.o)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 32<<10)
	for off := int64(0); err == nil; off += int64(len(chunk)) {
		if off > 1<<30 {
			t.Fatal("1 GiB written with the server down and no error")
		}
		_, err = f.WriteAt(chunk, off)
	}
	isDown("write of a long upload", err)
	f.Close()
	if ents, err := os.ReadDir(filepath.Join(cfg.CacheDir, "tmp")); err != nil || len(ents) != 0 {
		t.Errorf("the cache holds %d files being written after the upload closed (%v)", len(ents), err)
	}
	// The cached file reads, through content, from this store and from a
	// restart of it over the same cache (the node restarted).
	if got, err := e.read(s, l, 2); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("cached read with the server down: %v", err)
	}
	s.Close()
	s = open(t, cfg)
	if got, err := e.read(s, l, 2); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("cached read with the server down, after a restart of the store: %v", err)
	}

	srv.Start()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, remote); !bytes.Equal(got, other) {
		t.Fatalf("remote blob after restart: %q", got)
	}
	l2, err := e.write(t, s, l, 2, []byte("change"), 10)
	if err != nil {
		t.Fatal(err)
	}
	copy(model[10:], "change")
	if got, err := e.read(newStore(t, srv, 0), l2, 3); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("read after restart through an empty cache: %v", err)
	}
}

// TestTamperedObject changes one byte of a segment's object in the
// server's directory: reading the file through content (an empty cache)
// fails authentication; it never returns other bytes.
func TestTamperedObject(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	e := newFileEnv(t)
	rng := rand.New(rand.NewPCG(9, 10))
	model := randBytes(rng, 3*2*envelope.DefaultChunkSize)
	l, err := e.write(t, newStore(t, srv, 0), content.Layout{}, 1, model, 0)
	if err != nil {
		t.Fatal(err)
	}
	obj := srv.ObjectPath(bucket, prefix+"/"+l.Segs[1].Blob.String())
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(obj, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := e.read(newStore(t, srv, 0), l, 2)
	if !errors.Is(err, envelope.ErrAuth) {
		t.Fatalf("read of a tampered object: %v (%d bytes), want ErrAuth", err, len(got))
	}
	// Segment 0, untouched, still reads.
	f, err := content.Open(newStore(t, srv, 0), e.inode, l, 2, e.o)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 1000)
	if _, err := f.ReadAt(p, 0); err != nil || !bytes.Equal(p, model[:1000]) {
		t.Fatalf("untouched segment: %v", err)
	}
}

// TestList: List gives the blobs under the prefix and nothing else: not
// objects whose names are not blob ids, not blobs in a subfolder or under
// another prefix. Delete removes a blob from bucket and cache; deleting a
// missing blob is no error.
func TestList(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	s := newStore(t, srv, 0)
	a, b := put(t, s, []byte("a")), put(t, s, []byte("bb"))
	planted := map[string]string{
		prefix + "/not-a-blob":                                "x",
		prefix + "/" + strings.ToUpper(blob.NewID().String()): "x",
		prefix + "/sub/" + blob.NewID().String():              "x",
		prefix + "/" + blob.NewID().String() + ".tmp":         "x",
		"other/" + blob.NewID().String():                      "x",
		blob.NewID().String():                                 "x",
	}
	for k, v := range planted {
		p := srv.ObjectPath(bucket, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := list(t, s)
	if len(got) != 2 || got[a] != 1 || got[b] != 2 {
		t.Fatalf("list: %v", got)
	}
	if err := s.Delete(a); err != nil {
		t.Fatal(err)
	}
	if s.Cached(a) {
		t.Fatal("deleted blob still cached")
	}
	if _, err := s.Open(a); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("open of a deleted blob: %v, want ErrNotFound", err)
	}
	if err := s.Delete(a); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if got := list(t, s); len(got) != 1 || got[b] != 2 {
		t.Fatalf("list after delete: %v", got)
	}
}

// TestCredentials: without keys in the configuration they come from the
// AWS environment variables, else the shared credentials file; with none
// New fails (no anonymous requests); wrong ones are refused by the server
// (not reported as unreachable).
func TestCredentials(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(v, "")
	}
	cfg := config(t, srv, 0)
	cfg.AccessKey, cfg.SecretKey = "", ""
	if _, err := s3blob.New(cfg); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("no credentials: %v", err)
	}

	file := filepath.Join(home, "credentials")
	ini := "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n[node]\naws_access_key_id = " +
		srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "node")
	s := open(t, cfg)
	id := put(t, s, []byte("by the shared file"))

	t.Setenv("AWS_PROFILE", "")
	wrong := open(t, cfg)
	if err := wrong.Check(); err == nil || errors.Is(err, s3blob.ErrUnreachable) {
		t.Fatalf("wrong credentials: %v", err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	env := open(t, cfg)
	if got := get(t, env, id); string(got) != "by the shared file" {
		t.Fatalf("read with the environment's credentials: %q", got)
	}
}

// BenchmarkPutGet publishes and downloads 4 MiB blobs (a full segment's
// ciphertext) against a local gateway: put is write to the cache file,
// fsync and PUT; get is download into the cache (fsync, rename), open and
// read (the cache is one byte: every get downloads). put-plain is the
// reference: a plain PUT of the same bytes from memory by minio-go.
func BenchmarkPutGet(b *testing.B) {
	srv := testutil.StartS3(b, bucket)
	data := randBytes(rand.New(rand.NewPCG(11, 12)), 4<<20)
	s := newStore(b, srv, 1)
	var ids []blob.ID
	b.Run("put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			ids = append(ids, put(b, s, data))
		}
	})
	client, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), Region: srv.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("put-plain", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			_, err := client.PutObject(context.Background(), bucket, "plain/"+blob.NewID().String(), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	p := make([]byte, len(data))
	b.Run("get", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		i := 0
		for b.Loop() {
			bl, err := s.Open(ids[i%len(ids)])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bl.ReadAt(p, 0); err != nil && !errors.Is(err, io.EOF) {
				b.Fatal(err)
			}
			bl.Close()
			i++
		}
	})
}

// TestConcurrent opens one uncached blob from many goroutines at once
// (each download lands, one entry is kept) while others publish into a
// small cache: every read is right, and the cache ends within its bound.
func TestConcurrent(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	const n = 64 << 10
	data := randBytes(rand.New(rand.NewPCG(13, 14)), n)
	id := put(t, newStore(t, srv, 0), data)
	s := newStore(t, srv, 4*n)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			if i%2 == 1 {
				errs <- putID(s, blob.NewID(), data)
				return
			}
			b, err := s.Open(id)
			if err != nil {
				errs <- err
				return
			}
			defer b.Close()
			p := make([]byte, n)
			if _, err := b.ReadAt(p, 0); err != nil || !bytes.Equal(p, data) {
				errs <- fmt.Errorf("read: %v, equal %v", err, bytes.Equal(p, data))
				return
			}
			errs <- nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.CacheUsed() > 4*n {
		t.Fatalf("cache holds %d bytes, limit %d", s.CacheUsed(), 4*n)
	}
}

// TestCacheRestart: a store opened over a cache a crash left drops the
// half-written blobs in tmp/, ignores files that are not blob ids, and
// serves the cached blobs without the server.
func TestCacheRestart(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	cfg := config(t, srv, 0)
	s := open(t, cfg)
	id := put(t, s, []byte("cached"))
	if _, err := s.Create(blob.NewID()); err != nil { // left open: the crash
		t.Fatal(err)
	}
	s.Close()
	planted := filepath.Join(cfg.CacheDir, "blobs", "not-a-blob")
	if err := os.WriteFile(planted, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	s = open(t, cfg)
	if ents, err := os.ReadDir(filepath.Join(cfg.CacheDir, "tmp")); err != nil || len(ents) != 0 {
		t.Fatalf("tmp after restart: %v %v", ents, err)
	}
	if s.CacheUsed() != int64(len("cached")) {
		t.Fatalf("cache holds %d bytes", s.CacheUsed())
	}
	if got := get(t, s, id); string(got) != "cached" {
		t.Fatalf("cached blob: %q", got)
	}
}

// TestStream writes files of many segments sequentially through content:
// the segments past the first go up from memory (CreateStream), are not
// cached (the first is), come back whole through an empty cache, and give
// their memory back whether committed or abandoned. With too little stream
// memory for every segment in flight, the others go through files of the
// cache directory, and the result is the same.
func TestStream(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	e := newFileEnv(t)
	rng := rand.New(rand.NewPCG(11, 12))
	ss := int64(2 * envelope.DefaultChunkSize)
	for _, mem := range []int64{0, 256 << 10, -1} {
		t.Run(fmt.Sprint("memory ", mem), func(t *testing.T) {
			cfg := config(t, srv, 0)
			cfg.StreamMemory = mem
			s := open(t, cfg)
			model := randBytes(rng, int(9*ss+777))
			l, err := e.write(t, s, content.Layout{}, 1, model, 0)
			if err != nil {
				t.Fatal(err)
			}
			if s.StreamMemory() != 0 {
				t.Fatalf("%d bytes of stream memory held after the commit", s.StreamMemory())
			}
			cached := 0
			for _, r := range l.Segs {
				if s.Cached(r.Blob) {
					cached++
				}
			}
			if !s.Cached(l.Segs[0].Blob) {
				t.Error("the first segment is not cached")
			}
			if mem == 0 && cached != 1 {
				t.Errorf("%d of %d segments cached after a streamed upload, want the first only", cached, len(l.Segs))
			}
			if mem < 0 && cached != len(l.Segs) {
				t.Errorf("%d of %d segments cached without stream memory, want all", cached, len(l.Segs))
			}
			if got, err := e.read(newStore(t, srv, 0), l, 2); err != nil || !bytes.Equal(got, model) {
				t.Fatalf("read back through an empty cache: %v, equal %v", err, bytes.Equal(got, model))
			}
			// Abandoned mid-stream: memory and files given back, nothing
			// left in the bucket but the committed file's blobs.
			f, err := content.Open(s, e.inode, content.Layout{}, 3, e.o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(randBytes(rng, int(7*ss+5)), 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if s.StreamMemory() != 0 {
				t.Fatalf("%d bytes of stream memory held after an abandoned upload", s.StreamMemory())
			}
			if ents, err := os.ReadDir(filepath.Join(cfg.CacheDir, "tmp")); err != nil || len(ents) != 0 {
				t.Errorf("the cache holds %d files being written after the upload closed (%v)", len(ents), err)
			}
			if objs := list(t, s); len(objs) != len(l.Segs) {
				t.Errorf("bucket holds %d objects, the file %d", len(objs), len(l.Segs))
			}
			for _, r := range l.Segs {
				if err := s.Delete(r.Blob); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestStreamedBlob drives one CreateStream blob with random writes,
// truncations and reads against a file, in memory and across its spill to
// the cache directory (stream memory for two blocks), then publishes it:
// what comes back is the file's bytes.
func TestStreamedBlob(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	for _, mem := range []int64{0, 512 << 10} {
		cfg := config(t, srv, 0)
		cfg.StreamMemory = mem
		s := open(t, cfg)
		rng := rand.New(rand.NewPCG(13, uint64(mem)))
		model, err := os.Create(filepath.Join(t.TempDir(), "model"))
		if err != nil {
			t.Fatal(err)
		}
		id := blob.NewID()
		p, err := s.CreateStream(id)
		if err != nil {
			t.Fatal(err)
		}
		size := int64(0)
		for op := range 300 {
			switch rng.IntN(5) {
			case 4: // an empty write past the end extends neither
				off := size + rng.Int64N(1<<20)
				if n, err := p.WriteAt(nil, off); n != 0 || err != nil {
					t.Fatalf("op %d: empty write at %d: %d, %v", op, off, n, err)
				}
				model.WriteAt(nil, off)
			case 0, 1:
				off := rng.Int64N(size + 100<<10)
				data := randBytes(rng, rng.IntN(300<<10))
				n, err := p.WriteAt(data, off)
				if err != nil || n != len(data) {
					t.Fatalf("op %d: write %d at %d: %d, %v", op, len(data), off, n, err)
				}
				model.WriteAt(data, off)
				size = max(size, off+int64(len(data)))
			case 2:
				size = rng.Int64N(size + 200<<10)
				if err := p.Truncate(size); err != nil {
					t.Fatalf("op %d: truncate %d: %v", op, size, err)
				}
				model.Truncate(size)
			case 3:
				off := rng.Int64N(size + 10)
				got, want := make([]byte, rng.IntN(400<<10)), make([]byte, 0)
				n, err := p.ReadAt(got, off)
				want = make([]byte, len(got))
				m, merr := model.ReadAt(want, off)
				if n != m || !bytes.Equal(got[:n], want[:m]) || (err == nil) != (merr == nil) {
					t.Fatalf("op %d: read %d at %d: %d, %v; file %d, %v", op, len(got), off, n, err, m, merr)
				}
			}
		}
		if _, err := p.WriteAt([]byte("x"), -1); err == nil {
			t.Fatal("a write at a negative offset succeeded")
		}
		if err := p.Publish(); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(model.Name())
		if err != nil {
			t.Fatal(err)
		}
		if got := get(t, s, id); !bytes.Equal(got, want) {
			t.Fatalf("memory %d: published blob differs from the file (%d and %d bytes)", mem, len(got), len(want))
		}
		if s.StreamMemory() != 0 {
			t.Fatalf("memory %d: %d bytes of stream memory held after the publish", mem, s.StreamMemory())
		}
	}
}

// TestStreamMemoryBound: many uploads streaming at once (one user's
// parallel transfers) never hold more stream memory than the bound; the
// ones that find it taken go through files, and every blob arrives whole.
func TestStreamMemoryBound(t *testing.T) {
	srv := testutil.StartS3(t, bucket)
	const limit = 1 << 20
	cfg := config(t, srv, 0)
	cfg.StreamMemory = limit
	s := open(t, cfg)
	rng := rand.New(rand.NewPCG(17, 18))
	const n = 8
	data := make([][]byte, n)
	ids := make([]blob.ID, n)
	for i := range n {
		data[i], ids[i] = randBytes(rng, 1<<20+i*1000), blob.NewID()
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	over := make(chan int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.CreateStream(ids[i])
			if err != nil {
				errs <- err
				return
			}
			for off := 0; off < len(data[i]); off += 64 << 10 {
				if _, err := p.WriteAt(data[i][off:min(off+64<<10, len(data[i]))], int64(off)); err != nil {
					p.Abort()
					errs <- err
					return
				}
				if m := s.StreamMemory(); m > limit {
					over <- m
				}
			}
			errs <- p.Publish()
		}()
	}
	wg.Wait()
	close(errs)
	close(over)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for m := range over {
		t.Fatalf("%d bytes of stream memory held, bound %d", m, limit)
	}
	for i, id := range ids {
		if got := get(t, s, id); !bytes.Equal(got, data[i]) {
			t.Fatalf("blob %d differs", i)
		}
	}
	if s.StreamMemory() != 0 {
		t.Fatalf("%d bytes of stream memory held after every publish", s.StreamMemory())
	}
}
