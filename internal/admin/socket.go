package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/securefsd/securefsd/internal/pwpolicy"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/users"
)

// Listen opens the admin socket in dataDir, replacing a stale one left by a
// crashed server. The socket is 0600.
func Listen(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, SocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin: a server is already running on %s", dataDir)
	}
	_ = os.Remove(path)
	// umask-free: create, then chmod before anyone can use it (the data
	// dir is 0700, so nobody else can reach the socket in between).
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: chmod socket: %w", err)
	}
	return &peerCheckListener{Listener: ln}, nil
}

// peerCheckListener drops connections from other uids (root may connect).
type peerCheckListener struct{ net.Listener }

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if samePeer(c) {
			return c, nil
		}
		c.Close()
	}
}

// Handler serves a Manager over HTTP (on the admin socket).
func Handler(m Manager, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{m: m, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users", h.addUser)
	mux.HandleFunc("GET /v1/users", h.listUsers)
	mux.HandleFunc("DELETE /v1/users/{name}", h.deleteUser)
	mux.HandleFunc("PUT /v1/users/{name}/password", h.setPassword)
	mux.HandleFunc("PUT /v1/users/{name}/disabled", h.setDisabled)
	mux.HandleFunc("PATCH /v1/users/{name}", h.setUser)
	mux.HandleFunc("DELETE /v1/users/{name}/2fa", h.resetTwoFactor)
	mux.HandleFunc("POST /v1/users/{name}/keys", h.addKey)
	mux.HandleFunc("DELETE /v1/users/{name}/keys/{fp}", h.delKey)
	mux.HandleFunc("POST /v1/rotate", h.rotate)
	mux.HandleFunc("POST /v1/verify", h.verify)
	if b, ok := m.(BanManager); ok {
		bh := &banHandler{b: b, log: log}
		mux.HandleFunc("GET /v1/bans", bh.list)
		mux.HandleFunc("DELETE /v1/bans/{who}", bh.del)
	}
	routeShares(mux, m, log)
	routeInvites(mux, m, log)
	routeFolders(mux, m, log)
	routeSessions(mux, m, log)
	routeBackup(mux, m, log)
	mux.HandleFunc("GET /v1/keyfile", h.keyFile)
	return mux
}

type handler struct {
	m   Manager
	log *slog.Logger
}

// event is one line of a streamed answer (newline-delimited JSON).
type event struct {
	Progress *Progress       `json:"progress,omitempty"`
	Damage   *Damage         `json:"damage,omitempty"`
	Result   *VerifyResult   `json:"result,omitempty"`
	Key      *users.Key      `json:"key,omitempty"`
	Users    []users.User    `json:"users,omitempty"`
	Bans     []users.Ban     `json:"bans,omitempty"`
	Share    *ShareCreated   `json:"share,omitempty"`
	Shares   []shares.Public `json:"shares,omitempty"`
	Invite   *InviteCreated  `json:"invite,omitempty"`
	Invites  []shares.Invite `json:"invites,omitempty"`
	Folders  []users.Folder  `json:"folders,omitempty"`
	Groups   []users.Group   `json:"groups,omitempty"`
	Sessions []SessionInfo   `json:"sessions,omitempty"`
	Count    *int            `json:"count,omitempty"`
	KeyFile  string          `json:"key_file,omitempty"`
	Backup   *BackupResult   `json:"backup,omitempty"`
	Error    *apiError       `json:"error,omitempty"`
	Done     bool            `json:"done,omitempty"`
}

type apiError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

var errorKinds = []struct {
	kind string
	err  error
}{
	{"not-found", users.ErrNotFound},
	{"exists", users.ErrExists},
	{"invalid", users.ErrInvalid},
	{"canceled", context.Canceled},
	{"home-exists", ErrHomeExists},
	{"share-not-found", shares.ErrNotFound},
	{"share-invalid", shares.ErrInvalid},
	{"not-sharable", ErrNotSharable},
	{"weak-password", pwpolicy.ErrWeak},
	{"invite-used", shares.ErrInviteUsed},
	{"invite-expired", shares.ErrInviteExpired},
	{"invite-group", shares.ErrInviteGroup},
	{"no-group", users.ErrNoGroup},
	{"no-server", ErrNoServer},
	{"no-2fa", users.ErrNoTwoFactor},
}

func toAPIError(err error) *apiError {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return &apiError{Kind: k.kind, Message: err.Error()}
		}
	}
	return &apiError{Kind: "internal", Message: err.Error()}
}

