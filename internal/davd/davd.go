// Package davd serves WebDAV (RFC 4918 class 1 and 2, plus what litmus,
// Finder, Windows Explorer, rclone and curl need beyond it) over HTTPS,
// backed by internal/vfs, for the users of internal/users.
//
// It owns the HTTP side only: authentication (HTTP Basic checked by
// users.DB, which caches and bans), the WebDAV methods, locks (in memory,
// or in etcd for a cluster: etcdlocks.go),
// the access log and the self-signed certificate. Files, dead properties
// and hashes live in vfs; davd never imports envelope or bbolt.
//
// Threat notes: every request is authenticated and served from the user's
// own vfs home, so paths cannot leave it (vfs confines names in an os.Root;
// davd also refuses Destination headers for other hosts). Error responses
// carry fixed status texts, never disk paths or error strings. Request XML
// bodies are capped at 1 MiB; stored property values are re-serialized by
// davd so what it pastes into responses is always well-formed XML. File
// bodies are sent with "Content-Security-Policy: sandbox" because stored
// HTML shares the origin with the web client under /ui/. A damaged file
// fails with 500 before headers where possible, and GET never returns
// unauthenticated plaintext (vfs authenticates every chunk).
package davd

// Design: requests are served by davd's own handler (handler.go,
// props.go, locks.go), not by golang.org/x/net/webdav's Handler; of that
// package davd uses only types and status texts (webdav.Property,
// Propstat, StatusMulti, ...). fs.go adapts *vfs.FS to its FileSystem
// interfaces; only adapter_test.go runs that adapter under webdav.Handler.
// See docs/WEBDAV.md.
