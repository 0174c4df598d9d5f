//go:build !linux

package sftpd

import "net"

// rawSocket is Linux only (rawio_linux.go); elsewhere connections are read
// and written through net.Conn.
type rawSocket struct{}

func newRawSocket(net.Conn) *rawSocket { return nil }

func (*rawSocket) Read([]byte) (int, error)  { panic("sftpd: no raw socket on this system") }
func (*rawSocket) Write([]byte) (int, error) { panic("sftpd: no raw socket on this system") }
