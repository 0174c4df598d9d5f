// Package sftpd serves SSH with the SFTP subsystem (github.com/pkg/sftp
// RequestServer over internal/vfs), the legacy SCP protocol and the
// md5sum/sha1sum/sha256sum commands rclone uses, to the users of
// internal/users. No shell is ever run.
package sftpd

// API CONTRACT (used by cmd/securefsd):
//
//	type Options struct {
//		Store       *vfs.Store
//		Users       *users.DB
//		HostKeys    []ssh.Signer      // from LoadOrCreateHostKeys
//		Logger      *slog.Logger      // nil: discard
//		LoginGrace  time.Duration     // zero: 30s
//		IdleTimeout time.Duration     // zero: 15m
//		MaxSessions int               // total; zero: 256
//		MaxSessionsPerUser int        // zero: 32
//	}
//	func New(opts Options) (*Server, error)
//	// Serve accepts on ln until ctx is done or Shutdown is called.
//	func (s *Server) Serve(ctx context.Context, ln net.Listener) error
//	// Shutdown stops accepting, waits for sessions to end until ctx is done, then closes them.
//	func (s *Server) Shutdown(ctx context.Context) error
//	// LoadOrCreateHostKeys reads ssh_host_ed25519_key and ssh_host_rsa_key
//	// (OpenSSH PEM format) from dir, generating them (0600) on first run.
//	func LoadOrCreateHostKeys(dir string) ([]ssh.Signer, error)
