package webui

import (
	"cmp"
	"fmt"
	"github.com/securefsd/securefsd/internal/httpx"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"
)

// humanSize formats n bytes with binary units: "0 B", "999 B", "1.5 KiB".
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	const units = "KMGTPE"
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %ciB", v, units[i])
	}
	return fmt.Sprintf("%.0f %ciB", v, units[i])
}

// escapePath percent-escapes each element of a client name for use in a
// URL path, keeping the slashes: "/a b/c?d" -> "/a%20b/c%3Fd".
func escapePath(name string) string {
	return httpx.EscapePath(name)
}

// joinName joins a client directory and one element.
func joinName(dir, elem string) string {
	if dir == "/" {
		return "/" + elem
	}
	return dir + "/" + elem
}

// parentName is the directory holding name ("/" for the home).
func parentName(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 {
		return "/"
	}
	return name[:i]
}

// baseName is the last element of name ("" for the home).
func baseName(name string) string {
	return name[strings.LastIndexByte(name, '/')+1:]
}

// crumb is one link of the breadcrumb trail.
type crumb struct {
	Name string
	URL  string
}

func (ui *UI) breadcrumbs(dir string) []crumb {
	out := []crumb{{Name: "Home", URL: ui.opts.Prefix + "files/"}}
	if dir == "/" {
		return out
	}
	acc := ""
	for _, e := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		acc += "/" + e
		out = append(out, crumb{Name: e, URL: ui.opts.Prefix + "files" + escapePath(acc) + "/"})
	}
	return out
}

// entry is one row of the file list.
type entry struct {
	Name     string
	IsDir    bool
	Size     int64
	SizeText string
	ModTime  time.Time
	Date     string // local display
	ISODate  string // datetime attribute
	OpenURL  string // listing (folder) or download (file)
	RenameURL,
	DeleteURL,
	ShareURL string
}

// sortSpec is the list order from the query: sort=name|size|date, order=asc|desc.
type sortSpec struct {
	Key  string
	Desc bool
}

func parseSort(q url.Values) sortSpec {
	s := sortSpec{Key: q.Get("sort"), Desc: q.Get("order") == "desc"}
	switch s.Key {
	case "name", "size", "date":
	default:
		s.Key = "name"
	}
	return s
}

// sortEntries orders folders first, then by the key; ties by name.
func sortEntries(es []entry, s sortSpec) {
	slices.SortStableFunc(es, func(a, b entry) int {
		if a.IsDir != b.IsDir {
			if a.IsDir {
				return -1
			}
			return 1
		}
		var c int
		switch s.Key {
		case "size":
			c = cmp.Compare(a.Size, b.Size)
		case "date":
			c = a.ModTime.Compare(b.ModTime)
		}
		if c == 0 {
			c = cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.Name, b.Name))
		}
		if s.Desc {
			c = -c
		}
		return c
	})
}

// sortLink is a column header link: clicking the current key flips the order.
type sortLink struct {
	URL   string
	Arrow string // "▲", "▼" or ""
	Aria  string // aria-sort value
}

func (ui *UI) sortLinks(dirURL string, cur sortSpec) map[string]sortLink {
	m := map[string]sortLink{}
	for _, k := range []string{"name", "size", "date"} {
		l := sortLink{URL: dirURL + "?sort=" + k, Aria: "none"}
		if k == cur.Key {
			if cur.Desc {
				l.Arrow, l.Aria = "▼", "descending"
			} else {
				l.Arrow, l.Aria = "▲", "ascending"
				l.URL += "&order=desc"
			}
		}
		m[k] = l
	}
	return m
}

func makeEntry(ui *UI, dir string, fi fs.FileInfo) entry {
	name := fi.Name()
	full := joinName(dir, name)
	e := entry{
		Name:      name,
		IsDir:     fi.IsDir(),
		Size:      fi.Size(),
		ModTime:   fi.ModTime(),
		Date:      fi.ModTime().Local().Format("2006-01-02 15:04"),
		ISODate:   fi.ModTime().UTC().Format(time.RFC3339),
		RenameURL: ui.opts.Prefix + "rename" + escapePath(full),
		DeleteURL: ui.opts.Prefix + "delete" + escapePath(full),
		ShareURL:  ui.opts.Prefix + "share" + escapePath(full),
	}
	if e.IsDir {
		e.OpenURL = ui.opts.Prefix + "files" + escapePath(full) + "/"
		e.SizeText = "—"
	} else {
		e.OpenURL = ui.opts.Prefix + "dl" + escapePath(full)
		e.SizeText = humanSize(fi.Size())
	}
	return e
}

// contentDisposition builds an attachment header with an ASCII fallback
// filename and the exact name as RFC 5987/6266 filename*.
func contentDisposition(name string) string {
	var fallback strings.Builder
	for _, r := range name {
		switch {
		case r < 0x20 || r >= 0x7f || r == '"' || r == '\\' || r == '%' || r == ';':
			fallback.WriteByte('_')
		default:
			fallback.WriteRune(r)
		}
	}
	fb := fallback.String()
	if fb == "" {
		fb = "download"
	}
	return `attachment; filename="` + fb + `"; filename*=UTF-8''` + rfc5987Escape(name)
}

// rfc5987Escape percent-encodes everything but attr-char (RFC 5987 §3.2.1).
func rfc5987Escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// validElem checks a single name typed or uploaded by the user; vfs applies
// its own rules (reserved names, NUL, length) after this.
func validElem(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
