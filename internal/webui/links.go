package webui

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/securefsd/securefsd/internal/account"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/httpx"
	"github.com/securefsd/securefsd/internal/shares"
	"github.com/securefsd/securefsd/internal/vfs"
)

// LinkPrefix is where the public share-link pages are mounted.
const LinkPrefix = "/s/"

// Links serves the public pages of share links (internal/shares) under
// /s/TOKEN: no account, no session of the UI; the token is the capability.
// Everything a link reaches goes through its owner's own view of the store
// (account.Open), so the owner's rights, quota and confinement apply, and
// the link's path is the root: a sub-path is cleaned on its own before it is
// joined, so ".." (also percent-encoded) stops at the link's root.
//
// Routes (TOKEN is the link's token):
//
//	GET  /s/TOKEN              file page, folder listing, or upload page
//	POST /s/TOKEN              password form
//	GET  /s/TOKEN/download     a file link's file (Range, resume)
//	GET  /s/TOKEN/file/SUB     one file of a folder link
//	GET  /s/TOKEN/zip          a folder link's whole tree as a streamed zip
//	POST /s/TOKEN/upload       an upload-only link's multipart upload
//
// Every dead link (see shares.Resolve, plus a missing path or a kind that
// no longer matches) answers the same 404 page.
type Links struct {
	ui     *UI
	shares *shares.Manager
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	grants map[[32]byte]grant // password sessions by SHA-256 of the cookie
}

type grant struct {
	id    string // link id
	until time.Time
}

const (
	linkCookie = "securefsd_link"
	grantTTL   = time.Hour
	maxGrants  = 10000
)

// NewLinks returns the public link pages, sharing ui's store, pages and
// security headers.
// It also turns on the "Share" action and the links page of ui: call it
// before serving.
func NewLinks(ui *UI, m *shares.Manager) (*Links, error) {
	su, err := newShareUI(m)
	if err != nil {
		return nil, err
	}
	ui.shareUI = su
	return &Links{ui: ui, shares: m, log: ui.log, now: ui.now, grants: make(map[[32]byte]grant)}, nil
}

// linkHeaders are the UI's security headers plus: no referrer (the token
// is in the URL), not indexable, never cached by shared caches.
func linkHeaders(h http.Header) {
	securityHeaders(h)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex, nofollow")
}

