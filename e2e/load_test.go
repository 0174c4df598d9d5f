package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/testutil"
)

// loadSession is one client session of the load test: SFTP or WebDAV.
type loadSession struct {
	id   int
	user string
	sftp *sftp.Client // nil for WebDAV sessions
	dav  *davClient
	dir  string
	// files this session wrote and still owns, name -> content.
	files map[string][]byte
}

func (s *loadSession) put(name string, data []byte) error {
	if s.sftp != nil {
		return sftpPut(s.sftp, name, data)
	}
	return s.dav.put("/"+name, data)
}

func (s *loadSession) get(name string) ([]byte, error) {
	if s.sftp != nil {
		return sftpGet(s.sftp, name)
	}
	return s.dav.get("/" + name)
}

func (s *loadSession) rename(from, to string) error {
	if s.sftp != nil {
		return s.sftp.PosixRename(from, to)
	}
	code, b, err := s.dav.do("MOVE", "/"+from, nil, "Destination: "+s.dav.srv.DAVURL+"/"+to, "Overwrite: T")
	if err == nil && code != http.StatusCreated && code != http.StatusNoContent {
		err = fmt.Errorf("MOVE: %d %s", code, b)
	}
	return err
}

func (s *loadSession) remove(name string) error {
	if s.sftp != nil {
		return s.sftp.Remove(name)
	}
	code, b, err := s.dav.do("DELETE", "/"+name, nil)
	if err == nil && code != http.StatusNoContent && code != http.StatusOK {
		err = fmt.Errorf("DELETE: %d %s", code, b)
	}
	return err
}

func (s *loadSession) list() (int, error) {
	if s.sftp != nil {
		fis, err := s.sftp.ReadDir(s.dir)
		return len(fis), err
	}
	code, b, err := s.dav.do("PROPFIND", "/"+s.dir+"/", nil, "Depth: 1")
	if err == nil && code != http.StatusMultiStatus {
		err = fmt.Errorf("PROPFIND: %d %s", code, b)
	}
	return bytes.Count(b, []byte("<D:response")) + bytes.Count(b, []byte("<d:response")) - 1, err
}

// round runs ops operations: upload, read back, sometimes rename, list and
// delete; every result is checked against what the session wrote.
func (s *loadSession) round(rng *rand.Rand, round, ops int) error {
	for k := range ops {
		name := fmt.Sprintf("%s/r%d-%d", s.dir, round, k)
		data := randBytes(rng.IntN(160 << 10))
		if err := s.put(name, data); err != nil {
			return fmt.Errorf("put %s: %w", name, err)
		}
		s.files[name] = data
		got, err := s.get(name)
		if err != nil {
			return fmt.Errorf("get %s: %w", name, err)
		}
		if !bytes.Equal(got, data) {
			return fmt.Errorf("get %s: data mismatch (%d bytes, want %d)", name, len(got), len(data))
		}
		switch k % 4 {
		case 1:
			to := name + ".moved"
			if err := s.rename(name, to); err != nil {
				return fmt.Errorf("rename %s: %w", name, err)
			}
			s.files[to] = data
			delete(s.files, name)
		case 2:
			if n, err := s.list(); err != nil || n != len(s.files) {
				return fmt.Errorf("list %s: %d entries, want %d: %v", s.dir, n, len(s.files), err)
			}
		case 3:
			if err := s.remove(name); err != nil {
				return fmt.Errorf("delete %s: %w", name, err)
			}
			delete(s.files, name)
		}
	}
	return nil
}

