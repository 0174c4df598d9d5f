//go:build !linux

// Package rawsock reads and writes a TCP connection's socket with raw system
// calls on Linux (rawsock_linux.go says why); elsewhere New returns nil and
// callers use their net.Conn.
package rawsock

import "net"

// Socket is never made on this system.
type Socket struct{}

// New returns nil: no raw sockets on this system.
func New(net.Conn) *Socket { return nil }

func (*Socket) Read([]byte) (int, error)  { panic("rawsock: no raw socket on this system") }
func (*Socket) Write([]byte) (int, error) { panic("rawsock: no raw socket on this system") }
