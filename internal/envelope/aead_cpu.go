package envelope

import (
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/cpu"
)

// PreferredAEAD is the AEAD new files should use on this machine:
// XAES-256-GCM where the CPU has AES and carry-less multiplication
// instructions (there it is the fastest and Go's AES-GCM is constant time),
// XChaCha20-Poly1305 elsewhere, where software AES would be slow.
func PreferredAEAD() AEAD {
	hw := false
	switch runtime.GOARCH {
	case "amd64", "386":
		hw = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		hw = cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		hw = cpu.S390X.HasAESGCM
	case "ppc64le", "ppc64":
		hw = cpu.PPC64.IsPOWER8
	}
	if hw {
		return XAES256GCM
	}
	return XChaCha20Poly1305
}

// ParseAEAD reads an AEAD name as String writes it, case-insensitively;
// "auto" and "" are PreferredAEAD.
func ParseAEAD(s string) (AEAD, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return PreferredAEAD(), nil
	case "xaes-256-gcm":
		return XAES256GCM, nil
	case "xchacha20-poly1305":
		return XChaCha20Poly1305, nil
	}
	return 0, fmt.Errorf("envelope: unknown AEAD %q (want auto, XAES-256-GCM or XChaCha20-Poly1305)", s)
}
