package vfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/securefsd/securefsd/internal/blob"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/index"
)

// TestErrorMapping: disk and envelope errors become the package's
// categories, with the client path and nothing of the disk path.
func TestErrorMapping(t *testing.T) {
	_, f := newFS(t)
	h := f.h
	disk := func(err error) error { return &fs.PathError{Op: "openat", Path: "/srv/store/alice/x", Err: err} }
	tests := []struct {
		in   error
		want error
		os   func(error) bool
	}{
		{disk(syscall.ENOENT), fs.ErrNotExist, os.IsNotExist},
		{disk(syscall.EEXIST), fs.ErrExist, os.IsExist},
		{disk(syscall.EACCES), fs.ErrPermission, os.IsPermission},
		{disk(syscall.EPERM), fs.ErrPermission, os.IsPermission},
		{disk(syscall.ENOSPC), ErrNoSpace, nil},
		{disk(syscall.EDQUOT), ErrNoSpace, nil},
		{disk(syscall.ENOTEMPTY), ErrNotEmpty, nil},
		{disk(syscall.EISDIR), ErrIsDir, nil},
		{disk(syscall.ENOTDIR), ErrNotDir, nil},
		{disk(syscall.ELOOP), fs.ErrPermission, os.IsPermission},
		{disk(syscall.ENAMETOOLONG), ErrInvalidName, nil},
		{disk(h.s.errEscape), fs.ErrPermission, os.IsPermission},
		{fmt.Errorf("envelope: chunk 3: %w", envelope.ErrAuth), ErrIntegrity, nil},
		{envelope.ErrTruncated, ErrIntegrity, nil},
		{envelope.ErrFormat, ErrIntegrity, nil},
		{envelope.ErrUnknownKey, ErrIntegrity, nil},
		{ErrQuota, ErrQuota, nil},
		{disk(syscall.EMFILE), ErrTooManyHandles, nil},
		{disk(syscall.ENFILE), ErrTooManyHandles, nil},
		{disk(syscall.EFBIG), ErrFileTooLarge, nil},
		{disk(syscall.EIO), syscall.EIO, nil},
		{fmt.Errorf("index: get: %w (context deadline exceeded at 127.0.0.1:2379)", index.ErrUnavailable), ErrUnavailable, nil},
		{fmt.Errorf("s3blob: object store unreachable: put /srv/store/x: %w", blob.ErrUnavailable), ErrUnavailable, nil},
		{disk(errors.New("weird thing at /srv/store/alice/x")), errInternal, nil},
	}
	for _, tc := range tests {
		t.Run(tc.in.Error(), func(t *testing.T) {
			err := h.pathErr("open", "/client/name", tc.in)
			mustPathErr(t, err, "/client/name")
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v -> %v, want %v", tc.in, err, tc.want)
			}
			if tc.os != nil && !tc.os(err) {
				t.Fatalf("%v: os.IsX false", err)
			}
			if strings.Contains(err.Error(), "/srv/store") {
				t.Fatalf("disk path leaked: %v", err)
			}
		})
	}
	// Integrity errors keep the envelope cause.
	err := h.pathErr("read", "x", envelope.ErrAuth)
	if !errors.Is(err, envelope.ErrAuth) {
		t.Fatalf("envelope cause lost: %v", err)
	}
	// Invalid names match fs.ErrPermission; reserved names are a bare one.
	_, err = f.Stat("a\x00b")
	if !errors.Is(err, ErrInvalidName) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("NUL name: %v", err)
	}
	_, err = f.Stat(".securefsd-meta")
	if !os.IsPermission(err) {
		t.Fatalf("reserved name: %v", err)
	}
	if _, err := f.Stat("missing"); !os.IsNotExist(err) {
		t.Fatalf("missing: %v", err)
	}
}

// TestMetaPersistence: properties are written through at once; hashes
// written behind reach the disk by Close.
func TestMetaPersistence(t *testing.T) {
	ts, f := newFS(t)
	writeFile(t, f, "x", []byte("data"))
	f.UpdateMeta("x", func(m *Meta) error { m.Props = map[string]string{"{a}b": "c"}; return nil })
	// A second store on the same directory sees the properties already
	// (version 2's index admits one store at a time: see below).
	if testStorage == StorageV1 {
		s2, err := NewStore(ts.dir, ts.with(Options{UploadHashes: testUploadHashes}))
		if err != nil {
			t.Fatal(err)
		}
		f2, _ := s2.Home("alice", HomeOptions{Perm: PermAll})
		if m, _ := f2.Meta("x"); m.Props["{a}b"] != "c" {
			t.Fatalf("props not written through: %+v", m)
		}
		s2.Close()
	}
	writeFile(t, f, "y", []byte("more"))
	ts.Store.Close()
	s3, _ := NewStore(ts.dir, ts.with(Options{UploadHashes: testUploadHashes}))
	defer s3.Close()
	f3, _ := s3.Home("alice", HomeOptions{Perm: PermAll})
	if m, _ := f3.Meta("y"); m.Hashes == nil || m.Hashes.Size != 4 {
		t.Fatalf("hashes not persisted at close: %+v", m)
	}
	if m, _ := f3.Meta("x"); m.Props["{a}b"] != "c" || m.Hashes == nil {
		t.Fatalf("x meta after reopen: %+v", m)
	}
}

// TestSidecarFormatErrors: a sidecar that authenticates but holds no
// sidecar JSON, or one of another version, gives ErrSidecar (reported as
// ErrIntegrity), not an envelope format error.
func TestSidecarFormatErrors(t *testing.T) {
	v1Only(t)
	for _, tc := range []struct{ name, plain string }{
		{"not json", "not json at all"},
		{"version 2", `{"v":2,"entries":{"x":{"props":{"{a}b":"c"}}}}`},
		{"no version", `{"entries":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, f := newFS(t)
			f.Mkdir("d", 0o755)
			writeFile(t, f, "d/x", []byte("x"))
			// A file of the home, encrypted like a sidecar, put in place
			// of one behind the store's back.
			writeFile(t, f, "planted", []byte(tc.plain))
			home := filepath.Join(ts.dir, "alice")
			if err := os.Rename(filepath.Join(home, "planted"), filepath.Join(home, "d", metaFileName)); err != nil {
				t.Fatal(err)
			}
			f2 := ts.reopen(t, "alice")
			_, err := f2.Meta("d/x")
			if !errors.Is(err, ErrSidecar) || !errors.Is(err, ErrIntegrity) {
				t.Fatalf("Meta = %v, want ErrSidecar and ErrIntegrity", err)
			}
			if errors.Is(err, envelope.ErrFormat) {
				t.Fatalf("Meta = %v poses as an envelope format error", err)
			}
		})
	}
}
