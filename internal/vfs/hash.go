package vfs

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxPending bounds the out-of-order writes buffered while hashing an
// upload (pkg/sftp runs writes on 8 workers; OpenSSH keeps 64 x 32 KiB in
// flight). Beyond it the upload is hashed on demand later.
const maxPending = 4 << 20

// HashKind selects content digests (Checksums).
type HashKind uint8

const (
	HashMD5 HashKind = 1 << iota
	HashSHA1
	HashSHA256
	// HashAll is every digest Hashes holds.
	HashAll = HashMD5 | HashSHA1 | HashSHA256
)

// ParseHashKinds reads a comma-separated list of "md5", "sha1", "sha256"
// (Options.UploadHashes from a flag); "" and "none" are zero.
func ParseHashKinds(s string) (HashKind, error) {
	var k HashKind
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "", "none":
		case "md5":
			k |= HashMD5
		case "sha1":
			k |= HashSHA1
		case "sha256":
			k |= HashSHA256
		default:
			return 0, fmt.Errorf("vfs: unknown digest %q (want md5, sha1, sha256)", f)
		}
	}
	return k, nil
}

// has reports whether hs holds every digest of want.
func (hs *Hashes) has(want HashKind) bool {
	return (want&HashMD5 == 0 || hs.MD5 != "") &&
		(want&HashSHA1 == 0 || hs.SHA1 != "") &&
		(want&HashSHA256 == 0 || hs.SHA256 != "")
}

// hashState computes the digests of its kinds of a file written
// sequentially from offset 0, tolerating writes that arrive slightly out
// of order. Each digest runs on its own goroutine, off the writer's path;
// they start with the first byte and stop at result or stop. Not safe for
// concurrent use: its node's lock serializes the calls.
type hashState struct {
	kinds        HashKind
	next         int64
	pending      map[int64]*hashBuf
	pendingBytes int
	bad          bool
	workers      []*hashWorker
	finished     bool
}

type hashWorker struct {
	kind HashKind
	h    hash.Hash
	ch   chan *hashBuf
	done chan struct{}
}

// hashBuf is a copy of written bytes on its way to the workers;
// the last one to finish returns it to the pool.
type hashBuf struct {
	b      []byte
	refs   atomic.Int32
	pooled bool
}

const hashBufSize = 64 << 10

var hashBufs = sync.Pool{New: func() any { return &hashBuf{b: make([]byte, 0, hashBufSize)} }}

func newHashBuf(p []byte) *hashBuf {
	if len(p) > hashBufSize {
		return &hashBuf{b: append([]byte(nil), p...)}
	}
	hb := hashBufs.Get().(*hashBuf)
	hb.b = append(hb.b[:0], p...)
	hb.pooled = true
	return hb
}

func (hb *hashBuf) release() {
	if hb.refs.Add(-1) <= 0 && hb.pooled {
		hashBufs.Put(hb)
	}
}

func newHashState(kinds HashKind) *hashState {
	return &hashState{kinds: kinds, pending: map[int64]*hashBuf{}}
}

// stop releases the workers without a result.
func (s *hashState) stop() {
	if !s.finished {
		s.finished = true
		for _, w := range s.workers {
			close(w.ch)
		}
	}
}

func (s *hashState) fail() {
	s.bad = true
	for _, hb := range s.pending {
		hb.release()
	}
	s.pending = nil
	s.pendingBytes = 0
	s.stop()
}

func (s *hashState) start() {
	if s.workers != nil {
		return
	}
	for _, k := range []HashKind{HashMD5, HashSHA1, HashSHA256} {
		if s.kinds&k == 0 {
			continue
		}
		var h hash.Hash
		switch k {
		case HashMD5:
			h = md5.New()
		case HashSHA1:
			h = sha1.New()
		default:
			h = sha256.New()
		}
		w := &hashWorker{kind: k, h: h, ch: make(chan *hashBuf, 64), done: make(chan struct{})}
		go func() {
			defer close(w.done)
			for hb := range w.ch {
				w.h.Write(hb.b)
				hb.release()
			}
		}()
		s.workers = append(s.workers, w)
	}
}

// feed hands hb to the workers; it is released when all have hashed it.
func (s *hashState) feed(hb *hashBuf) {
	if s.finished || len(hb.b) == 0 {
		hb.release()
		return
	}
	s.start()
	s.next += int64(len(hb.b)) // before the hand-off: hb may be reused after it
	hb.refs.Store(int32(len(s.workers)))
	for _, w := range s.workers {
		w.ch <- hb
	}
}

