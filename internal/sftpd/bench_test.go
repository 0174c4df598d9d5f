package sftpd

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
)

// benchClient is a pkg/sftp client over AES-128-GCM (the cipher OpenSSH
// users pick for speed) with OpenSSH's request size and concurrency.
func benchClient(b *testing.B) (*testServer, *sftp.Client) {
	b.Helper()
	ts := startServer(b)
	u := ts.addUser("bench", users.PermAll)
	conn, err := ssh.Dial("tcp", ts.addr, clientConfig(u, ts, func(c *ssh.ClientConfig) {
		c.Ciphers = []string{ssh.CipherAES128GCM}
	}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	c, err := sftp.NewClient(conn, sftp.MaxConcurrentRequestsPerFile(64), sftp.UseConcurrentWrites(true))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return ts, c
}

func BenchmarkSFTPUpload(b *testing.B) {
	for _, size := range []int{32 << 10, 8 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			_, c := benchClient(b)
			data := randomBytes(b, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := range b.N {
				f, err := c.Create(fmt.Sprintf("/f%d", i%16))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSFTPDownload(b *testing.B) {
	for _, size := range []int{32 << 10, 8 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			_, c := benchClient(b)
			f, err := c.Create("/f")
			if err != nil {
				b.Fatal(err)
			}
			f.ReadFrom(bytes.NewReader(randomBytes(b, size)))
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				r, err := c.Open("/f")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

func BenchmarkParseCommand(b *testing.B) {
	for range b.N {
		if _, err := parseCommand(`md5sum /photos/2024/IMG\ 0001\ \(copy\).jpg`); err != nil {
			b.Fatal(err)
		}
	}
}
