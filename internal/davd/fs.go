package davd

import (
	"context"
	"encoding/xml"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/net/webdav"

	"github.com/securefsd/securefsd/internal/vfs"
)

// This file adapts *vfs.FS to golang.org/x/net/webdav's interfaces
// (FileSystem, File, DeadPropsHolder, ContentTyper, ETager). Our handler
// (handler.go) replaces webdav.Handler but goes through the same
// interfaces and helpers, so the adapter also works under webdav.Handler.

var (
	_ webdav.FileSystem      = davFS{}
	_ webdav.File            = (*davFile)(nil)
	_ webdav.DeadPropsHolder = (*davFile)(nil)
	_ webdav.ContentTyper    = fileInfo{}
	_ webdav.ETager          = fileInfo{}
)

// davFS is a webdav.FileSystem over one user's home.
type davFS struct{ fs *vfs.FS }

func (d davFS) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	return d.fs.Mkdir(name, perm)
}

func (d davFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	f, err := d.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &davFile{File: f, fs: d.fs, name: cleanName(name)}, nil
}

func (d davFS) RemoveAll(ctx context.Context, name string) error {
	if cleanName(name) == "/" {
		return &fs.PathError{Op: "removeall", Path: "/", Err: fs.ErrPermission}
	}
	return d.fs.RemoveAll(name)
}

// Rename overwrites like os.Rename (webdav.Handler removes a destination
// collection itself first).
func (d davFS) Rename(ctx context.Context, oldName, newName string) error {
	return d.fs.Rename(oldName, newName, true)
}

func (d davFS) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	fi, err := d.fs.Stat(name)
	if err != nil {
		return nil, err
	}
	return fileInfo{fi}, nil
}

// davFile is a webdav.File over a vfs file; dead properties live in the
// entry's vfs metadata.
type davFile struct {
	*vfs.File
	fs   *vfs.FS
	name string
}

func (f *davFile) Readdir(n int) ([]fs.FileInfo, error) {
	fis, err := f.File.Readdir(n)
	for i, fi := range fis {
		fis[i] = fileInfo{fi}
	}
	return fis, err
}

func (f *davFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return fileInfo{fi}, nil
}

func (f *davFile) DeadProps() (map[xml.Name]webdav.Property, error) {
	return deadProps(f.fs, f.name)
}

func (f *davFile) Patch(patches []webdav.Proppatch) ([]webdav.Propstat, error) {
	if err := patchDeadProps(f.fs, f.name, patches); err != nil {
		return nil, err
	}
	ps := webdav.Propstat{Status: http.StatusOK}
	for _, p := range patches {
		for _, prop := range p.Props {
			ps.Props = append(ps.Props, webdav.Property{XMLName: prop.XMLName})
		}
	}
	return []webdav.Propstat{ps}, nil
}

// deadProps reads the stored dead properties of name.
func deadProps(fsys *vfs.FS, name string) (map[xml.Name]webdav.Property, error) {
	m, err := fsys.Meta(name)
	if err != nil {
		return nil, err
	}
	return propsOf(m), nil
}

// propsOf returns the dead properties stored in m.
func propsOf(m vfs.Meta) map[xml.Name]webdav.Property {
	out := make(map[xml.Name]webdav.Property, len(m.Props))
	for k, v := range m.Props {
		n, ok := parsePropKey(k)
		if !ok {
			continue
		}
		out[n] = webdav.Property{XMLName: n, InnerXML: []byte(v)}
	}
	return out
}

// patchDeadProps applies set/remove instructions in order, all or nothing.
func patchDeadProps(fsys *vfs.FS, name string, patches []webdav.Proppatch) error {
	return fsys.UpdateMeta(name, func(m *vfs.Meta) error {
		if m.Props == nil {
			m.Props = map[string]string{}
		}
		for _, p := range patches {
			for _, prop := range p.Props {
				if p.Remove {
					delete(m.Props, propKey(prop.XMLName))
				} else {
					m.Props[propKey(prop.XMLName)] = string(prop.InnerXML)
				}
			}
		}
		return nil
	})
}

// fileInfo adds ContentTyper and ETager so that no listing opens a file.
type fileInfo struct{ fs.FileInfo }

func (fi fileInfo) ContentType(ctx context.Context) (string, error) {
	return contentType(fi.Name()), nil
}

func (fi fileInfo) ETag(ctx context.Context) (string, error) { return etag(fi.FileInfo), nil }

// contentType guesses from the extension only (never from the content).
func contentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// etag is a strong validator from size and mtime (nanoseconds), like
// Apache's default; it changes with every replacement (new mtime).
func etag(fi fs.FileInfo) string {
	var b [40]byte
	return `"` + string(appendETagBody(b[:0], fi)) + `"`
}

// appendETagBody appends the ETag of fi without its quotes.
func appendETagBody(dst []byte, fi fs.FileInfo) []byte {
	dst = strconv.AppendInt(dst, fi.ModTime().UnixNano(), 16)
	dst = append(dst, '-')
	return strconv.AppendInt(dst, fi.Size(), 16)
}

// cleanName turns a URL path into a clean absolute vfs name ("/" or "/a/b").
func cleanName(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

func baseName(name string) string {
	if name == "/" {
		return ""
	}
	return name[strings.LastIndexByte(name, '/')+1:]
}
