// Package webui is securefsd's browser client: log in, list, upload,
// download, new folder, rename, delete, log out; html/template and a little
// JavaScript embedded in the binary, over internal/vfs and internal/users.
package webui

// API CONTRACT (used by internal/davd via cmd/securefsd):
//
//	type Options struct {
//		Store  *vfs.Store
//		Users  *users.DB
//		Logger *slog.Logger
//		Prefix string            // URL prefix it is mounted at, "/ui/"
//		Secure bool              // set the Secure cookie attribute (false only under --insecure-http)
//		IdleTimeout, MaxAge time.Duration // zero: 30m idle, 12h absolute
//	}
//	func New(opts Options) (*UI, error)
//	func (ui *UI) ServeHTTP(w http.ResponseWriter, r *http.Request)