var linkPageT = template.Must(template.New("link").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><meta name="referrer" content="no-referrer">
<title>{{.Title}}</title><link rel="stylesheet" href="{{.CSS}}"></head>
<body><main class="link-page">
{{if .NotFound}}<h1>Not found</h1><p>This link does not exist or is no longer valid.</p>
{{else if .AskPassword}}<h1>Password required</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Base}}"><label>Password <input type="password" name="password" autocomplete="off" autofocus required></label> <button type="submit">Open</button></form>
{{else if .Upload}}<h1>Send files</h1><p>Files you send here are delivered to {{.Owner}}. You cannot see or download what is in the folder.</p>
{{if .Flash}}<p class="flash" role="status">{{.Flash}}</p>{{end}}
<form method="post" action="{{.Base}}/upload" enctype="multipart/form-data"><input type="file" name="file" multiple required> <button type="submit">Send</button></form>
{{else if .File}}<h1>{{.Name}}</h1><p>{{.Size}}</p><p><a class="button" href="{{.Base}}/download" download>Download</a></p>
{{else}}<h1>{{.Name}}</h1><p><a class="button" href="{{.Base}}/zip" download>Download all (zip)</a></p>
<table><thead><tr><th>Name</th><th>Size</th></tr></thead><tbody>
{{range .Entries}}<tr><td>{{if .Dir}}{{.Name}}/{{else}}<a href="{{$.Base}}/file{{.Href}}" download>{{.Name}}</a>{{end}}</td><td>{{.Size}}</td></tr>
{{end}}</tbody></table>
{{end}}</main></body></html>
`))

type linkPage struct {
	Title, CSS, Base, Name, Size, Owner, Error, Flash string
	NotFound, AskPassword, Upload, File               bool
	Entries                                           []linkEntry
}

type linkEntry struct {
	Name, Href, Size string
	Dir              bool
}

func (l *Links) render(w http.ResponseWriter, r *http.Request, status int, p linkPage) {
	p.CSS = l.ui.assetURL("app.css")
	if p.Title == "" {
		p.Title = "Shared with you"
	}
	var buf bytes.Buffer
	if err := linkPageT.Execute(&buf, p); err != nil {
		l.log.Error("webui: link page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func (l *Links) notFound(w http.ResponseWriter, r *http.Request) {
	l.render(w, r, http.StatusNotFound, linkPage{Title: "Not found", NotFound: true})
}

// ServeHTTP routes /s/TOKEN[/action[/sub]].
func (l *Links) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	linkHeaders(w.Header())
	rest := strings.TrimPrefix(r.URL.Path, LinkPrefix)
	token, rest, _ := strings.Cut(rest, "/")
	action, sub, _ := strings.Cut(rest, "/")
	res, err := l.shares.Resolve(r.Context(), token, r.RemoteAddr)
	if err != nil {
		if !errors.Is(err, shares.ErrNotFound) {
			l.log.Error("webui: link resolve", "err", err)
		}
		l.notFound(w, r)
		return
	}
	fsys, err := account.Open(l.ui.opts.Store, res.Owner)
	if err != nil {
		l.log.Error("webui: link owner's home", "link", res.Link.ID, "err", err)
		l.notFound(w, r)
		return
	}
	// The path must still be what the link was made for.
	fi, err := fsys.Stat(res.Link.Path)
	if err != nil || fi.IsDir() != (res.Link.Kind == shares.Folder) {
		l.notFound(w, r)
		return
	}
	c := &linkReq{Links: l, res: res, fs: fsys, fi: fi, base: LinkPrefix + token}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		l.render(w, r, http.StatusForbidden, linkPage{Title: "Refused", Error: "The request came from another site and was refused.", AskPassword: true, Base: c.base})
		return
	}
	if res.Link.PasswordHash != "" && !l.granted(r, res.Link.ID) {
		if action == "" && r.Method == http.MethodPost {
			c.password(w, r)
			return
		}
		l.render(w, r, http.StatusUnauthorized, linkPage{Title: "Password required", AskPassword: true, Base: c.base})
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	switch {
	case action == "" && method == http.MethodGet:
		c.page(w, r, "")
	case action == "" && method == http.MethodPost:
		http.Redirect(w, r, c.base, http.StatusSeeOther) // password already given
	case res.Link.UploadOnly && action == "upload" && method == http.MethodPost:
		c.upload(w, r)
	case res.Link.UploadOnly:
		l.notFound(w, r) // no listing, no download, whatever the URL
	case res.Link.Kind == shares.File && action == "download" && method == http.MethodGet:
		c.download(w, r, res.Link.Path, fi)
	case res.Link.Kind == shares.Folder && action == "file" && method == http.MethodGet:
		name := path.Join(res.Link.Path, cleanName(sub))
		sfi, err := fsys.Stat(name)
		if err != nil || !sfi.Mode().IsRegular() {
			l.notFound(w, r)
			return
		}
		c.download(w, r, name, sfi)
	case res.Link.Kind == shares.Folder && action == "zip" && method == http.MethodGet:
		c.zip(w, r)
	default:
		l.notFound(w, r)
	}
}

// granted reports whether the request carries a live password grant for id.
func (l *Links) granted(r *http.Request, id string) bool {
	ck, err := r.Cookie(linkCookie)
	if err != nil {
		return false
	}
	key := sha256.Sum256([]byte(ck.Value))
	l.mu.Lock()
	defer l.mu.Unlock()
	g, ok := l.grants[key]
	return ok && g.id == id && l.now().Before(g.until)
}

func (l *Links) grant(id string) string {
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.grants) >= maxGrants {
		for k, g := range l.grants {
			if !now.Before(g.until) || len(l.grants) >= maxGrants {
				delete(l.grants, k)
			}
			if len(l.grants) < maxGrants/2 {
				break
			}
		}
	}
	l.grants[sha256.Sum256([]byte(v))] = grant{id: id, until: now.Add(grantTTL)}
	return v
}

// linkReq is one request on a live link.
type linkReq struct {
	*Links
	res  shares.Resolved
	fs   *vfs.FS
	fi   fs.FileInfo
	base string
}

func (c *linkReq) password(w http.ResponseWriter, r *http.Request) {
	if err := parseSmallForm(w, r); err != nil {
		c.render(w, r, http.StatusBadRequest, linkPage{AskPassword: true, Base: c.base, Error: "The form could not be read."})
		return
	}
	pw := []byte(r.PostForm.Get("password"))
	err := c.shares.CheckPassword(r.Context(), c.res, "link", r.RemoteAddr, pw)
	clear(pw)
	switch {
	case err == nil:
		http.SetCookie(w, &http.Cookie{Name: linkCookie, Value: c.grant(c.res.Link.ID), Path: c.base, MaxAge: int(grantTTL / time.Second),
			HttpOnly: true, Secure: c.ui.opts.Secure, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, c.base, http.StatusSeeOther)
	case errors.Is(err, shares.ErrBanned):
		c.render(w, r, http.StatusTooManyRequests, linkPage{AskPassword: true, Base: c.base, Error: "Too many wrong passwords. Try again later."})
	case errors.Is(err, shares.ErrPassword):
		c.render(w, r, http.StatusUnauthorized, linkPage{AskPassword: true, Base: c.base, Error: "Wrong password."})
	default:
		c.log.Error("webui: link password", "link", c.res.Link.ID, "err", err)
		c.render(w, r, http.StatusServiceUnavailable, linkPage{AskPassword: true, Base: c.base, Error: "Please try again."})
	}
}

func (c *linkReq) page(w http.ResponseWriter, r *http.Request, flash string) {
	l := c.res.Link
	switch {
	case l.UploadOnly:
		c.render(w, r, http.StatusOK, linkPage{Title: "Send files", Upload: true, Base: c.base, Owner: c.res.Owner.Name, Flash: flash})
	case l.Kind == shares.File:
		c.render(w, r, http.StatusOK, linkPage{Title: baseName(l.Path), File: true, Base: c.base, Name: baseName(l.Path), Size: humanSize(c.fi.Size())})
	default:
		fis, err := c.fs.ReadDir(l.Path)
		if err != nil {
			c.notFound(w, r)
			return
		}
		var es []linkEntry
		for _, fi := range fis {
			e := linkEntry{Name: fi.Name(), Dir: fi.IsDir(), Href: escapePath("/" + fi.Name())}
			if !e.Dir {
				e.Size = humanSize(fi.Size())
			}
			es = append(es, e)
		}
		name := baseName(l.Path)
		if l.Path == "/" {
			name = "Shared folder"
		}
		c.render(w, r, http.StatusOK, linkPage{Title: name, Base: c.base, Name: name, Entries: es})
	}
}

// countWriter counts the body bytes the client accepted.
type countWriter struct {
	http.ResponseWriter
	n int64
}

func (cw *countWriter) Write(p []byte) (int, error) {
	n, err := cw.ResponseWriter.Write(p)
	cw.n += int64(n)
	return n, err
}

// ReadFrom keeps the ResponseWriter's own ReadFrom reachable (davd's sends
// with a pooled chunk-sized buffer, net/http's may splice): hiding it would
// send the body through io.Copy's 32 KiB buffer.
func (cw *countWriter) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := cw.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{cw.ResponseWriter}, src)
	}
	cw.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (cw *countWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// posReader tracks how far a download read, and its first read error
// (http.ServeContent swallows it).
type posReader struct {
	io.ReadSeeker
	pos, read int64
	err       error
}

func (p *posReader) noteErr(err error) {
	if err != nil && err != io.EOF && p.err == nil {
		p.err = err
	}
}

// aheadPos is a posReader over an httpx.AheadReader: the server's
// ResponseWriter sends it from the read-ahead buffers (httpx.Sender),
// counted like Read.
type aheadPos struct {
	*posReader
	ahead *httpx.AheadReader
}

func (p aheadPos) Send(w io.Writer, limit int64, c httpx.Corker) (int64, error) {
	n, err := p.ahead.Send(w, limit, c)
	p.pos += n
	p.read += n
	p.noteErr(p.ahead.Err()) // not err: a write error is the client's
	return n, err
}

func (p *posReader) Read(b []byte) (int, error) {
	n, err := p.ReadSeeker.Read(b)
	p.pos += int64(n)
	p.read += int64(n)
	p.noteErr(err)
	return n, err
}

func (p *posReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.ReadSeeker.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

// download streams one file with Range support and counts it by the rule
// of docs/WEBUI.md: a GET counts once when the client accepted the file's
// last byte with every byte read for it (a complete download, or the end
// of a resumed one), or when it accepted at least 90% of the file even if
// cut short, so taking nearly all of a file again and again still counts.
func (c *linkReq) download(w http.ResponseWriter, r *http.Request, name string, fi fs.FileInfo) {
	f, err := c.fs.Open(name)
	if err != nil {
		c.notFound(w, r)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", contentDisposition(baseName(name)))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox; frame-ancestors 'none'")
	h.Set("Cache-Control", "private, no-cache")
	h.Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
	cw := &countWriter{ResponseWriter: w}
	pr := &posReader{ReadSeeker: f}
	var src io.ReadSeeker = pr
	// A whole large file decrypts ahead, as a WebDAV GET does.
	if r.Method == http.MethodGet && r.Header.Get("Range") == "" && fi.Size() >= httpx.AheadMin {
		a := httpx.NewAheadReader(f)
		defer a.Stop() // before f.Close (deferred above)
		pr.ReadSeeker = a
		src = aheadPos{posReader: pr, ahead: a}
	}
	httpx.ServeContent(cw, r, baseName(name), fi.ModTime(), src)
	if pr.err != nil {
		// The body stopped short: the client sees a cut download.
		lvl := slog.LevelWarn
		if errors.Is(pr.err, vfs.ErrIntegrity) {
			lvl = slog.LevelError
		}
		c.log.Log(r.Context(), lvl, "webui: link download: read failed", "link", c.res.Link.ID, "err", pr.err)
		return // not counted
	}
	if r.Method != http.MethodGet {
		return
	}
	c.audit(r, audit.OpShareGet, name, cw.n, nil)
	size := fi.Size()
	complete := pr.pos == size && cw.n == pr.read && (pr.read > 0 || size == 0)
	if complete || (size > 0 && cw.n*10 >= size*9) {
		if err := c.shares.CountDownload(context.WithoutCancel(r.Context()), c.res); err != nil && !errors.Is(err, shares.ErrNotFound) {
			c.log.Error("webui: link count", "link", c.res.Link.ID, "err", err)
		}
	}
}

// zip streams the folder's tree as a zip: entries are written as they are
// read (Store method: shared files are mostly compressed already, and Store
// keeps the cost of a zip at the cost of a copy), with data descriptors, so
// nothing is buffered or spooled; archive/zip switches an entry to zip64
// when it passes 4 GiB. The zip counts as one download when it completes.
func (c *linkReq) zip(w http.ResponseWriter, r *http.Request) {
	root := c.res.Link.Path
	name := baseName(root)
	if root == "/" {
		name = "shared"
	}
	h := w.Header()
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", contentDisposition(name+".zip"))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	zw := zip.NewWriter(w)
	buf := make([]byte, 256<<10)
	err := c.addDir(zw, root, "", buf)
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		// Headers are gone: the client sees a truncated zip, which unzip
		// reports; nothing is counted.
		c.log.Warn("webui: link zip interrupted", "link", c.res.Link.ID, "err", err)
		c.audit(r, audit.OpShareGet, root, 0, err)
		return
	}
	c.audit(r, audit.OpShareGet, root, 0, nil)
	if err := c.shares.CountDownload(context.WithoutCancel(r.Context()), c.res); err != nil && !errors.Is(err, shares.ErrNotFound) {
		c.log.Error("webui: link count", "link", c.res.Link.ID, "err", err)
	}
}

func (c *linkReq) addDir(zw *zip.Writer, dir, prefix string, buf []byte) error {
	fis, err := c.fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, fi := range fis {
		full, zname := path.Join(dir, fi.Name()), prefix+fi.Name()
		switch {
		case fi.IsDir():
			if _, err := zw.CreateHeader(&zip.FileHeader{Name: zname + "/", Modified: fi.ModTime()}); err != nil {
				return err
			}
			if err := c.addDir(zw, full, zname+"/", buf); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			fh := &zip.FileHeader{Name: zname, Method: zip.Store, Modified: fi.ModTime()}
			fh.SetMode(0o644)
			dst, err := zw.CreateHeader(fh)
			if err != nil {
				return err
			}
			f, err := c.fs.Open(full)
			if err != nil {
				return fmt.Errorf("open %s: %w", full, err)
			}
			_, err = io.CopyBuffer(dst, struct{ io.Reader }{f}, buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("copy %s: %w", full, err)
			}
		}
	}
	return nil
}

// upload stores each file part of a multipart body into the link's folder:
// streamed into vfs (atomic, encrypted, the owner's quota), a free name
// found for each ("a (1).pdf" when a.pdf exists), never overwriting.
func (c *linkReq) upload(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		c.render(w, r, http.StatusBadRequest, linkPage{Upload: true, Base: c.base, Owner: c.res.Owner.Name, Error: "The upload could not be read."})
		return
	}
	buf := make([]byte, 256<<10)
	var stored []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			c.uploadFailed(w, r, http.StatusBadRequest, "The upload was interrupted.")
			return
		}
		fname := part.FileName()
		if fname == "" {
			part.Close()
			continue
		}
		// Browsers send a base name; others may send a path: keep the last element.
		fname = path.Base(strings.ReplaceAll(fname, "\\", "/"))
		if !validElem(fname) {
			part.Close()
			c.uploadFailed(w, r, http.StatusBadRequest, "That file name is not allowed.")
			return
		}
		got, status, msg := c.storeNew(fname, part, buf)
		part.Close()
		if status != 0 {
			c.uploadFailed(w, r, status, msg)
			return
		}
		stored = append(stored, got)
	}
	c.log.Info("webui: link upload", "link", c.res.Link.ID, "owner", c.res.Owner.Name, "files", len(stored))
	for _, name := range stored {
		c.audit(r, audit.OpWrite, joinName(c.res.Link.Path, name), 0, nil)
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{"stored": len(stored)})
		return
	}
	c.page(w, r, plural(len(stored), "file")+" sent. Thank you.")
}

func (c *linkReq) uploadFailed(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if wantsJSON(r) {
		writeJSON(w, status, map[string]any{"error": msg})
		return
	}
	c.render(w, r, status, linkPage{Title: "Send files", Upload: true, Base: c.base, Owner: c.res.Owner.Name, Error: msg, Flash: msg})
}

// storeNew writes src to a new file in the link's folder named fname or,
// if taken, "stem (N)ext". It returns the name used, or a status and
// message.
func (c *linkReq) storeNew(fname string, src io.Reader, buf []byte) (string, int, string) {
	ext := path.Ext(fname)
	stem := strings.TrimSuffix(fname, ext)
	for i := 0; i < 1000; i++ {
		n := fname
		if i > 0 {
			n = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		full := path.Join(c.res.Link.Path, n)
		f, err := c.fs.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			st, msg := httpError(err)
			return "", st, msg
		}
		if _, err := copyBuffer(f, src, buf); err != nil {
			_ = f.Abort()
			if errors.Is(err, errClientBody) {
				return "", http.StatusBadRequest, "The upload was interrupted."
			}
			st, msg := httpError(err)
			return "", st, msg
		}
		if err := f.Close(); err != nil {
			st, msg := httpError(err)
			return "", st, msg
		}
		return n, 0, ""
	}
	return "", http.StatusConflict, "Too many files with that name."
}
