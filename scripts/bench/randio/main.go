// Command randio is the SFTP load helper of scripts/bench.sh. It speaks to
// one SFTP server through github.com/pkg/sftp over golang.org/x/crypto/ssh and
// prints one JSON object on stdout:
//
//	randio -mode read  -path f -secs 3   # 4 KiB ReadAt at random offsets, one at a time
//	randio -mode write -path f -secs 3   # 4 KiB WriteAt at random offsets, one at a time
//	randio -mode mkfiles -path d -n 10000 -size 64   # fill a directory for the listing workload
//
// Reads and writes are issued with -qd goroutines (default 1, so the figure is
// the round-trip latency of one request: ops/s = 1/latency). Offsets are
// multiples of -bs unless -unaligned is set, which makes a block straddle two
// at-rest chunks more often. The file must exist and be at least -bs bytes;
// its size is taken from Stat. It is a benchmark tool, so it accepts any host
// key.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

type result struct {
	Mode       string  `json:"mode"`
	Ops        int64   `json:"ops"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
}

func main() {
	var (
		addr      = flag.String("addr", "127.0.0.1:22", "SFTP server host:port")
		user      = flag.String("user", "bench", "user name")
		keyFile   = flag.String("key", "", "private key file (OpenSSH format, no passphrase)")
		password  = flag.String("password", "", "password (used if -key is empty)")
		cipher    = flag.String("cipher", "aes128-gcm@openssh.com", "SSH cipher")
		kex       = flag.String("kex", "curve25519-sha256", "SSH key exchange")
		mode      = flag.String("mode", "read", "read, write or mkfiles")
		filePath  = flag.String("path", "", "remote file (read, write) or directory (mkfiles)")
		bs        = flag.Int("bs", 4096, "block size of one read or write")
		secs      = flag.Float64("secs", 3, "duration of a read or write run in seconds")
		qd        = flag.Int("qd", 1, "requests in flight (goroutines)")
		unaligned = flag.Bool("unaligned", false, "random byte offsets instead of multiples of -bs")
		seed      = flag.Uint64("seed", 1, "random seed")
		n         = flag.Int("n", 10000, "mkfiles: number of files")
		size      = flag.Int("size", 64, "mkfiles: bytes per file")
		conc      = flag.Int("conc", 16, "mkfiles: files created in parallel")
		maxSecs   = flag.Float64("max-secs", 0, "mkfiles: stop creating after this many seconds (0: no limit)")
	)
	flag.Parse()
	if *filePath == "" {
		fatal(errors.New("-path is required"))
	}
	client, closeAll, err := dial(*addr, *user, *keyFile, *password, *cipher, *kex)
	if err != nil {
		fatal(err)
	}
	defer closeAll()

	var res result
	switch *mode {
	case "read", "write":
		res, err = randomIO(client, *mode, *filePath, *bs, *qd, *unaligned, *seed, time.Duration(*secs*float64(time.Second)))
	case "mkfiles":
		res, err = mkfiles(client, *filePath, *n, *size, *conc, time.Duration(*maxSecs*float64(time.Second)))
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fatal(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fatal(err)
	}
	if res.Errors > 0 {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "randio:", err)
	os.Exit(2)
}

func dial(addr, user, keyFile, password, cipher, kex string) (*sftp.Client, func(), error) {
	var auth []ssh.AuthMethod
	if keyFile != "" {
		pem, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, nil, fmt.Errorf("parse key %s: %w", keyFile, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	} else {
		auth = append(auth, ssh.Password(password))
	}
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // benchmark against a throwaway local server
		Timeout:         30 * time.Second,
	}
	cfg.Ciphers = []string{cipher}
	cfg.KeyExchanges = []string{kex}
	conn, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh dial %s: %w", addr, err)
	}
	client, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("sftp session: %w", err)
	}
	return client, func() { client.Close(); conn.Close() }, nil
}

// randomIO runs qd workers that each issue one ReadAt or WriteAt of bs bytes
// at a random offset, then the next, until d has passed.
func randomIO(c *sftp.Client, mode, name string, bs, qd int, unaligned bool, seed uint64, d time.Duration) (result, error) {
	res := result{Mode: mode}
	fi, err := c.Stat(name)
	if err != nil {
		return res, fmt.Errorf("stat %s: %w", name, err)
	}
	size := fi.Size()
	if size < int64(bs) || bs <= 0 || qd <= 0 {
		return res, fmt.Errorf("file %s has %d bytes; need at least -bs=%d (and -qd > 0)", name, size, bs)
	}
	flags := os.O_RDONLY
	if mode == "write" {
		flags = os.O_RDWR
	}
	f, err := c.OpenFile(name, flags)
	if err != nil {
		res.Errors = 1
		res.FirstError = fmt.Sprintf("open %s: %v", name, err)
		return res, nil
	}
	defer f.Close()

	var ops, errs atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range qd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			buf := make([]byte, bs)
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			span := size - int64(bs)
			for time.Now().Before(deadline) {
				var off int64
				if unaligned {
					off = rng.Int64N(span + 1)
				} else {
					off = rng.Int64N(span/int64(bs)+1) * int64(bs)
				}
				var err error
				if mode == "write" {
					_, err = f.WriteAt(buf, off)
				} else {
					var n int
					n, err = f.ReadAt(buf, off)
					if err == io.EOF && n == bs {
						err = nil
					}
				}
				if err != nil {
					errs.Add(1)
					firstErr.Do(func() { res.FirstError = fmt.Sprintf("%s at %d: %v", mode, off, err) })
					if errs.Load() > 100 {
						return
					}
					continue
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	res.Ops, res.Errors, res.Seconds = ops.Load(), errs.Load(), elapsed
	res.Bytes = res.Ops * int64(bs)
	res.OpsPerSec = float64(res.Ops) / elapsed
	return res, nil
}

// mkfiles creates n files of size bytes named f00000... in dir, conc at a
// time, giving up (with Ops < n) once limit has passed if limit > 0.
func mkfiles(c *sftp.Client, dir string, n, size, conc int, limit time.Duration) (result, error) {
	res := result{Mode: "mkfiles"}
	if err := c.MkdirAll(dir); err != nil {
		return res, fmt.Errorf("mkdir %s: %w", dir, err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	if conc <= 0 {
		conc = 1
	}
	start := time.Now()
	var ops, errs atomic.Int64
	var firstErr sync.Once
	next := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := writeFile(c, path.Join(dir, fmt.Sprintf("f%05d", i)), data); err != nil {
					errs.Add(1)
					firstErr.Do(func() { res.FirstError = err.Error() })
					continue
				}
				ops.Add(1)
			}
		}()
	}
	for i := range n {
		if limit > 0 && time.Since(start) > limit {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	res.Ops, res.Errors = ops.Load(), errs.Load()
	res.Seconds = time.Since(start).Seconds()
	res.Bytes = res.Ops * int64(size)
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	return res, nil
}

func writeFile(c *sftp.Client, name string, data []byte) error {
	f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return nil
}
