package users

import (
	"fmt"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/securefsd/securefsd/internal/testutil"
)

// suiteEtcd is set when SECUREFSD_TEST_USERS=etcd: openAt then opens every
// database of the package's tests on the etcd engine, in a 3-member
// cluster started once for the run (tests that are about the bbolt file
// skip themselves: skipOnEtcd). The etcd engine's own tests
// (etcd_test.go) run in every run, each on a cluster of its own.
var suiteEtcd *clientv3.Client

func TestMain(m *testing.M) {
	if os.Getenv("SECUREFSD_TEST_USERS") != "etcd" {
		os.Exit(m.Run())
	}
	tb := &mainTB{}
	code := func() int {
		defer tb.cleanup()
		c := testutil.StartEtcd(tb, 3)
		cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cl.Close()
		suiteEtcd = cl
		return m.Run()
	}()
	os.Exit(code)
}

// skipOnEtcd skips a test about the single-node file when the suite runs
// on etcd.
func skipOnEtcd(t testing.TB) {
	t.Helper()
	if suiteEtcd != nil {
		t.Skip("about the bbolt file; SECUREFSD_TEST_USERS=etcd runs the suite on etcd")
	}
}

// mainTB is the testing.TB testutil.StartEtcd gets in TestMain, where
// there is no test yet: the methods it calls (Helper, Fatal, Fatalf,
// TempDir, Cleanup) are implemented; any other would panic on the nil
// embedded TB, which only satisfies the interface.
type mainTB struct {
	testing.TB
	cleanups []func()
}

func (m *mainTB) Helper() {}

func (m *mainTB) Fatal(args ...any) {
	m.cleanup()
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(1)
}

func (m *mainTB) Fatalf(format string, args ...any) { m.Fatal(fmt.Sprintf(format, args...)) }

func (m *mainTB) TempDir() string {
	d, err := os.MkdirTemp("", "users-etcd-")
	if err != nil {
		m.Fatal(err)
	}
	m.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (m *mainTB) Cleanup(f func()) { m.cleanups = append(m.cleanups, f) }

func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
	m.cleanups = nil
}
