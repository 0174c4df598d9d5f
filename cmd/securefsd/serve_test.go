package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/admin"
)

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestServeLateFailureTearsDown starts serve with a port that is taken
// only for a server started late: serve must fail, and by the time it
// returns every server it started is stopped (its port free again) and the
// admin socket is gone.
func TestServeLateFailureTearsDown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		taken   string // the flag whose address is occupied
		wantErr string
	}{
		{"dav port taken after sftp started", "--dav-addr", "webdav listen"},
		{"pprof port taken after sftp, dav and admin started", "--pprof-addr", "pprof listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			blocker, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer blocker.Close()
			addrs := map[string]string{"--sftp-addr": freeAddr(t), "--dav-addr": freeAddr(t), "--pprof-addr": freeAddr(t)}
			addrs[tc.taken] = blocker.Addr().String()
			args := []string{"securefsd", "--data-dir", dir, "serve", "--insecure-http", "--memory-limit", "0", "--procs", "0", "--log-level", "error"}
			for flag, a := range addrs {
				args = append(args, flag, a)
			}
			var out, logs bytes.Buffer
			err = newApp(strings.NewReader(""), &out, &logs).RunContext(t.Context(), args)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("serve = %v, want an error containing %q\n%s", err, tc.wantErr, logs.String())
			}
			if strings.Contains(out.String(), "ready") {
				t.Errorf("serve printed ready before failing")
			}
			for flag, a := range addrs {
				if flag == tc.taken {
					continue
				}
				ln, err := net.Listen("tcp", a)
				if err != nil {
					t.Errorf("%s %s still taken after serve returned: %v", flag, a, err)
					continue
				}
				ln.Close()
			}
			if _, err := os.Stat(filepath.Join(dir, admin.SocketName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("admin socket left behind: %v", err)
			}
			// The database and store were closed: the CLI opens them itself.
			var lout bytes.Buffer
			if err := newApp(strings.NewReader(""), &lout, &logs).Run([]string{"securefsd", "--data-dir", dir, "user", "list"}); err != nil || !strings.Contains(lout.String(), "securefsd") {
				t.Errorf("user list after the failed serve: %v\n%s", err, lout.String())
			}
		})
	}
}

// TestGroup: a server's failure ends the group; shutdown stops every
// server newest first, waits for all of them, and reports the failure.
func TestGroup(t *testing.T) {
	g := newGroup(t.Context(), slog.New(slog.DiscardHandler))
	var (
		mu      sync.Mutex
		stopped []string
		exited  int
	)
	boom := errors.New("boom")
	start := func(name string, fail error) {
		release := make(chan struct{})
		g.run(func(ctx context.Context) error {
			defer func() { mu.Lock(); exited++; mu.Unlock() }()
			if fail != nil {
				return fail
			}
			<-release
			return net.ErrClosed // what a server returns when stopped: no failure
		}, func(context.Context) error {
			mu.Lock()
			stopped = append(stopped, name)
			mu.Unlock()
			close(release)
			return nil
		})
	}
	start("sftp", nil)
	start("dav", nil)
	start("admin", boom)
	<-g.ctx.Done() // the failing server ended the group
	if err := g.shutdown(time.Minute); !errors.Is(err, boom) {
		t.Errorf("shutdown = %v, want the server's failure", err)
	}
	if got := strings.Join(stopped, ","); got != "admin,dav,sftp" {
		t.Errorf("stop order %s, want newest first", got)
	}
	if exited != 3 {
		t.Errorf("%d of 3 servers exited when shutdown returned", exited)
	}
}
