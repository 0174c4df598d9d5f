package sftpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// FuzzSCPSink feeds arbitrary bytes to the legacy SCP sink (what a
// malicious client sends after "scp -t -r -p") over a real vfs home: it
// must never panic, and every reply byte stream must be well formed.
func FuzzSCPSink(f *testing.F) {
	for _, s := range []string{
		"C0644 5 a\nhello\x00",
		"T1700000000 0 1700000000 0\nC0600 3 b\nabc\x00",
		"D0755 0 d\nC0644 1 x\nz\x00E\n",
		"D0755 0 ..\n", "C0644 3 ../x\nabc\x00", "C0644 999999999999 big\n", "E\n", "\x01oops\n",
		"D0755 0 d\nD0755 0 e\nE\nE\nC0644 0 empty\n\x00",
	} {
		f.Add([]byte(s))
	}
	kr, err := envelope.NewKeyring()
	if err != nil {
		f.Fatal(err)
	}
	store := fixture.Store(f, filepath.Join(f.TempDir(), "store"), vfs.Options{Keyring: kr})
	home, err := store.Home("fuzz", vfs.HomeOptions{Perm: vfs.PermAll, Quota: vfs.Quota{Bytes: 64 << 20}})
	if err != nil {
		f.Fatal(err)
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := fmt.Sprintf("/t%d", n.Add(1))
		if err := home.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		s := &scpSession{
			ss:   &session{acc: staticAccess(home, users.PermAll), user: "fuzz", log: slog.New(slog.DiscardHandler)},
			ctx:  context.Background(),
			opts: scpOptions{sink: true, recursive: true, preserve: true},
			in:   bufio.NewReader(bytes.NewReader(data)),
			out:  &out,
			buf:  make([]byte, 4096),
		}
		_ = s.sink(dir)
		// Replies: \0, or \1/\2 followed by a one-line "scp: ..." message.
		r := bufio.NewReader(&out)
		for {
			b, err := r.ReadByte()
			if err == io.EOF {
				break
			}
			if b == 0 {
				continue
			}
			if b != 1 && b != 2 {
				t.Fatalf("reply byte %d", b)
			}
			line, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "scp: ") {
				t.Fatalf("bad message %q", line)
			}
		}
	})
}
