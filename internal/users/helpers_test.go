package users

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/testutil"
	"golang.org/x/crypto/ssh"
)

var tinyParams = Argon2Params{Time: 1, Memory: 64, Threads: 1}

// fakeClock is an injectable Options.Now.
type fakeClock = testutil.Clock

func newClock() *fakeClock { return testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// sleepRecorder is an injectable DefenderOptions.Sleep that never sleeps.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.delays
	s.delays = nil
	return d
}

// openTest opens a database in a temp dir with tiny Argon2 parameters and
// a fake clock unless opts say otherwise.
// testKey seals the databases of openAt.
var testKey = bytes.Repeat([]byte{7}, KeySize)

func openTest(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.db")
	return openAt(t, path, opts), path
}

func openAt(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	if opts.Argon2 == (Argon2Params{}) {
		opts.Argon2 = tinyParams
	}
	if opts.Now == nil {
		opts.Now = newClock().Now
	}
	if opts.Key == nil {
		// The package's tests run on a sealed database, as serve runs.
		opts.Key = testKey
	}
	var db *DB
	var err error
	if suiteEtcd != nil {
		// The same path opens the same prefix: reopening keeps the data.
		db, err = OpenEtcd(EtcdConfig{Client: suiteEtcd, Prefix: "securefsd" + path + "/u/"}, opts)
	} else {
		db, err = Open(path, opts)
	}
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newKey returns a fresh ed25519 public key and its authorized_keys line.
func newKey(t testing.TB, comment string) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		line += " " + comment
	}
	return pk, line
}

func mustAdd(t testing.TB, db *DB, u User, password string) {
	t.Helper()
	var pw []byte
	if password != "" {
		pw = []byte(password)
	}
	if err := db.Add(t.Context(), u, pw); err != nil {
		t.Fatalf("Add %s: %v", u.Name, err)
	}
}

func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}
