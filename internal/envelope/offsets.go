package envelope

import "fmt"

// Layout constants of format version 1 (docs/FORMAT.md, "Chunks").
const (
	chunkLog2    = 16
	chunkSize    = 1 << chunkLog2 // == DefaultChunkSize
	encChunkSize = chunkSize + ChunkOverhead

	// MaxPlaintextSize is the largest plaintext size the format allows
	// (1 EiB), chosen so that every ciphertext offset fits in an int64.
	MaxPlaintextSize = 1 << 60
)

// numChunks is the number of chunks of a file of plaintext size size: an
// empty file is one empty final chunk; otherwise ceil(size/chunkSize).
func numChunks(size int64) int64 {
	if size == 0 {
		return 1
	}
	return (size + chunkSize - 1) / chunkSize
}

// chunkLen is the plaintext length of chunk i of a file of plaintext size
// size (0 for a chunk beyond the end).
func chunkLen(i, size int64) int {
	start := i * chunkSize
	if start >= size {
		return 0
	}
	return int(min(chunkSize, size-start))
}

// chunkOffset is the offset of chunk i in the ciphertext.
func chunkOffset(i int64) int64 {
	return HeaderSize + i*encChunkSize
}

// CiphertextSize returns the stored size of a file of plaintextSize bytes:
// HeaderSize + max(1, ceil(plaintextSize/DefaultChunkSize))*ChunkOverhead +
// plaintextSize. It returns -1 for a size outside [0, MaxPlaintextSize].
func CiphertextSize(plaintextSize int64) int64 {
	if plaintextSize < 0 || plaintextSize > MaxPlaintextSize {
		return -1
	}
	return HeaderSize + numChunks(plaintextSize)*ChunkOverhead + plaintextSize
}

// PlaintextSize returns the plaintext size of a stored file of
// ciphertextSize bytes, by arithmetic alone: nothing is read or decrypted.
// A length that no plaintext size encodes to is ErrFormat.
func PlaintextSize(ciphertextSize int64) (int64, error) {
	size, err := plaintextSize(ciphertextSize)
	if err != nil {
		return 0, fmt.Errorf("envelope: %w", err)
	}
	return size, nil
}

func plaintextSize(ciphertextSize int64) (int64, error) {
	if ciphertextSize < HeaderSize+ChunkOverhead || ciphertextSize > CiphertextSize(MaxPlaintextSize) {
		return 0, fmt.Errorf("ciphertext size %d: %w", ciphertextSize, ErrFormat)
	}
	rest := ciphertextSize - HeaderSize
	full, rem := rest/encChunkSize, rest%encChunkSize
	switch {
	case rem == 0:
		return full * chunkSize, nil
	case rem < ChunkOverhead, rem == ChunkOverhead && full > 0:
		// A partial chunk shorter than its overhead, or an empty chunk
		// after full ones (never written: such a file ends with its
		// last full chunk).
		return 0, fmt.Errorf("ciphertext size %d: %w", ciphertextSize, ErrFormat)
	default:
		return full*chunkSize + rem - ChunkOverhead, nil
	}
}