func fromAPIError(e *apiError) error {
	for _, k := range errorKinds {
		if k.kind == e.Kind {
			return &remoteError{msg: e.Message, kind: k.err}
		}
	}
	return &remoteError{msg: e.Message}
}

// remoteError is an error reported by the server; errors.Is still works
// for the sentinel kinds.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// stream writes events as they happen and flushes each.
type stream struct {
	w   http.ResponseWriter
	enc *json.Encoder
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	return &stream{w: w, enc: json.NewEncoder(w)}
}

func (s *stream) send(ev event) {
	_ = s.enc.Encode(ev)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *stream) finish(err error) {
	if err != nil {
		s.send(event{Error: toAPIError(err)})
		return
	}
	s.send(event{Done: true})
}

func (h *handler) addUser(w http.ResponseWriter, r *http.Request) {
	var req AddUserRequest
	s := newStream(w)
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err))
		return
	}
	defer clear(req.Password)
	err := h.m.AddUser(r.Context(), req)
	h.log.Info("admin: user add", "user", req.Name, "err", err)
	s.finish(err)
}

func (h *handler) listUsers(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	us, err := h.m.ListUsers(r.Context())
	if err != nil {
		s.finish(err)
		return
	}
	s.send(event{Users: us})
	s.finish(nil)
}

func (h *handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	name := r.PathValue("name")
	err := h.m.DeleteUser(r.Context(), name, r.URL.Query().Get("purge") == "1", func(p Progress) {
		s.send(event{Progress: &p})
	})
	h.log.Info("admin: user del", "user", name, "err", err)
	s.finish(err)
}

func (h *handler) setPassword(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var body struct {
		Password []byte `json:"password"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err))
		return
	}
	defer clear(body.Password)
	name := r.PathValue("name")
	err := h.m.SetPassword(r.Context(), name, body.Password)
	h.log.Info("admin: user passwd", "user", name, "err", err)
	s.finish(err)
}

func (h *handler) setDisabled(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var body struct {
		Disabled bool `json:"disabled"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&body); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err))
		return
	}
	name := r.PathValue("name")
	err := h.m.SetDisabled(r.Context(), name, body.Disabled)
	h.log.Info("admin: user disable", "user", name, "disabled", body.Disabled, "err", err)
	s.finish(err)
}

func (h *handler) addKey(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	var body struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		s.finish(fmt.Errorf("%w: bad request: %v", users.ErrInvalid, err))
		return
	}
	name := r.PathValue("name")
	k, err := h.m.AddKey(r.Context(), name, body.Key)
	h.log.Info("admin: user key add", "user", name, "fingerprint", k.Fingerprint, "err", err)
	if err == nil {
		s.send(event{Key: &k})
	}
	s.finish(err)
}

func (h *handler) delKey(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	name, fp := r.PathValue("name"), r.PathValue("fp")
	err := h.m.DelKey(r.Context(), name, fp)
	h.log.Info("admin: user key del", "user", name, "key", fp, "err", err)
	s.finish(err)
}

func (h *handler) rotate(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	h.log.Info("admin: key rotation started")
	err := h.m.RotateKey(r.Context(), func(p Progress) { s.send(event{Progress: &p}) })
	h.log.Info("admin: key rotation finished", "err", err)
	s.finish(err)
}

func (h *handler) verify(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	user := r.URL.Query().Get("user")
	res, err := h.m.Verify(r.Context(), user, func(d Damage) { s.send(event{Damage: &d}) })
	h.log.Info("admin: verify", "user", user, "checked", res.Checked, "damaged", res.Damaged, "err", err)
	if err == nil {
		s.send(event{Result: &res})
	}
	s.finish(err)
}

