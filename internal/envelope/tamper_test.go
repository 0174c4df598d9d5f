package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// openAndReadAll returns the first error of Open or of reading everything.
func openAndReadAll(t *testing.T, stored []byte, kr *Keyring) ([]byte, error) {
	t.Helper()
	got, err := readAll(t, stored, kr)
	// The streaming reader and Verify must agree with the File.
	vErr := Verify(newMem(stored), int64(len(stored)), kr, Options{})
	if (err == nil) != (vErr == nil) {
		t.Fatalf("File says %v, Verify says %v", err, vErr)
	}
	return got, err
}

func flip(b []byte, off int64) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0x80
	return c
}

func TestTamperHeader(t *testing.T) {
	forAEADs(t, func(t *testing.T, aead AEAD) {
		kr := testKeyring(t)
		data := pattern(chunkSize+5, 3)
		stored := writeFileAEAD(t, aead, kr, data)
		// The same file mid-rewrap, with both slots in use.
		kr2 := kr.Clone()
		_, err := kr2.Rotate()
		must(t, err)
		twoSlots := newMem(stored)
		_, err = Rewrap(syncFunc{twoSlots, func() error { return errors.New("crash") }}, int64(len(stored)), kr2, Options{})
		if err == nil {
			t.Fatal("rewrap did not stop")
		}
		both := twoSlots.Bytes()
		for _, tc := range []struct {
			name   string
			file   []byte
			off    int64
			want   error
			keyRng *Keyring
		}{
			{"magic", stored, 0, ErrVersion, kr},
			{"magic/last", stored, 7, ErrVersion, kr},
			{"version", stored, 8, ErrVersion, kr},
			{"aead", stored, 9, ErrVersion, kr},
			{"chunk size", stored, 10, ErrVersion, kr},
			{"reserved", stored, 11, ErrFormat, kr},
			{"reserved/last", stored, 15, ErrFormat, kr},
			{"file id", stored, 16, ErrAuth, kr},
			{"file id/last", stored, 47, ErrAuth, kr},
			{"slot0 generation", stored, 48, ErrAuth, kr},
			{"slot0 kek id", stored, 52, ErrUnknownKey, kr},
			{"slot0 nonce", stored, 56, ErrAuth, kr},
			{"slot0 wrapped dek", stored, 80, ErrAuth, kr},
			{"slot0 tag", stored, 127, ErrAuth, kr},
			{"empty slot1 generation", stored, 128, ErrFormat, kr},
			{"empty slot1 kek id", stored, 135, ErrFormat, kr},
			{"empty slot1 nonce", stored, 140, ErrFormat, kr},
			{"empty slot1 wrapped", stored, 207, ErrFormat, kr},
			{"two slots: old slot0 wrapped", both, 100, ErrAuth, kr2},
			{"two slots: new slot1 wrapped", both, 180, ErrAuth, kr2},
			{"two slots: new slot1 nonce", both, 140, ErrAuth, kr2},
			{"two slots: slot1 generation", both, 128, ErrAuth, kr2},
		} {
			t.Run(fmt.Sprintf("%s@%d", tc.name, tc.off), func(t *testing.T) {
				bad := flip(tc.file, tc.off)
				_, err := Open(newMem(bad), int64(len(bad)), tc.keyRng, Options{})
				if !errors.Is(err, tc.want) {
					t.Fatalf("Open: %v, want %v", err, tc.want)
				}
				if _, err := NewReader(newMem(bad), int64(len(bad)), tc.keyRng, Options{}); !errors.Is(err, tc.want) {
					t.Fatalf("NewReader: %v, want %v", err, tc.want)
				}
			})
		}
		// Every single header byte: some error, never success.
		for off := range int64(HeaderSize) {
			bad := flip(stored, off)
			if _, err := Open(newMem(bad), int64(len(bad)), kr, Options{}); err == nil {
				t.Fatalf("flipped header byte %d accepted", off)
			}
		}
	})
}

func TestTamperChunks(t *testing.T) {
	forAEADs(t, func(t *testing.T, aead AEAD) {
		kr := testKeyring(t)
		cs := int64(chunkSize)
		data := pattern(3*chunkSize+7, 4) // chunks 0, 1, 2 full; 3 holds 7 bytes
		stored := writeFileAEAD(t, aead, kr, data)
		for _, c := range []struct {
			name  string
			chunk int64
		}{{"first", 0}, {"middle", 1}, {"last", 3}} {
			start := chunkOffset(c.chunk)
			end := min(start+encChunkSize, int64(len(stored)))
			for _, part := range []struct {
				name string
				off  int64
			}{
				{"nonce", start},
				{"nonce/last", start + nonceSize - 1},
				{"ciphertext", start + nonceSize},
				{"ciphertext/last", end - tagSize - 1},
				{"tag", end - tagSize},
				{"tag/last", end - 1},
			} {
				t.Run(c.name+"/"+part.name, func(t *testing.T) {
					bad := flip(stored, part.off)
					if _, err := openAndReadAll(t, bad, kr); !errors.Is(err, ErrAuth) {
						t.Fatalf("read all: %v, want ErrAuth", err)
					}
					// Other chunks stay readable; the damaged one never
					// yields a byte.
					f, err := Open(newMem(bad), int64(len(bad)), kr, Options{})
					must(t, err)
					defer f.Close()
					for i := range numChunks(int64(len(data))) {
						p := make([]byte, chunkLen(i, int64(len(data))))
						n, err := f.ReadAt(p, i*cs)
						if i == c.chunk {
							if n != 0 || !errors.Is(err, ErrAuth) {
								t.Errorf("damaged chunk %d: %d bytes, %v", i, n, err)
							}
						} else if (err != nil && err != io.EOF) || !bytes.Equal(p[:n], data[i*cs:i*cs+int64(n)]) {
							t.Errorf("intact chunk %d: %v", i, err)
						}
					}
				})
			}
		}
	})
}

