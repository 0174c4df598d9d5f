package envelope

import (
	"fmt"
	"io"
	"io/fs"
)

// NewWriter returns a WriteCloser that encrypts everything written to it as
// one new envelope file, bound to o.Binding and sealed with o.AEAD, written
// sequentially to dst (header first). Close writes the final chunk; it does
// not close dst. Without Close the output is a truncated file
// (ErrTruncated). Not safe for concurrent use.
func NewWriter(dst io.Writer, kr *Keyring, o Options) (io.WriteCloser, error) {
	h, dek, err := newHeader(kr, o)
	if err != nil {
		return nil, fmt.Errorf("envelope: writer: %w", err)
	}
	defer clear(dek)
	ca, err := newChunkAEAD(h.aeadID, dek, h.fileID[:])
	if err != nil {
		return nil, fmt.Errorf("envelope: writer: %w", err)
	}
	if _, err := dst.Write(h.marshal()); err != nil {
		return nil, fmt.Errorf("envelope: writer: %w", err)
	}
	return &writer{dst: dst, c: newCrew(ca, h.fileID), out: make([]byte, encChunkSize)}, nil
}

// writer buffers up to batchChunks chunks, laid out as sealed (nonce ||
// plaintext || room for the tag), and seals a full buffer in place, in
// parallel, when more data follows. The buffer starts at one chunk (small
// files, like securefsd's metadata, need no more) and grows to a batch.
type writer struct {
	dst io.Writer
	c   *crew
	out []byte // slots of encChunkSize bytes
	k   int    // slots before the current one (full)
	n   int    // plaintext bytes in the current slot
	idx int64  // index of the chunk in slot 0
	err error

	final bool // emit: the last slot is the final chunk
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	total := 0
	for len(p) > 0 {
		if w.n == chunkSize {
			// More data follows: the buffered chunks are interior.
			switch {
			case (w.k+1)*encChunkSize < len(w.out):
				w.k, w.n = w.k+1, 0
			case len(w.out) < batchChunks*encChunkSize:
				w.out = append(w.out, make([]byte, batchChunks*encChunkSize-len(w.out))...)
				w.k, w.n = w.k+1, 0
			default:
				if err := w.emit(false); err != nil {
					return total, err
				}
			}
		}
		o := w.k*encChunkSize + nonceSize
		c := copy(w.out[o+w.n:o+chunkSize], p)
		w.n += c
		total += c
		p = p[c:]
	}
	return total, nil
}

// emit seals the buffered chunks in place, the last one final or not, and
// writes them.
func (w *writer) emit(final bool) error {
	n := w.k + 1
	w.final = final
	w.c.do(n, w, defaultParallelism&parallelWrites != 0)
	if _, err := w.dst.Write(w.out[:w.k*encChunkSize+w.n+ChunkOverhead]); err != nil {
		w.err = fmt.Errorf("envelope: writer: chunks %d-%d: %w", w.idx, w.idx+int64(n)-1, err)
		return w.err
	}
	w.idx += int64(n)
	w.k, w.n = 0, 0
	return nil
}

// run seals slot k in place (task).
func (w *writer) run(s *sealer, k int) {
	slot := w.out[k*encChunkSize:]
	pn := chunkSize
	if k == w.k {
		pn = w.n
	}
	s.seal(slot, w.idx+int64(k), w.final && k == w.k, slot[nonceSize:nonceSize+pn])
}

// Close writes the final chunk (empty only if nothing was written).
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	err := w.emit(true)
	w.c = nil
	clear(w.out)
	if err == nil {
		w.err = fmt.Errorf("envelope: writer: %w", fs.ErrClosed)
	}
	return err
}

// NewReader returns a Reader of the plaintext of the stored file src of
// ciphertextSize bytes, which must have been created with o.Binding (else
// ErrAuth). Each chunk is authenticated before any of its bytes are
// returned; io.EOF comes only after the final chunk authenticated. Errors
// are sticky.
func NewReader(src io.ReaderAt, ciphertextSize int64, kr *Keyring, o Options) (io.Reader, error) {
	size, h, dek, _, err := openHeader(src, ciphertextSize, kr, o)
	if err != nil {
		return nil, fmt.Errorf("envelope: reader: %w", err)
	}
	defer clear(dek)
	aead, err := newChunkAEAD(h.aeadID, dek, h.fileID[:])
	if err != nil {
		return nil, fmt.Errorf("envelope: reader: %w", err)
	}
	return &reader{src: src, c: newCrew(aead, h.fileID), size: size}, nil
}

// reader reads and opens up to batchChunks chunks at a time, in parallel.
type reader struct {
	src   io.ReaderAt
	c     *crew
	size  int64
	idx   int64  // next chunk to read
	ct    []byte // sealed chunks
	plain []byte
	cur   []byte // unread plaintext
	err   error  // after cur: sticky
	errs  [batchChunks]error

	// The batch being opened (run): ct, of which m bytes were read,
	// then the read failed with rerr if not nil.
	bct  []byte
	m    int
	rerr error
}

// run opens chunk r.idx+k of the batch (task).
func (r *reader) run(s *sealer, k int) {
	idx := r.idx + int64(k)
	nchunks := numChunks(r.size)
	a := k * encChunkSize
	cl := chunkLen(idx, r.size)
	b := a + cl + ChunkOverhead
	switch {
	case r.m >= b:
		r.errs[k] = s.open(r.plain[k*chunkSize:k*chunkSize+cl], r.bct[a:b], idx, idx == nchunks-1)
	case r.rerr == nil || r.rerr == io.EOF:
		r.errs[k] = fmt.Errorf("chunk %d: %w", idx, ErrTruncated)
	default:
		r.errs[k] = fmt.Errorf("read chunk %d: %w", idx, r.rerr)
	}
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// next reads and opens the next batch of chunks into r.cur, up to the
// first that fails; it returns that failure, or io.EOF after the last.
func (r *reader) next() error {
	nchunks := numChunks(r.size)
	if r.idx >= nchunks {
		return io.EOF
	}
	i := r.idx
	n := int(min(batchChunks, nchunks-i))
	if len(r.plain) < n*chunkSize {
		// Sized to the file: a small file needs one chunk.
		r.ct, r.plain = make([]byte, n*encChunkSize), make([]byte, n*chunkSize)
	}
	last := chunkLen(i+int64(n)-1, r.size)
	ct := r.ct[:(n-1)*encChunkSize+last+ChunkOverhead]
	r.m, r.rerr = r.src.ReadAt(ct, chunkOffset(i))
	r.bct = ct
	r.c.do(n, r, defaultParallelism&parallelReads != 0)
	r.bct, r.rerr = nil, nil
	good := 0
	var err error
	for k := range n {
		if err = r.errs[k]; err != nil {
			err = fmt.Errorf("envelope: %w", err)
			break
		}
		good++
	}
	clear(r.errs[:])
	r.cur = nil
	if good > 0 {
		// All chunks before the last are whole.
		r.cur = r.plain[:(good-1)*chunkSize+chunkLen(i+int64(good)-1, r.size)]
	}
	r.idx += int64(good)
	return err
}

// Verify authenticates the header (with o.Binding) and every chunk of the
// stored file r of ciphertextSize bytes, returning the first failure
// (ErrAuth, ErrTruncated, ErrStaleFinal, ...). It only reads r.
func Verify(r io.ReaderAt, ciphertextSize int64, kr *Keyring, o Options) error {
	rd, err := NewReader(r, ciphertextSize, kr, o)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, rd)
	return err
}