func (h *handler) keyFile(w http.ResponseWriter, r *http.Request) {
	s := newStream(w)
	p, err := h.m.KeyFile(r.Context())
	if err == nil {
		s.send(event{KeyFile: p})
	}
	s.finish(err)
}

// Client talks to a running server's admin socket. It implements Manager.
type Client struct {
	hc *http.Client
}

// Dial connects to the admin socket in dataDir. It returns ErrNoServer
// when no server listens there.
func Dial(dataDir string) (*Client, error) {
	path := filepath.Join(dataDir, SocketName)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, ErrNoServer
		}
		return nil, fmt.Errorf("admin: dial %s: %w", path, err)
	}
	c.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{hc: &http.Client{Transport: tr}}, nil
}

// call sends one request and feeds every streamed event to fn.
func (c *Client) call(ctx context.Context, method, path string, body any, fn func(event)) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://securefsd"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin: server answered %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("admin: bad answer: %w", err)
		}
		switch {
		case ev.Error != nil:
			return fromAPIError(ev.Error)
		case ev.Done:
			return nil
		case fn != nil:
			fn(ev)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return errors.New("admin: the server ended the answer early")
}

// AddUser implements Manager.
func (c *Client) AddUser(ctx context.Context, req AddUserRequest) error {
	return c.call(ctx, "POST", "/v1/users", req, nil)
}

// SetPassword implements Manager.
func (c *Client) SetPassword(ctx context.Context, name string, password []byte) error {
	return c.call(ctx, "PUT", "/v1/users/"+url.PathEscape(name)+"/password", map[string][]byte{"password": password}, nil)
}

// SetDisabled implements Manager.
func (c *Client) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return c.call(ctx, "PUT", "/v1/users/"+url.PathEscape(name)+"/disabled", map[string]bool{"disabled": disabled}, nil)
}

// DeleteUser implements Manager.
func (c *Client) DeleteUser(ctx context.Context, name string, purge bool, progress func(Progress)) error {
	q := ""
	if purge {
		q = "?purge=1"
	}
	return c.call(ctx, "DELETE", "/v1/users/"+url.PathEscape(name)+q, nil, func(ev event) {
		if ev.Progress != nil {
			report(progress, *ev.Progress)
		}
	})
}

// ListUsers implements Manager.
func (c *Client) ListUsers(ctx context.Context) ([]users.User, error) {
	var out []users.User
	err := c.call(ctx, "GET", "/v1/users", nil, func(ev event) { out = append(out, ev.Users...) })
	return out, err
}

// AddKey implements Manager.
func (c *Client) AddKey(ctx context.Context, name, line string) (users.Key, error) {
	var k users.Key
	err := c.call(ctx, "POST", "/v1/users/"+url.PathEscape(name)+"/keys", map[string]string{"key": line}, func(ev event) {
		if ev.Key != nil {
			k = *ev.Key
		}
	})
	return k, err
}

// DelKey implements Manager.
func (c *Client) DelKey(ctx context.Context, name, fp string) error {
	return c.call(ctx, "DELETE", "/v1/users/"+url.PathEscape(name)+"/keys/"+url.PathEscape(fp), nil, nil)
}

// RotateKey implements Manager.
func (c *Client) RotateKey(ctx context.Context, progress func(Progress)) error {
	return c.call(ctx, "POST", "/v1/rotate", nil, func(ev event) {
		if ev.Progress != nil {
			report(progress, *ev.Progress)
		}
	})
}

// Verify implements Manager.
func (c *Client) Verify(ctx context.Context, user string, damaged func(Damage)) (VerifyResult, error) {
	var res VerifyResult
	err := c.call(ctx, "POST", "/v1/verify?user="+url.QueryEscape(user), nil, func(ev event) {
		if ev.Damage != nil && damaged != nil {
			damaged(*ev.Damage)
		}
		if ev.Result != nil {
			res = *ev.Result
		}
	})
	return res, err
}

// KeyFile implements Manager.
func (c *Client) KeyFile(ctx context.Context) (string, error) {
	var p string
	err := c.call(ctx, "GET", "/v1/keyfile", nil, func(ev event) {
		if ev.KeyFile != "" {
			p = ev.KeyFile
		}
	})
	return p, err
}
