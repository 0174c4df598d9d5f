package main

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// prepareServeOS readies the process for serving. It raises the soft
// RLIMIT_NOFILE to the hard limit, so the server's descriptor budget (vfs
// gives open handles half of it) is as large as the system allows. Go's
// runtime does the same at start on Linux; doing it here keeps it true
// whatever the runtime does, and logs the limit the server runs with.
func prepareServeOS(log *slog.Logger) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file descriptor limit", "err", err)
		return nil
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("cannot raise the file descriptor limit", "err", err)
		}
		unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	}
	log.Debug("file descriptor limit", "soft", rl.Cur, "hard", rl.Max)
	return nil
}
