// Package sftpd serves SSH with the SFTP subsystem (github.com/pkg/sftp
// RequestServer over internal/vfs), the legacy SCP protocol and the
// md5sum/sha1sum/sha256sum commands rclone uses, to the users of
// internal/users. No shell is ever run. User documentation: docs/SFTP.md.
//
// What it owns: the SSH listener and handshake (host keys, algorithms,
// login grace, idle timeout, session limits), authentication through
// users.DB (password and public key, feeding the login defender), the
// mapping of SFTP requests, SCP records and exec command lines onto one
// user's *vfs.FS, the one table from internal errors to what clients see
// (errors.go), and one log line per operation outcome.
//
// Imports of ours: vfs, users and account (never envelope or bbolt:
// scripts/check-imports.sh fails on those); pkg/sftp and x/crypto/ssh for
// the protocols.
//
// Threat notes:
//   - Confinement is vfs's job (one os.Root per home); sftpd passes client
//     paths through unchanged and never joins them with disk paths.
//   - Clients see fixed short error texts (statusError): no disk paths, no
//     wrapped causes. Details go to the log.
//   - Exec requests are parsed here (cmdline.go); anything needing a shell
//     (variables, substitution, redirection, pipes, separators) is refused,
//     so no input reaches a shell or another program.
//   - SCP input is untrusted: record names are single path elements (no
//     "/", ".", ".."), lines and nesting are bounded, sizes are parsed
//     strictly; FuzzSCPCommand and FuzzSCPSink cover the parsers.
//   - Resources: total and per-user connection limits, 10 channels per
//     connection, login grace and idle deadlines, bounded write buffering.
//   - Algorithms: no SHA-1 (kex, MACs, host key signatures, client RSA
//     signatures), no CBC, encrypt-then-MAC only.
package sftpd
