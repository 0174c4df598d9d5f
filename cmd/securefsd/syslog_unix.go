//go:build !windows && !plan9

package main

import (
	"log/syslog"
	"strings"
)

// syslogForwarder sends audit records to the local syslog (LOG_AUTHPRIV,
// tag securefsd-audit), one message per record.
func syslogForwarder() (func([]byte) error, func(), error) {
	w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_AUTHPRIV, "securefsd-audit")
	if err != nil {
		return nil, nil, err
	}
	return func(b []byte) error { return w.Info(strings.TrimSuffix(string(b), "\n")) }, func() { w.Close() }, nil
}
