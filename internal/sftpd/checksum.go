package sftpd

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/vfs"
)

// checksum runs md5sum/sha1sum/sha256sum the way rclone uses them: with no
// argument (or "-") it hashes the channel's stdin until EOF (rclone's probe
// sends none and expects the empty-input digest, "d41d8cd98f00b204e9800998ecf8427e  -");
// with paths it prints "<hex>  <path>" per file from vfs's checksum cache
// (filled on the first request, or during the upload with
// Options.UploadHashes), in coreutils' format. Errors go to stderr as
// "md5sum: PATH: reason" and make the exit status 1.
func (ss *session) checksum(ctx context.Context, ch ssh.Channel, name string, args []word) uint32 {
	if len(args) == 0 || (len(args) == 1 && args[0].s == "-") {
		var h hash.Hash
		switch name {
		case "md5sum":
			h = md5.New()
		case "sha1sum":
			h = sha1.New()
		default:
			h = sha256.New()
		}
		if _, err := io.Copy(h, ch); err != nil {
			fmt.Fprintf(ch.Stderr(), "%s: -: read error\n", name)
			return exitFailure
		}
		fmt.Fprintf(ch, "%s  -\n", hex.EncodeToString(h.Sum(nil)))
		return exitOK
	}
	// Ask for the one digest printed: it comes from the file's hash cache,
	// else one read of the file computes and caches it (or, with serve
	// --upload-hashes, the upload computed it).
	kind := map[string]vfs.HashKind{"md5sum": vfs.HashMD5, "sha1sum": vfs.HashSHA1}[name]
	if kind == 0 {
		kind = vfs.HashSHA256
	}
	code := uint32(exitOK)
	for _, a := range args {
		start := time.Now()
		hs, err := ss.acc.fs().Checksums(ctx, a.s, kind)
		var sum string
		if err == nil {
			switch name {
			case "md5sum":
				sum = hs.MD5
			case "sha1sum":
				sum = hs.SHA1
			default:
				sum = hs.SHA256
			}
		}
		ss.logOp(name, a.s, -1, start, err)
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "%s: %s: %s\n", name, a.s, errText(err))
			code = exitFailure
			continue
		}
		// coreutils escapes names holding a backslash or newline and
		// marks the line with a leading backslash.
		out := a.s
		prefix := ""
		if strings.ContainsAny(out, "\\\n") {
			prefix = `\`
			out = strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(out)
		}
		fmt.Fprintf(ch, "%s%s  %s\n", prefix, sum, out)
	}
	return code
}