// TestLoad runs 64 concurrent sessions (32 SFTP over pkg/sftp, 32 WebDAV
// over net/http; 4 users) through three rounds of uploads, reads, renames,
// listings and deletes. It wants zero errors and zero data
// mismatches; the files of every session are then read back over the
// other protocol; the server's resident memory after the third round may
// not exceed 1.5 times that after the second (a generous ratio: a leak per
// operation grows it by the round's volume); and once every session is
// closed the server's goroutines and file descriptors return to where they
// were before the load (polled, no sleeps).
func TestLoad(t *testing.T) {
	const sessions, users = 64, 4
	ops := 4 * soakScale()
	if testing.Short() {
		ops = 2
	}
	srv, pprofAddr := startWithPprof(t)
	auths := make([]ssh.AuthMethod, users)
	for u := range users {
		auths[u] = keyAuth(t, srv.AddUser(t, fmt.Sprintf("load%d", u), fmt.Sprintf("load-pw-%d-e2e-secret", u)))
	}
	// One WebDAV login per user first: later requests hit the verified-password
	// cache instead of running 32 Argon2id checks at once.
	for u := range users {
		d := newDAV(t, srv, fmt.Sprintf("load%d", u), fmt.Sprintf("load-pw-%d-e2e-secret", u), "")
		if code, b, err := d.do("PROPFIND", "/", nil, "Depth: 0"); err != nil || code != http.StatusMultiStatus {
			t.Fatalf("PROPFIND as load%d: %d %v %s", u, code, err, b)
		}
		d.hc.CloseIdleConnections()
	}
	baseG, baseFD := goroutines(t, pprofAddr), fdCount(t, srv.Pid())

	ss := make([]*loadSession, sessions)
	var setup sync.WaitGroup
	var setupErr atomic.Value
	for i := range ss {
		u := i % users
		s := &loadSession{id: i, user: fmt.Sprintf("load%d", u), dir: fmt.Sprintf("s%02d", i), files: map[string][]byte{}}
		s.dav = newDAV(t, srv, s.user, fmt.Sprintf("load-pw-%d-e2e-secret", u), "")
		ss[i] = s
		setup.Add(1)
		go func() {
			defer setup.Done()
			if (i/users)%2 == 0 {
				c, err := openSFTP(srv, s.user, auths[u])
				if err != nil {
					setupErr.Store(err)
					return
				}
				s.sftp = c
				if err := c.Mkdir(s.dir); err != nil {
					setupErr.Store(err)
				}
				return
			}
			if code, b, err := s.dav.do("MKCOL", "/"+s.dir, nil); err != nil || code != http.StatusCreated {
				setupErr.Store(fmt.Errorf("MKCOL: %d %v %s", code, err, b))
			}
		}()
	}
	setup.Wait()
	if err := setupErr.Load(); err != nil {
		t.Fatalf("opening 64 sessions: %v", err)
	}

	runRound := func(round int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		for _, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(s.id), uint64(round)))
				if err := s.round(rng, round, ops); err != nil {
					proto := "webdav"
					if s.sftp != nil {
						proto = "sftp"
					}
					errs <- fmt.Errorf("session %d (%s, %s): %w", s.id, proto, s.user, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	// Round 1 warms up (buffer pools, caches, TLS sessions); rounds 2 and 3
	// are equal and must leave the resident memory about where it was.
	start := time.Now()
	resetPeakRSS(t, srv.Pid())
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("SECUREFSD_LOAD_ROUNDS")); err == nil && n > 3 {
		rounds = n
	}
	rss := make([]int64, rounds+1)
	live := make([]int64, rounds+1)
	for r := 1; r <= rounds; r++ {
		runRound(r)
		rss[r] = procKB(t, srv.Pid(), "VmRSS")
		live[r] = liveHeap(t, pprofAddr) >> 10
	}
	if out := os.Getenv("SECUREFSD_LOAD_HEAP_PROFILE"); out != "" {
		// For `go tool pprof BINARY FILE`: where the live heap is.
		saveURL(t, "http://"+pprofAddr+"/debug/pprof/heap?gc=1", out)
	}
	hwm := procKB(t, srv.Pid(), "VmHWM")
	t.Logf("%d rounds x %d sessions x %d ops in %v; server RSS after each round %v KiB; live heap after GC %v KiB; peak RSS %d KiB",
		rounds, sessions, ops, time.Since(start).Round(time.Millisecond), rss[1:], live[1:], hwm)
	if rss[rounds] > rss[rounds-1]*3/2 {
		t.Errorf("server RSS grew from %d KiB to %d KiB between two equal rounds", rss[rounds-1], rss[rounds])
	}
	if live[rounds] > live[rounds-1]*3/2+4<<10 {
		t.Errorf("server live heap grew from %d KiB to %d KiB between two equal rounds", live[rounds-1], live[rounds])
	}

	// Cross-protocol: every file a session left is read back by the other protocol.
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name, want := range s.files {
				var got []byte
				var err error
				if s.sftp != nil {
					got, err = s.dav.get("/" + name) // the session's own user, over WebDAV
				} else {
					got, err = peerSFTP(ss, s).get(name)
				}
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("session %d: %s over the other protocol: %v (equal=%v)", s.id, name, err, bytes.Equal(got, want))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Close everything; the server's goroutines and descriptors come back down.
	for _, s := range ss {
		if s.sftp != nil {
			s.sftp.Close()
		}
		s.dav.hc.CloseIdleConnections()
	}
	var g, fds int
	waitFor(t, 30*time.Second, "the server's goroutines and descriptors to return to their level before the load", func() bool {
		g, fds = goroutines(t, pprofAddr), fdCount(t, srv.Pid())
		return g <= baseG+10 && fds <= baseFD+5
	})
	t.Logf("goroutines %d (before %d), descriptors %d (before %d)", g, baseG, fds, baseFD)
}

func saveURL(t testing.TB, url, path string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// peerSFTP returns an SFTP session of the same user as s.
func peerSFTP(ss []*loadSession, s *loadSession) *loadSession {
	for _, o := range ss {
		if o.sftp != nil && o.user == s.user {
			return o
		}
	}
	panic("no SFTP session for " + s.user)
}

// startWithPprof starts a server with its (hidden, loopback-only) pprof
// endpoint and returns the endpoint's address.
func startWithPprof(t testing.TB, opts ...ServerOption) (*Server, string) {
	t.Helper()
	srv := StartServer(t, append(opts, WithServeArgs("--pprof-addr", "127.0.0.1:0"))...)
	addr := ""
	waitFor(t, 10*time.Second, "the pprof address in the log", func() bool {
		for _, r := range records(srv, func(r testutil.Record) bool { return r.Message == "pprof" }) {
			addr = r.Attr("addr")
		}
		return addr != ""
	})
	return srv, addr
}

var totalAlloc = regexp.MustCompile(`# TotalAlloc = (\d+)`)

var heapAlloc = regexp.MustCompile(`# HeapAlloc = (\d+)`)

// liveHeap is the server's live heap in bytes right after a forced GC.
func liveHeap(t testing.TB, addr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := heapAlloc.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no HeapAlloc in the heap profile")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// allocated is the server's cumulative heap allocation in bytes
// (runtime.MemStats.TotalAlloc, from pprof): the difference between two
// readings is what the server allocated in between, freed or not.
func allocated(t testing.TB, addr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := totalAlloc.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no TotalAlloc in the heap profile")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

// goroutines reads the server's goroutine count from its pprof endpoint.
func goroutines(t testing.TB, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		t.Fatal(err)
	}
	m := goroutineTotal.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no goroutine total in pprof output: %.200s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// fdCount is the number of open descriptors of process pid.
func fdCount(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
