package envelope

import (
	"fmt"
	"io"
	"io/fs"
	"slices"
)

// NewWriter returns a WriteCloser that encrypts everything written to it as
// one new envelope file, written sequentially to dst (header first). Close
// writes the final chunk; it does not close dst. Without Close the output is
// a truncated file (ErrTruncated). Not safe for concurrent use. The file is
// unbound: NewWriterBound with an empty binding.
func NewWriter(dst io.Writer, kr *Keyring) (io.WriteCloser, error) {
	return NewWriterBound(dst, kr, nil)
}

// NewWriterBound is NewWriter for a file bound to binding, like CreateBound.
func NewWriterBound(dst io.Writer, kr *Keyring, binding []byte) (io.WriteCloser, error) {
	if kr == nil {
		return nil, fmt.Errorf("envelope: writer: nil keyring: %w", ErrUnknownKey)
	}
	h := &header{aeadID: aeadXChaCha20Poly1305, binding: slices.Clone(binding)}
	randomBytes(h.fileID[:])
	dek := make([]byte, keySize)
	randomBytes(dek)
	defer clear(dek)
	if err := h.wrapInto(0, 1, dek, kr); err != nil {
		return nil, fmt.Errorf("envelope: writer: %w", err)
	}
	aead, err := newChunkAEAD(h.aeadID, dek, h.fileID[:])
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(h.marshal()); err != nil {
		return nil, fmt.Errorf("envelope: writer: %w", err)
	}
	return &writer{dst: dst, s: newSealer(aead, h.fileID), out: make([]byte, encChunkSize)}, nil
}

type writer struct {
	dst io.Writer
	s   *sealer
	out []byte // nonce || plaintext being filled || room for the tag
	n   int    // plaintext bytes in out
	idx int64
	err error
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	total := 0
	for len(p) > 0 {
		if w.n == chunkSize {
			// More data follows: the buffered chunk is interior.
			if err := w.emit(false); err != nil {
				return total, err
			}
		}
		c := copy(w.out[nonceSize+w.n:nonceSize+chunkSize], p)
		w.n += c
		total += c
		p = p[c:]
	}
	return total, nil
}

// emit seals the buffered chunk in place and writes it.
func (w *writer) emit(final bool) error {
	sealed := w.s.seal(w.out, w.idx, final, w.out[nonceSize:nonceSize+w.n])
	if _, err := w.dst.Write(sealed); err != nil {
		w.err = fmt.Errorf("envelope: writer: chunk %d: %w", w.idx, err)
		return w.err
	}
	w.idx++
	w.n = 0
	return nil
}

// Close writes the final chunk (empty only if nothing was written).
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	err := w.emit(true)
	w.s = nil
	if err == nil {
		w.err = fmt.Errorf("envelope: writer: %w", fs.ErrClosed)
	}
	return err
}

// NewReader returns a Reader of the plaintext of the stored file src of
// ciphertextSize bytes. Each chunk is authenticated before any of its bytes
// are returned; io.EOF comes only after the final chunk authenticated.
// Errors are sticky. NewReader is NewReaderBound with an empty binding.
func NewReader(src io.ReaderAt, ciphertextSize int64, kr *Keyring) (io.Reader, error) {
	return NewReaderBound(src, ciphertextSize, kr, nil)
}

// NewReaderBound is NewReader for a file bound to binding; a different
// binding is ErrAuth, like OpenBound.
func NewReaderBound(src io.ReaderAt, ciphertextSize int64, kr *Keyring, binding []byte) (io.Reader, error) {
	size, err := PlaintextSize(ciphertextSize)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(src)
	if err != nil {
		return nil, err
	}
	h.binding = slices.Clone(binding)
	dek, _, err := h.unwrap(kr)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	aead, err := newChunkAEAD(h.aeadID, dek, h.fileID[:])
	if err != nil {
		return nil, err
	}
	return &reader{src: src, s: newSealer(aead, h.fileID), size: size,
		ct: make([]byte, encChunkSize), plain: make([]byte, chunkSize)}, nil
}

type reader struct {
	src   io.ReaderAt
	s     *sealer
	size  int64
	idx   int64  // next chunk to read
	ct    []byte // sealed chunk
	plain []byte
	cur   []byte // unread plaintext of the current chunk
	err   error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for len(r.cur) == 0 {
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// next decrypts chunk r.idx into r.cur, or returns io.EOF after the last.
func (r *reader) next() error {
	nchunks := numChunks(r.size)
	if r.idx >= nchunks {
		return io.EOF
	}
	i := r.idx
	n := chunkLen(i, r.size)
	ct := r.ct[:n+ChunkOverhead]
	if m, err := r.src.ReadAt(ct, chunkOffset(i)); m < len(ct) {
		if err == nil || err == io.EOF {
			return fmt.Errorf("envelope: chunk %d: %w", i, ErrTruncated)
		}
		return fmt.Errorf("envelope: read chunk %d: %w", i, err)
	}
	if err := r.s.open(r.plain[:n], ct, i, i == nchunks-1); err != nil {
		return err
	}
	r.cur = r.plain[:n]
	r.idx++
	return nil
}

// Verify authenticates the header and every chunk of the stored file r of
// ciphertextSize bytes, returning the first failure (ErrAuth, ErrTruncated,
// ErrStaleFinal, ...). It reads but never writes r. Verify is VerifyBound
// with an empty binding.
func Verify(r Backing, ciphertextSize int64, kr *Keyring) error {
	return VerifyBound(r, ciphertextSize, kr, nil)
}

// VerifyBound is Verify for a file bound to binding; a different binding is
// ErrAuth, like OpenBound.
func VerifyBound(r Backing, ciphertextSize int64, kr *Keyring, binding []byte) error {
	rd, err := NewReaderBound(r, ciphertextSize, kr, binding)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, rd)
	return err
}