// write records that p was written at off.
func (s *hashState) write(off int64, p []byte) {
	if s.kinds == 0 || s.bad || s.finished || len(p) == 0 {
		return
	}
	end := off + int64(len(p))
	if off < s.next {
		s.fail() // overwrite of hashed data
		return
	}
	for k, v := range s.pending {
		if off < k+int64(len(v.b)) && k < end {
			s.fail()
			return
		}
	}
	if off > s.next {
		if s.pendingBytes+len(p) > maxPending {
			s.fail()
			return
		}
		s.pending[off] = newHashBuf(p)
		s.pendingBytes += len(p)
		return
	}
	s.feed(newHashBuf(p))
	for {
		v, ok := s.pending[s.next]
		if !ok {
			break
		}
		delete(s.pending, s.next)
		s.pendingBytes -= len(v.b)
		s.feed(v)
	}
}

// truncate records a size change.
func (s *hashState) truncate(size int64) {
	if s.bad {
		return
	}
	if size < s.next {
		s.fail()
		return
	}
	for k, v := range s.pending {
		if k+int64(len(v.b)) > size {
			s.fail()
			return
		}
	}
}

// result returns the digests if the whole file of the given size was
// hashed. It ends the state: later writes are not hashed.
func (s *hashState) result(size int64) (Hashes, bool) {
	if s.kinds == 0 || s.bad || s.finished || len(s.pending) > 0 || s.next != size {
		s.stop()
		return Hashes{}, false
	}
	s.start()
	s.stop()
	for _, w := range s.workers {
		<-w.done
	}
	res := Hashes{Size: size}
	for _, w := range s.workers {
		sum := hex.EncodeToString(w.h.Sum(nil))
		switch w.kind {
		case HashMD5:
			res.MD5 = sum
		case HashSHA1:
			res.SHA1 = sum
		default:
			res.SHA256 = sum
		}
	}
	return res, true
}

// Checksums returns the file's hex digests of the kinds in want (all three
// if want is empty; digests not asked for may be filled or ""): from the
// metadata cache if it matches the file's current size and modification
// time and holds them, else by reading the file once through the VFS and
// computing the ones asked for (the result joins the cache). Files written
// sequentially from offset 0 have Options.UploadHashes computed during the
// upload. A cached result needs
// PermDownload or PermUpload; computing needs PermDownload.
func (f *FS) Checksums(ctx context.Context, name string, want ...HashKind) (Hashes, error) {
	if f.view != nil {
		return f.view.checksums(ctx, name, want...)
	}
	const op = "checksums"
	// Rights only: the lock is taken per step, the symlink policy by Stat.
	e, err := f.enter(op, name, pre{anyOf: PermDownload | PermUpload})
	if err != nil {
		return Hashes{}, err
	}
	rel := e.rel
	var kinds HashKind
	for _, k := range want {
		kinds |= k
	}
	if kinds == 0 {
		kinds = HashAll
	}
	h := f.h
	fi, err := f.Stat(name)
	if err != nil {
		return Hashes{}, err
	}
	if fi.IsDir() {
		return Hashes{}, h.pathErr(op, name, ErrIsDir)
	}
	h.ns.RLock()
	open := h.lookup(rel)
	m, merr := h.readMeta(rel)
	h.ns.RUnlock()
	var cached Hashes // still-valid digests, kept alongside the new ones
	if merr == nil && m.Hashes != nil && open == nil && m.Hashes.Size == fi.Size() && m.Hashes.ModTime.Equal(fi.ModTime()) {
		if m.Hashes.has(kinds) {
			return *m.Hashes, nil
		}
		cached = *m.Hashes
	}
	if !f.can(PermDownload) {
		return Hashes{}, f.denied(op, name)
	}
	n, err := f.acquire(op, name, rel)
	if err != nil {
		return Hashes{}, err
	}
	hs := newHashState(kinds)
	defer hs.stop()
	buf := make([]byte, hashBufSize)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			f.releaseNode(n)
			return Hashes{}, err
		}
		k, rerr := n.readAt(buf, off)
		hs.write(off, buf[:k])
		off += int64(k)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.releaseNode(n)
			return Hashes{}, h.pathErr(op, name, rerr)
		}
	}
	f.releaseNode(n)
	res, _ := hs.result(off)
	if res.MD5 == "" {
		res.MD5 = cached.MD5
	}
	if res.SHA1 == "" {
		res.SHA1 = cached.SHA1
	}
	if res.SHA256 == "" {
		res.SHA256 = cached.SHA256
	}
	after, err := f.Stat(name)
	if err == nil && open == nil && after.Size() == off && after.ModTime().Equal(fi.ModTime()) {
		res.ModTime = after.ModTime()
		h.ns.RLock()
		h.setHashes(rel, &res)
		h.ns.RUnlock()
	}
	res.ModTime = fi.ModTime()
	return res, nil
}

var _ fs.FileInfo = (*fileInfo)(nil)

// fileInfo is the client view of an entry.
type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return i.mtime }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *fileInfo) Sys() any           { return nil }
