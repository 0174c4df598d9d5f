// Package davd serves WebDAV (golang.org/x/net/webdav plus what litmus,
// Finder, Windows Explorer, rclone and curl need beyond it) over HTTPS,
// backed by internal/vfs, for the users of internal/users.
//
// It owns the HTTP side only: authentication (HTTP Basic checked by
// users.DB, which caches and bans), the WebDAV methods, locks (in memory),
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

// API CONTRACT (used by cmd/securefsd):
//
//	type Options struct {
//		Store  *vfs.Store
//		Users  *users.DB
//		Logger *slog.Logger     // nil: discard
//		UI     http.Handler     // optional browser client (internal/webui), mounted at /ui/;
//		                        // browser GETs (Accept: text/html) of collections redirect there
//		Now    func() time.Time // lock clock; nil: time.Now (added)
//	}
//	func New(opts Options) (*Server, error)
//	func (s *Server) Handler() http.Handler
//	// Serve serves HTTPS on ln with tlsCfg, or plain HTTP if tlsCfg is nil,
//	// until ctx is done or Shutdown is called.
//	func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error
//	func (s *Server) Shutdown(ctx context.Context) error
//	// LoadOrCreateCert loads certFile/keyFile, generating a self-signed
//	// ECDSA P-256 certificate for localhost/127.0.0.1/::1 (key 0600) if both are missing.
//	// It returns the SHA-256 fingerprint of the certificate.
//	func LoadOrCreateCert(certFile, keyFile string) (tls.Certificate, string, error)
//	func Fingerprint(der []byte) string  // "AB:CD:..." SHA-256 (added)
//	const Realm = "securefsd"           // HTTP Basic realm (added)
//
// Design: our own handler (handler.go, props.go) replaces webdav.Handler,
// keeping its interfaces (fs.go adapts *vfs.FS to webdav.FileSystem, File,
// DeadPropsHolder, ContentTyper, ETager). See docs/WEBDAV.md.
