package davd

import (
	"github.com/securefsd/securefsd/internal/httpx"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// listingTmpl is the small HTML page a GET of a collection returns (when no
// web client is mounted or the client does not ask for HTML).
var listingTmpl = template.Must(template.New("listing").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Path}}</title>
<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}td.n{text-align:right}</style>
</head><body>
<h1>Index of {{.Path}}</h1>
<table>
<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>
{{if .Parent}}<tr><td><a href="../">../</a></td><td></td><td></td></tr>{{end}}
{{range .Entries}}<tr><td><a href="{{.Href}}">{{.Name}}</a></td><td class="n">{{.Size}}</td><td>{{.Mod}}</td></tr>
{{end}}</table>
</body></html>
`))

type listingEntry struct {
	Name, Href, Size, Mod string
}

func (h *handler) listing(w http.ResponseWriter, r *http.Request, name string) error {
	kids, err := h.fs.ReadDir(name)
	if err != nil {
		return err
	}
	data := struct {
		Path    string
		Parent  bool
		Entries []listingEntry
	}{Path: hrefFor(name, true), Parent: name != "/"}
	if p, err := url.PathUnescape(data.Path); err == nil {
		data.Path = p
	}
	for _, k := range kids {
		e := listingEntry{Name: k.Name(), Href: "./" + httpx.EscapePath(k.Name()), Mod: k.ModTime().UTC().Format(time.DateTime)}
		switch {
		case k.IsDir():
			e.Name += "/"
			e.Href += "/"
		case k.Mode().IsRegular():
			e.Size = strconv.FormatInt(k.Size(), 10)
		default:
			continue
		}
		data.Entries = append(data.Entries, e)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	return listingTmpl.Execute(w, data)
}
