//go:build windows || plan9

package main

import "errors"

// syslogForwarder: log/syslog does not exist here (and serve runs on Linux
// only).
func syslogForwarder() (func([]byte) error, func(), error) {
	return nil, nil, errors.New("syslog is not available on this system")
}
