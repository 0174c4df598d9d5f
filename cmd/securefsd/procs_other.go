//go:build !unix

package main

import "time"

// cpuTime: not read on this system, so --procs auto keeps Go's setting.
func cpuTime() (time.Duration, bool) { return 0, false }
