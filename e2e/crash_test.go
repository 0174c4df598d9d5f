package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// pathState is what the test knows about one path: the content of the last
// operation the client saw complete ("" = absent) and the contents an
// operation in flight at the crash may have left instead.
type pathState struct {
	acked string
	maybe []string
}

// crashModel records, per path, what a client saw. Safe for concurrent use.
type crashModel struct {
	mu    sync.Mutex
	paths map[string]*pathState
	data  map[string][]byte // content sum -> content
}

func (m *crashModel) state(p string) *pathState {
	s := m.paths[p]
	if s == nil {
		s = &pathState{}
		m.paths[p] = s
	}
	return s
}

// begin notes that an operation may set each path to the given content sum.
func (m *crashModel) begin(content map[string][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, c := range content {
		s := m.state(p)
		k := ""
		if c != nil {
			k = sum(c)
			m.data[k] = c
		}
		s.maybe = append(s.maybe, k)
	}
}

// done notes that the client saw the operation complete.
func (m *crashModel) done(content map[string][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, c := range content {
		s := m.state(p)
		s.acked = ""
		if c != nil {
			s.acked = sum(c)
		}
		s.maybe = nil
	}
}

// crashClient is one of the clients uploading while the server dies.
type crashClient interface {
	put(name string, data []byte) error
	rename(from, to string) error
	mkdir(name string) error
}

type sftpCrashClient struct{ c *sftp.Client }

func (s sftpCrashClient) put(name string, data []byte) error { return sftpPut(s.c, name, data) }
func (s sftpCrashClient) rename(from, to string) error       { return s.c.PosixRename(from, to) }
func (s sftpCrashClient) mkdir(name string) error            { return s.c.Mkdir(name) }

type davCrashClient struct{ d *davClient }

func (d davCrashClient) put(name string, data []byte) error { return d.d.put("/"+name, data) }
func (d davCrashClient) rename(from, to string) error {
	code, b, err := d.d.do("MOVE", "/"+from, nil, "Destination: "+d.d.srv.DAVURL+"/"+to, "Overwrite: T")
	if err != nil {
		return err
	}
	if code != http.StatusCreated && code != http.StatusNoContent {
		return fmt.Errorf("MOVE %s: %d %s", from, code, b)
	}
	return nil
}
func (d davCrashClient) mkdir(name string) error {
	code, b, err := d.d.do("MKCOL", "/"+name, nil)
	if err != nil {
		return err
	}
	if code != http.StatusCreated {
		return fmt.Errorf("MKCOL %s: %d %s", name, code, b)
	}
	return nil
}

// TestCrashDuringUploads kills the server with SIGKILL while 16 clients (12
// SFTP, 4 WebDAV) upload, replace and rename files, restarts it on the same
// data directory and checks that every upload a client saw complete is
// intact, every other path holds its old content or nothing (never a half
// file under a final name), verify is clean and the user database opens.
// Under scripts/soak.sh (SECUREFSD_SOAK=N) it runs N kill/restart cycles on
// the same data, each killing at a random point.
func TestCrashDuringUploads(t *testing.T) {
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	m := &crashModel{paths: map[string]*pathState{}, data: map[string][]byte{}}
	cycles := soakScale()
	for cycle := range cycles {
		killAfter := int64(150)
		if cycles > 1 {
			killAfter = 20 + rand.Int64N(400)
		}
		crashCycle(t, srv, key, m, cycle, killAfter)
		if t.Failed() {
			return
		}
	}
	// The server serves normally: a new upload works and reads back.
	c := newSFTP(t, srv, "alice", key)
	data := randBytes(100 << 10)
	if err := sftpPut(c, "after-crash", data); err != nil {
		t.Fatal(err)
	}
	if got, err := sftpGet(c, "after-crash"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("upload after restart: %v", err)
	}
	alive(t, srv, "alice", "nyvpr-pw-1-e2e-pass", key)
}

// crashCycle runs the clients, kills the server after killAfter completed
// operations, restarts it and checks every path the model knows.
func crashCycle(t *testing.T, srv *Server, key string, m *crashModel, cycle int, killAfter int64) {
	t.Helper()
	const clients, sftpClients = 16, 12
	var (
		killed   atomic.Bool
		acked    atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		preKill  []error
		stopping = make(chan struct{})
	)
	cls := make([]crashClient, clients)
	for i := range cls {
		if i < sftpClients {
			c, err := openSFTP(srv, "alice", keyAuth(t, key))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cls[i] = sftpCrashClient{c}
		} else {
			d := newDAV(t, srv, "alice", "nyvpr-pw-1-e2e-pass", "")
			defer d.hc.CloseIdleConnections()
			cls[i] = davCrashClient{d}
		}
		if cycle == 0 {
			if err := cls[i].mkdir(fmt.Sprintf("c%02d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, c := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(cycle)))
			dir := fmt.Sprintf("c%02d", i)
			fail := func(err error) bool {
				if err == nil {
					return false
				}
				if !killed.Load() {
					errMu.Lock()
					preKill = append(preKill, fmt.Errorf("client %d: %w", i, err))
					errMu.Unlock()
				}
				return true
			}
			for n := 0; n < 10000; n++ {
				select {
				case <-stopping:
					return
				default:
				}
				data := randBytes(rng.IntN(300 << 10))
				final := fmt.Sprintf("%s/f%d-%04d", dir, cycle, n)
				switch n % 3 {
				case 0: // upload straight to the final name
					op := map[string][]byte{final: data}
					m.begin(op)
					if fail(c.put(final, data)) {
						return
					}
					m.done(op)
				case 1: // upload to a temporary name, then rename (rclone's way)
					part := fmt.Sprintf("%s/p%d-%04d.partial", dir, cycle, n)
					op := map[string][]byte{part: data}
					m.begin(op)
					if fail(c.put(part, data)) {
						return
					}
					m.done(op)
					op = map[string][]byte{part: nil, final: data}
					m.begin(op)
					if fail(c.rename(part, final)) {
						return
					}
					m.done(op)
				case 2: // replace an existing file
					op := map[string][]byte{dir + "/stable": data}
					m.begin(op)
					if fail(c.put(dir+"/stable", data)) {
						return
					}
					m.done(op)
				}
				acked.Add(1)
			}
		}()
	}
	// Kill in the middle of the traffic: after enough completed operations.
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d completed uploads", killAfter), func() bool { return acked.Load() >= killAfter })
	killed.Store(true)
	srv.Kill(t)
	close(stopping)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		t.Fatal("clients did not notice the server's death within 2 minutes")
	}
	for _, err := range preKill {
		t.Errorf("error before the crash: %v", err)
	}
	t.Logf("cycle %d: killed after %d completed operations", cycle, acked.Load())

	srv.Restart(t)

	// The user database opens and lists the user.
	if out, err := srv.CLI(t, "user", "list"); err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("user list after the crash: %v\n%s", err, out)
	}

	// Every path holds what the model allows, over a fresh SFTP session.
	c, err := openSFTP(srv, "alice", keyAuth(t, key))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for p, s := range m.paths {
		got, err := sftpGet(c, p)
		k := ""
		switch {
		case err == nil:
			k = sum(got)
		case errors.Is(err, fs.ErrNotExist) || os.IsNotExist(err):
		default:
			t.Errorf("%s after the crash: %v", p, err)
			continue
		}
		if k != s.acked && !slices.Contains(s.maybe, k) {
			t.Errorf("%s after the crash: %s (%d bytes); the client saw %s complete, may also be %s",
				p, short(k), len(got), short(s.acked), shortAll(s.maybe))
		}
		// What is there now is what the next cycle starts from.
		s.acked, s.maybe = k, nil
	}
	// No other names appeared (half files under names nobody wrote).
	for i := range clients {
		dir := fmt.Sprintf("c%02d", i)
		fis, err := c.ReadDir(dir)
		if err != nil {
			t.Fatalf("list %s: %v", dir, err)
		}
		for _, fi := range fis {
			if _, ok := m.paths[dir+"/"+fi.Name()]; !ok {
				t.Errorf("unexpected entry %s/%s (%d bytes) after the crash", dir, fi.Name(), fi.Size())
			}
		}
	}
	t.Logf("cycle %d: checked %d paths", cycle, len(m.paths))

	// verify is clean, apart from uploads reported as interrupted.
	damaged, failed, out := verify(t, srv)
	for _, d := range damaged {
		if !strings.Contains(d, ".securefsd-tmp") && !strings.Contains(out, "interrupted") {
			t.Errorf("verify after the crash reports %s damaged:\n%s", d, out)
		}
	}
	if failed && len(damaged) == 0 {
		t.Errorf("verify failed:\n%s", out)
	}
	// Temporary files of the dead uploads are not left behind forever.
	leftovers := 0
	_ = filepath.WalkDir(filepath.Join(srv.DataDir, "store", "alice"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, ".securefsd-tmp") {
			leftovers++
		}
		return nil
	})
	t.Logf("cycle %d: %d temporary files of interrupted uploads left in the store after restart", cycle, leftovers)
}

func short(k string) string {
	if k == "" {
		return "absent"
	}
	return k[:12]
}

func shortAll(ks []string) string {
	var s []string
	for _, k := range ks {
		s = append(s, short(k))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestCrashDuringScpOverwrites kills the server while OpenSSH scp clients
// (SFTP mode, the default) overwrite existing files. scp opens an existing
// file without truncating it, writes, then sets the size, so this is the
// in-place write path. After the restart every file must hold one of the
// versions its client sent (the last it saw complete, or the one in
// flight), or fail to read with an integrity error that verify reports:
// never a silent mix of two versions.
func TestCrashDuringScpOverwrites(t *testing.T) {
	NeedTool(t, "scp")
	const clients = 4
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	versions := make([][2]string, clients) // local files A and B per client
	for i := range clients {
		for v := range 2 {
			versions[i][v] = RandomFile(t, int64(512<<10+i*4096+v))
		}
		b, err := os.ReadFile(versions[i][0])
		if err != nil {
			t.Fatal(err)
		}
		if err := sftpPut(c, fmt.Sprintf("scp%d", i), b); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	m := &crashModel{paths: map[string]*pathState{}, data: map[string][]byte{}}
	for i := range clients {
		b, _ := os.ReadFile(versions[i][0])
		m.done(map[string][]byte{fmt.Sprintf("scp%d", i): b})
	}
	var (
		acked   atomic.Int64
		killed  atomic.Bool
		wg      sync.WaitGroup
		errMu   sync.Mutex
		preKill []string
	)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("scp%d", i)
			for n := 1; n < 1000 && !killed.Load(); n++ {
				src := versions[i][n%2]
				b, _ := os.ReadFile(src)
				op := map[string][]byte{name: b}
				m.begin(op)
				args := append(srv.SSHOpts(key), "-q", "-P", srv.SFTPPort, src, "alice@"+srv.SFTPHost+":"+name)
				out, err := exec.Command("scp", args...).CombinedOutput()
				if err != nil {
					if !killed.Load() {
						errMu.Lock()
						preKill = append(preKill, fmt.Sprintf("scp %d: %v: %s", i, err, out))
						errMu.Unlock()
					}
					return
				}
				m.done(op)
				acked.Add(1)
			}
		}()
	}
	killWhenAcked(t, srv, "12 completed scp uploads", &acked, 12, &killed, &wg)
	for _, e := range preKill {
		t.Errorf("before the crash: %s", e)
	}
	srv.Restart(t)
	c = newSFTP(t, srv, "alice", key)
	var broken []string
	for p, s := range m.paths {
		got, ok := readAfterCrash(t, c, p, &broken)
		if !ok {
			continue
		}
		if k := sum(got); k != s.acked && !slices.Contains(s.maybe, k) {
			t.Errorf("%s after the crash holds %d bytes that are none of the versions its client sent (a mix of two uploads)", p, len(got))
		}
	}
	verifyListsBroken(t, srv, broken)
	t.Logf("%d scp uploads completed before the kill; %d files unreadable after", acked.Load(), len(broken))
}

// TestCrashDuringRandomWrites kills the server while SFTP clients write 4
// KiB blocks at random offsets into existing 4 MiB files (64 chunks, twice
// what a file's chunk cache holds), as a database or a VM image is written:
// the fast path writes chunks out behind the round trip (write-behind,
// docs/SFTP.md) long before the CLOSE that never comes. After the restart
// every aligned 4 KiB block holds its original bytes or one of the blocks
// a client wrote there, and the size is unchanged; or the file fails to
// read with an integrity error and verify lists it. Never bytes nobody
// wrote.
func TestCrashDuringRandomWrites(t *testing.T) {
	const (
		clients = 2
		size    = 4 << 20
		block   = 4 << 10
	)
	srv := StartServer(t)
	key := srv.AddUser(t, "alice", "nyvpr-pw-1-e2e-pass")
	c := newSFTP(t, srv, "alice", key)
	// written[i][b] holds the original block b of file i, then every block
	// a client sent there.
	written := make([][][][]byte, clients)
	for i := range clients {
		data := randBytes(size)
		if err := sftpPut(c, fmt.Sprintf("image%d", i), data); err != nil {
			t.Fatal(err)
		}
		written[i] = make([][][]byte, size/block)
		for b := range written[i] {
			written[i][b] = [][]byte{data[b*block : (b+1)*block]}
		}
	}
	c.Close()
	var (
		acked   atomic.Int64
		killed  atomic.Bool
		mu      sync.Mutex
		wg      sync.WaitGroup
		preKill []error
	)
	for i := range clients {
		cl := newSFTP(t, srv, "alice", key)
		f, err := cl.OpenFile(fmt.Sprintf("image%d", i), os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for !killed.Load() {
				b := rng.IntN(size / block)
				p := randBytes(block)
				// Noted before it is sent: a WRITE in flight at the kill may
				// or may not have reached the file.
				mu.Lock()
				written[i][b] = append(written[i][b], p)
				mu.Unlock()
				if _, err := f.WriteAt(p, int64(b*block)); err != nil {
					if !killed.Load() {
						mu.Lock()
						preKill = append(preKill, fmt.Errorf("client %d: %w", i, err))
						mu.Unlock()
					}
					return
				}
				acked.Add(1)
			}
		}()
	}
	// Enough writes that every file's cache has filled and written out
	// behind the round trip many times (64 chunks, a cache of 32).
	killWhenAcked(t, srv, "3,000 acknowledged random writes", &acked, 3000, &killed, &wg)
	for _, err := range preKill {
		t.Errorf("before the crash: %v", err)
	}
	t.Logf("%d random writes acknowledged before the kill", acked.Load())
	srv.Restart(t)
	c = newSFTP(t, srv, "alice", key)
	var broken []string
	for i := range clients {
		name := fmt.Sprintf("image%d", i)
		got, ok := readAfterCrash(t, c, name, &broken)
		if !ok {
			continue
		}
		if len(got) != size {
			t.Errorf("%s after the crash: %d bytes, want %d", name, len(got), size)
			continue
		}
		bad, changed := 0, 0
		for b, versions := range written[i] {
			have := got[b*block : (b+1)*block]
			switch j := slices.IndexFunc(versions, func(v []byte) bool { return bytes.Equal(v, have) }); {
			case j < 0:
				bad++
			case j > 0:
				changed++
			}
		}
		t.Logf("%s after the crash: %d of %d blocks hold a client's write, the others their original bytes", name, changed, len(written[i]))
		if bad > 0 {
			t.Errorf("%s after the crash: %d blocks of 4 KiB hold bytes no client wrote there", name, bad)
		}
	}
	verifyListsBroken(t, srv, broken)
}

// killWhenAcked waits until the clients saw n operations complete, marks
// them killed (so their errors from then on are expected), kills the
// server and waits for the clients to stop.
func killWhenAcked(t *testing.T, srv *Server, what string, acked *atomic.Int64, n int64, killed *atomic.Bool, clients *sync.WaitGroup) {
	t.Helper()
	waitFor(t, 2*time.Minute, what, func() bool { return acked.Load() >= n })
	killed.Store(true)
	srv.Kill(t)
	clients.Wait()
}

// readAfterCrash downloads alice's file name after a crash. A read that
// fails its integrity check (an interrupted in-place write) is noted in
// broken, as verify names it; any other failure fails the test.
func readAfterCrash(t *testing.T, c *sftp.Client, name string, broken *[]string) ([]byte, bool) {
	t.Helper()
	got, err := sftpGet(c, name)
	switch {
	case err == nil:
		return got, true
	case strings.Contains(err.Error(), "integrity"):
		*broken = append(*broken, "alice/"+name)
		t.Logf("%s: integrity error after the crash (an interrupted in-place write)", name)
	default:
		t.Errorf("%s after the crash: %v", name, err)
	}
	return nil, false
}

// verifyListsBroken checks that verify lists exactly the files whose
// reads failed their integrity check.
func verifyListsBroken(t *testing.T, srv *Server, broken []string) {
	t.Helper()
	damaged, _, out := verify(t, srv)
	slices.Sort(damaged)
	slices.Sort(broken)
	if !slices.Equal(damaged, broken) {
		t.Errorf("verify lists %q, reads failed for %q\n%s", damaged, broken, out)
	}
}
