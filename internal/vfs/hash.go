package vfs

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"io/fs"
	"time"
)

// maxPending bounds the out-of-order writes buffered while hashing an
// upload (pkg/sftp runs writes on 8 workers; OpenSSH keeps 64 x 32 KiB in
// flight). Beyond it the upload is hashed on demand later.
const maxPending = 4 << 20

// hashState computes MD5, SHA-1 and SHA-256 of a file written sequentially
// from offset 0, tolerating writes that arrive slightly out of order.
type hashState struct {
	md5, sha1, sha256 hash.Hash
	next              int64
	pending           map[int64][]byte
	pendingBytes      int
	bad               bool
}

func newHashState() *hashState {
	return &hashState{md5: md5.New(), sha1: sha1.New(), sha256: sha256.New(), pending: map[int64][]byte{}}
}

func (s *hashState) fail() {
	s.bad = true
	s.pending = nil
	s.pendingBytes = 0
}

func (s *hashState) feed(p []byte) {
	s.md5.Write(p)
	s.sha1.Write(p)
	s.sha256.Write(p)
	s.next += int64(len(p))
}

// write records that p was written at off.
func (s *hashState) write(off int64, p []byte) {
	if s.bad || len(p) == 0 {
		return
	}
	end := off + int64(len(p))
	if off < s.next {
		s.fail() // overwrite of hashed data
		return
	}
	for k, v := range s.pending {
		if off < k+int64(len(v)) && k < end {
			s.fail()
			return
		}
	}
	if off > s.next {
		if s.pendingBytes+len(p) > maxPending {
			s.fail()
			return
		}
		s.pending[off] = append([]byte(nil), p...)
		s.pendingBytes += len(p)
		return
	}
	s.feed(p)
	for {
		v, ok := s.pending[s.next]
		if !ok {
			break
		}
		delete(s.pending, s.next)
		s.pendingBytes -= len(v)
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
		if k+int64(len(v)) > size {
			s.fail()
			return
		}
	}
}

// result returns the digests if the whole file of the given size was
// hashed.
func (s *hashState) result(size int64) (Hashes, bool) {
	if s.bad || len(s.pending) > 0 || s.next != size {
		return Hashes{}, false
	}
	return Hashes{
		MD5:    hex.EncodeToString(s.md5.Sum(nil)),
		SHA1:   hex.EncodeToString(s.sha1.Sum(nil)),
		SHA256: hex.EncodeToString(s.sha256.Sum(nil)),
		Size:   size,
	}, true
}

// Checksums returns the file's hex digests: from the metadata cache if it
// matches the file's current size and modification time, else by reading
// the file once through the VFS (the result is then cached). Files written
// sequentially from offset 0 have theirs computed during the upload. A
// cached result needs PermDownload or PermUpload; computing needs
// PermDownload.
func (f *FS) Checksums(ctx context.Context, name string) (Hashes, error) {
	const op = "checksums"
	rel, err := cleanName(op, name)
	if err != nil {
		return Hashes{}, err
	}
	if !f.can(PermDownload) && !f.can(PermUpload) {
		return Hashes{}, f.denied(op, name)
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
	if merr == nil && m.Hashes != nil && open == nil && m.Hashes.Size == fi.Size() && m.Hashes.ModTime.Equal(fi.ModTime()) {
		return *m.Hashes, nil
	}
	if !f.can(PermDownload) {
		return Hashes{}, f.denied(op, name)
	}
	n, err := f.acquire(op, name, rel)
	if err != nil {
		return Hashes{}, err
	}
	hs := newHashState()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			f.releaseNode(n)
			return Hashes{}, err
		}
		k, rerr := n.readAt(buf, off)
		hs.feed(buf[:k])
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
