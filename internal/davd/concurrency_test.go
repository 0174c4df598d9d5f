package davd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentClients runs several clients at once on shared and separate
// names (run with -race): every response is a valid status and a file
// always reads back as one complete upload, never a mix.
func TestConcurrentClients(t *testing.T) {
	env := newTestEnv(t)
	versions := [][]byte{bytes.Repeat([]byte("A"), 100_000), bytes.Repeat([]byte("B"), 70_000)}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	req := func(method, path string, body []byte, hdr ...string) (int, string, http.Header) {
		var rd io.Reader = http.NoBody
		if body != nil {
			rd = bytes.NewReader(body)
		}
		r, _ := http.NewRequest(method, env.URL+path, rd)
		r.SetBasicAuth(testUser, testPass)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			errs <- err
			return 0, "", nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			own := fmt.Sprintf("/own-%d", w)
			for i := 0; i < 15; i++ {
				if c, _, _ := req("PUT", "/shared", versions[(w+i)%2]); c != 201 && c != 204 {
					errs <- fmt.Errorf("PUT shared: %d", c)
				}
				if c, b, _ := req("GET", "/shared", nil); c != 200 || (b != string(versions[0]) && b != string(versions[1])) {
					errs <- fmt.Errorf("GET shared: %d, %d bytes of a mix", c, len(b))
				}
				if c, _, _ := req("PROPFIND", "/", nil, "Depth", "1"); c != 207 {
					errs <- fmt.Errorf("PROPFIND: %d", c)
				}
				c, _, h := req("LOCK", own, []byte(fmt.Sprintf(lockBody, "exclusive")))
				if c != 200 && c != 201 {
					errs <- fmt.Errorf("LOCK own: %d", c)
					continue
				}
				tok := h.Get("Lock-Token")
				if c, _, _ := req("PUT", own, versions[0], "If", "("+tok+")"); c != 204 && c != 201 {
					errs <- fmt.Errorf("PUT own with token: %d", c)
				}
				if c, _, _ := req("UNLOCK", own, nil, "Lock-Token", tok); c != 204 {
					errs <- fmt.Errorf("UNLOCK: %d", c)
				}
				if c, _, _ := req("MOVE", own, nil, "Destination", own+"-moved"); c != 201 && c != 204 {
					errs <- fmt.Errorf("MOVE: %d", c)
				}
				if c, _, _ := req("DELETE", own+"-moved", nil); c != 204 {
					errs <- fmt.Errorf("DELETE: %d", c)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	var msgs []string
	for err := range errs {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) > 0 {
		t.Fatalf("%d problems:\n%s", len(msgs), strings.Join(msgs, "\n"))
	}
}

func TestNameLocks(t *testing.T) {
	l := newNameLocks()
	ctx := context.Background()
	r1, err := l.acquire(ctx, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.acquire(ctx, "a", false) // readers share
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		w, err := l.acquire(ctx, "a", true)
		if err == nil {
			close(got)
			w()
		}
	}()
	// A reader arriving while a writer waits queues behind it.
	cctx, cancel := context.WithCancel(ctx)
	readerErr := make(chan error, 1)
	go func() {
		waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.m["a"].waitingWriters == 1 })
		_, err := l.acquire(cctx, "a", false)
		readerErr <- err
	}()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.m["a"].refs == 4 })
	cancel()
	if err := <-readerErr; err == nil {
		t.Fatal("reader got in past a waiting writer")
	}
	select {
	case <-got:
		t.Fatal("writer got in while readers hold the name")
	default:
	}
	r1()
	r2()
	<-got
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.m) == 0 })
	// Pairs in opposite orders do not deadlock.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); r, _ := l.acquirePair(ctx, "x", "y"); r() }()
		go func() { defer wg.Done(); r, _ := l.acquirePair(ctx, "y", "x"); r() }()
	}
	wg.Wait()
}

// waitFor polls cond until it holds (bounded by the test's deadline).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		runtime.Gosched()
	}
}