func TestTamperLength(t *testing.T) {
	forAEADs(t, func(t *testing.T, aead AEAD) {
		kr := testKeyring(t)
		cs := int64(chunkSize)
		data := pattern(3*chunkSize+7, 5)
		stored := writeFileAEAD(t, aead, kr, data)
		full := writeFileAEAD(t, aead, kr, pattern(2*chunkSize, 6)) // ends on a boundary
		cut := func(b []byte, n int64) []byte { return bytes.Clone(b[:n]) }
		for _, tc := range []struct {
			name string
			file []byte
			want error
		}{
			{"cut at boundary (drop final chunk)", cut(stored, CiphertextSize(3*cs)), ErrTruncated},
			{"cut at boundary (two chunks)", cut(stored, CiphertextSize(2*cs)), ErrTruncated},
			{"cut at boundary of full file", cut(full, CiphertextSize(cs)), ErrTruncated},
			{"cut 1 byte", cut(stored, int64(len(stored))-1), ErrAuth},
			{"cut into last chunk overhead", cut(stored, chunkOffset(3)+30), ErrFormat},
			{"cut to empty final chunk size", cut(stored, chunkOffset(3)+ChunkOverhead), ErrFormat},
			{"cut inside middle chunk", cut(stored, chunkOffset(2)+1000), ErrAuth},
			{"cut to header", cut(stored, HeaderSize), ErrFormat},
			{"cut inside header", cut(stored, 100), ErrFormat},
			{"extend 1 byte", append(bytes.Clone(stored), 0), ErrAuth},
			{"extend by a chunk of zeros", append(bytes.Clone(stored), make([]byte, encChunkSize)...), ErrAuth},
			{"extend full file by 1 byte", append(bytes.Clone(full), 1), ErrFormat},
			{"extend full file by a 1-byte chunk", append(bytes.Clone(full), make([]byte, ChunkOverhead+1)...), ErrStaleFinal},
			{"append copy of final chunk", append(bytes.Clone(full), full[chunkOffset(1):]...), ErrStaleFinal},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := openAndReadAll(t, tc.file, kr); !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
			})
		}
	})
}

func TestTamperSwap(t *testing.T) {
	forAEADs(t, func(t *testing.T, aead AEAD) {
		kr := testKeyring(t)
		a := writeFileAEAD(t, aead, kr, pattern(3*chunkSize, 7))
		b := writeFileAEAD(t, aead, kr, pattern(3*chunkSize, 8))
		for _, tc := range []struct {
			name string
			file []byte
		}{
			{"chunk 1 from another file", withChunk(a, 1, encChunk(b, 1))},
			{"final chunk from another file", withChunk(a, 2, encChunk(b, 2))},
			{"chunks 0 and 1 swapped", withChunk(withChunk(a, 0, encChunk(a, 1)), 1, encChunk(a, 0))},
			{"header from another file", append(bytes.Clone(b[:HeaderSize]), a[HeaderSize:]...)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := openAndReadAll(t, tc.file, kr); !errors.Is(err, ErrAuth) {
					t.Fatalf("got %v, want ErrAuth", err)
				}
			})
		}
		if _, err := openAndReadAll(t, a, testKeyring(t)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("foreign keyring: %v", err)
		}
	})
}

// TestWrongKeyring: another keyring (KEK ids are key fingerprints) is
// ErrUnknownKey, not ErrAuth: a wrong key is not reported as tampering.
func TestWrongKeyring(t *testing.T) {
	kr := testKeyring(t)
	stored := writeFile(t, kr, []byte("hello"))
	if _, err := Open(newMem(stored), int64(len(stored)), testKeyring(t), Options{}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("other keyring: %v", err)
	}
	if _, err := Open(newMem(stored), int64(len(stored)), nil, Options{}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("nil keyring: %v", err)
	}
	// The same id with another key can only come from a forged keyring:
	// the header then fails authentication.
	forged := testKeyring(t)
	forged.mu.Lock()
	forged.keys = map[uint32]*kek{kr.Active(): forged.keys[forged.active]}
	forged.active = kr.Active()
	forged.mu.Unlock()
	if _, err := Open(newMem(stored), int64(len(stored)), forged, Options{}); !errors.Is(err, ErrAuth) {
		t.Errorf("same id, other key: %v", err)
	}
}

// TestEmptyFileAuthenticated: an empty file's only chunk is authenticated
// before ReadAt reports io.EOF, so a file cut to look empty is caught.
func TestEmptyFileAuthenticated(t *testing.T) {
	forAEADs(t, func(t *testing.T, aead AEAD) {
		kr := testKeyring(t)
		empty := writeFileAEAD(t, aead, kr, nil)
		if got, err := readAll(t, empty, kr); err != nil || len(got) != 0 {
			t.Fatalf("empty file: %v", err)
		}
		big := writeFileAEAD(t, aead, kr, pattern(100, 1))
		// Cut a 100-byte file to the length of an empty one.
		fake := bytes.Clone(big[:CiphertextSize(0)])
		if _, err := readAll(t, fake, kr); !errors.Is(err, ErrAuth) {
			t.Fatalf("cut to empty: %v", err)
		}
		if _, err := readAll(t, flip(empty, HeaderSize+3), kr); !errors.Is(err, ErrAuth) {
			t.Fatalf("tampered empty chunk: %v", err)
		}
	})
}
