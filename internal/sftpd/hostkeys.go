package sftpd

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// rsaHostKeyBits is the size of a generated RSA host key (OpenSSH's
// ssh-keygen default).
const rsaHostKeyBits = 3072

// LoadOrCreateHostKeys reads ssh_host_ed25519_key and ssh_host_rsa_key
// (OpenSSH PEM format, unencrypted) from dir, generating the missing ones
// (mode 0600, public halves next to them as *.pub) on first run. The Ed25519
// signer comes first. The RSA signer only signs with rsa-sha2-512/256: the
// SHA-1 "ssh-rsa" signature is never offered.
func LoadOrCreateHostKeys(dir string) ([]ssh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sftpd: host keys: %w", err)
	}
	specs := []struct {
		name string
		gen  func() (crypto.Signer, error)
	}{
		{"ssh_host_ed25519_key", func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		}},
		{"ssh_host_rsa_key", func() (crypto.Signer, error) {
			return rsa.GenerateKey(rand.Reader, rsaHostKeyBits)
		}},
	}
	signers := make([]ssh.Signer, 0, len(specs))
	for _, spec := range specs {
		s, err := loadOrCreateHostKey(filepath.Join(dir, spec.name), spec.gen)
		if err != nil {
			return nil, fmt.Errorf("sftpd: host key %s: %w", spec.name, err)
		}
		if s.PublicKey().Type() == ssh.KeyAlgoRSA {
			as, ok := s.(ssh.AlgorithmSigner)
			if !ok {
				return nil, fmt.Errorf("sftpd: host key %s: RSA signer without algorithm support", spec.name)
			}
			s, err = ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
			if err != nil {
				return nil, fmt.Errorf("sftpd: host key %s: %w", spec.name, err)
			}
		}
		signers = append(signers, s)
	}
	return signers, nil
}

func loadOrCreateHostKey(path string, gen func() (crypto.Signer, error)) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return ssh.ParsePrivateKey(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := gen()
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		return nil, err
	}
	if err := writeNew(path, pem.EncodeToMemory(block), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it meanwhile: use theirs.
			data, rerr := os.ReadFile(path)
			if rerr != nil {
				return nil, rerr
			}
			return ssh.ParsePrivateKey(data)
		}
		return nil, err
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	if err := writeNew(path+".pub", pub, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return signer, nil
}

// writeNew writes data to a temporary file, syncs it and links it to path,
// failing with fs.ErrExist if path already exists; a crash never leaves a
// half-written key behind.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}

// Fingerprints returns "TYPE SHA256:..." for each host key, for the start-up
// banner.
func Fingerprints(keys []ssh.Signer) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.PublicKey().Type()+" "+ssh.FingerprintSHA256(k.PublicKey()))
	}
	return out
}
