//go:build !linux

package main

import (
	"errors"
	"log/slog"
)

// prepareServeOS refuses: the store needs Linux (openat2, O_PATH, /proc).
// The offline commands that do not open the store work everywhere.
func prepareServeOS(*slog.Logger) error {
	return errors.New("securefsd serve needs Linux")
}
