package sftpd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/testutil/fixture"
	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// TestSCPSourceDamaged downloads damaged files with legacy scp (-O): the
// copy fails and the local file is absent (damage found before the C line)
// or an authentic prefix (damage found mid-file: the transfer is aborted,
// never padded).
func TestSCPSourceDamaged(t *testing.T) {
	const (
		chunks  = 8
		size    = chunks * envelope.DefaultChunkSize
		encSize = envelope.DefaultChunkSize + envelope.ChunkOverhead
	)
	// Chunks before this one are read before the C line is sent.
	firstAfterAnnounce := scpBufSize / envelope.DefaultChunkSize
	tests := []struct {
		name      string
		chunk     int  // damaged chunk
		wantLocal bool // a local (prefix) file may exist
	}{
		{"chunk-0", 0, false},
		{"chunk-in-first-read", firstAfterAnnounce - 1, false},
		{"chunk-after-announce", firstAfterAnnounce, true},
		{"last-chunk", chunks - 1, true},
	}
	ts := startServer(t)
	u := ts.addUser("alice", users.PermAll)
	home := ts.home("alice")
	originals := map[string][]byte{}
	for _, tc := range tests {
		data := randomBytes(t, size)
		originals[tc.name] = data
		writeVFS(t, home, tc.name, data)
		p := filepath.Join(ts.storeDir, "alice", tc.name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[envelope.HeaderSize+tc.chunk*encSize+encSize/2] ^= 0x40
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, err := ts.scp(u, dir, "-O", "-q", "R:"+tc.name, "got")
			if err == nil {
				t.Fatalf("scp -O of a damaged file succeeded: %s", out)
			}
			got, rerr := os.ReadFile(filepath.Join(dir, "got"))
			switch {
			case rerr != nil && !tc.wantLocal:
				if !strings.Contains(out, "scp: "+tc.name+": Input/output error") {
					t.Errorf("scp output %q lacks the error line", out)
				}
			case rerr != nil:
			case !tc.wantLocal:
				t.Errorf("local file created (%d bytes) although the damage is in the first read", len(got))
			case len(got) > tc.chunk*envelope.DefaultChunkSize || !bytes.Equal(got, originals[tc.name][:len(got)]):
				t.Errorf("local file of %d bytes is not an authentic prefix before chunk %d", len(got), tc.chunk)
			}
		})
	}
	// An intact file still downloads, on the same server.
	data := randomBytes(t, size+1)
	writeVFS(t, home, "intact", data)
	dir := t.TempDir()
	if out, err := ts.scp(u, dir, "-O", "-p", "R:intact", "got"); err != nil {
		t.Fatalf("scp -O intact: %v %s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "got")); !bytes.Equal(got, data) {
		t.Errorf("intact file: got %d bytes, differ", len(got))
	}
}

func writeVFS(t testing.TB, f *vfs.FS, name string, data []byte) {
	t.Helper()
	fixture.WriteFile(t, f, name, data)
}
