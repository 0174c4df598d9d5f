package davd

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/webdav"
)

// Request bodies are parsed with encoding/xml; responses are written by hand
// with the "D:" prefix for DAV: (Windows' mini-redirector ignores DAV
// elements in a default namespace, golang.org/issue/11177) and every other
// namespace declared on the element that uses it, so each property value is
// self-contained.

const maxXMLBody = 1 << 20

var errBadXML = errors.New("davd: malformed or invalid XML body")

const nsDAV = "DAV:"

func davName(local string) xml.Name { return xml.Name{Space: nsDAV, Local: local} }

// propKey is the vfs.Meta.Props key of a property: "{namespace}local".
func propKey(n xml.Name) string { return "{" + n.Space + "}" + n.Local }

func parsePropKey(k string) (xml.Name, bool) {
	if !strings.HasPrefix(k, "{") {
		return xml.Name{}, false
	}
	i := strings.IndexByte(k, '}')
	if i < 0 || i == len(k)-1 {
		return xml.Name{}, false
	}
	return xml.Name{Space: k[1:i], Local: k[i+1:]}, true
}

// readBody reads at most maxXMLBody bytes; empty means no body.
func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxXMLBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxXMLBody {
		return nil, fmt.Errorf("%w: body over %d bytes", errBadXML, maxXMLBody)
	}
	return bytes.TrimSpace(b), nil
}

// xmlReader wraps a decoder: skips comments/PIs/directives and rejects a
// namespace prefix bound to "" (forbidden by Namespaces in XML 1.0 and what
// litmus propfind_invalid2 sends).
type xmlReader struct{ d *xml.Decoder }

func newXMLReader(b []byte) *xmlReader {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	return &xmlReader{d: d}
}

func (x *xmlReader) next() (xml.Token, error) {
	for {
		t, err := x.d.Token()
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("%w: unexpected end", errBadXML)
			}
			return nil, fmt.Errorf("%w: %v", errBadXML, err)
		}
		switch v := t.(type) {
		case xml.Comment, xml.ProcInst, xml.Directive:
			continue
		case xml.StartElement:
			for _, a := range v.Attr {
				if a.Name.Space == "xmlns" && a.Value == "" {
					return nil, fmt.Errorf("%w: empty namespace for prefix %q", errBadXML, a.Name.Local)
				}
			}
			return v.Copy(), nil
		case xml.CharData:
			return v.Copy(), nil
		default:
			return t, nil
		}
	}
}

// root returns the document element, which must be name.
func (x *xmlReader) root(name xml.Name) error {
	for {
		t, err := x.next()
		if err != nil {
			return err
		}
		switch v := t.(type) {
		case xml.StartElement:
			if v.Name != name {
				return fmt.Errorf("%w: root element %v, want %v", errBadXML, v.Name, name)
			}
			return nil
		case xml.CharData:
			if len(bytes.TrimSpace(v)) != 0 {
				return fmt.Errorf("%w: text before root", errBadXML)
			}
		}
	}
}

// child returns the next child element, or ok=false at the parent's end.
func (x *xmlReader) child() (xml.StartElement, bool, error) {
	for {
		t, err := x.next()
		if err != nil {
			return xml.StartElement{}, false, err
		}
		switch v := t.(type) {
		case xml.StartElement:
			return v, true, nil
		case xml.EndElement:
			return xml.StartElement{}, false, nil
		}
	}
}

// skip consumes the rest of the current element.
func (x *xmlReader) skip() error {
	depth := 1
	for depth > 0 {
		t, err := x.next()
		if err != nil {
			return err
		}
		switch t.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// inner consumes the rest of the current element and returns its content
// as self-contained XML (every element declares its namespace).
func (x *xmlReader) inner() (string, error) {
	var b strings.Builder
	// defaults[i] is the default namespace in effect at depth i; the value
	// is pasted into elements whose namespace we don't know, so the top
	// level always declares.
	defaults := []string{"\x00unknown"}
	for {
		t, err := x.next()
		if err != nil {
			return "", err
		}
		switch v := t.(type) {
		case xml.StartElement:
			b.WriteByte('<')
			b.WriteString(v.Name.Local)
			def := defaults[len(defaults)-1]
			if v.Name.Space != def {
				b.WriteString(` xmlns="`)
				xml.EscapeText(&b, []byte(v.Name.Space))
				b.WriteByte('"')
			}
			defaults = append(defaults, v.Name.Space)
			n := 0
			for _, a := range v.Attr {
				switch {
				case a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns"):
					continue
				case a.Name.Space == "":
					fmt.Fprintf(&b, ` %s="`, a.Name.Local)
				case a.Name.Space == "http://www.w3.org/XML/1998/namespace" || a.Name.Space == "xml":
					fmt.Fprintf(&b, ` xml:%s="`, a.Name.Local)
				default:
					fmt.Fprintf(&b, ` xmlns:a%d="`, n)
					xml.EscapeText(&b, []byte(a.Name.Space))
					fmt.Fprintf(&b, `" a%d:%s="`, n, a.Name.Local)
					n++
				}
				xml.EscapeText(&b, []byte(a.Value))
				b.WriteByte('"')
			}
			b.WriteByte('>')
		case xml.EndElement:
			if len(defaults) == 1 {
				return b.String(), nil
			}
			defaults = defaults[:len(defaults)-1]
			b.WriteString("</")
			b.WriteString(v.Name.Local)
			b.WriteByte('>')
		case xml.CharData:
			xml.EscapeText(&b, v)
		}
	}
}

// names reads property names (children of DAV:prop in PROPFIND).
func (x *xmlReader) names() ([]xml.Name, error) {
	var out []xml.Name
	for {
		el, ok, err := x.child()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		out = append(out, el.Name)
		if err := x.skip(); err != nil {
			return nil, err
		}
	}
}

type propfindReq struct {
	allprop  bool
	propname bool
	props    []xml.Name // explicit names, or allprop's include
}

func parsePropfind(body []byte) (propfindReq, error) {
	if len(body) == 0 {
		return propfindReq{allprop: true}, nil
	}
	x := newXMLReader(body)
	if err := x.root(davName("propfind")); err != nil {
		return propfindReq{}, err
	}
	var pf propfindReq
	var haveProp, haveInclude bool
	for {
		el, ok, err := x.child()
		if err != nil {
			return propfindReq{}, err
		}
		if !ok {
			break
		}
		switch el.Name {
		case davName("allprop"):
			pf.allprop = true
			err = x.skip()
		case davName("propname"):
			pf.propname = true
			err = x.skip()
		case davName("prop"):
			haveProp = true
			var n []xml.Name
			n, err = x.names()
			pf.props = append(pf.props, n...)
		case davName("include"):
			haveInclude = true
			var n []xml.Name
			n, err = x.names()
			pf.props = append(pf.props, n...)
		default:
			err = x.skip()
		}
		if err != nil {
			return propfindReq{}, err
		}
	}
	count := 0
	for _, b := range []bool{pf.allprop, pf.propname, haveProp} {
		if b {
			count++
		}
	}
	if count != 1 || (haveInclude && !pf.allprop) || (haveProp && len(pf.props) == 0) {
		return propfindReq{}, fmt.Errorf("%w: propfind needs exactly one of allprop, propname, prop", errBadXML)
	}
	return pf, nil
}

func parseProppatch(body []byte) ([]webdav.Proppatch, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty propertyupdate", errBadXML)
	}
	x := newXMLReader(body)
	if err := x.root(davName("propertyupdate")); err != nil {
		return nil, err
	}
	var out []webdav.Proppatch
	for {
		el, ok, err := x.child()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		remove := false
		switch el.Name {
		case davName("set"):
		case davName("remove"):
			remove = true
		default:
			if err := x.skip(); err != nil {
				return nil, err
			}
			continue
		}
		p := webdav.Proppatch{Remove: remove}
		for {
			pe, ok, err := x.child()
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			if pe.Name != davName("prop") {
				if err := x.skip(); err != nil {
					return nil, err
				}
				continue
			}
			for {
				prop, ok, err := x.child()
				if err != nil {
					return nil, err
				}
				if !ok {
					break
				}
				v, err := x.inner()
				if err != nil {
					return nil, err
				}
				if remove && strings.TrimSpace(v) != "" {
					return nil, fmt.Errorf("%w: remove with a value", errBadXML)
				}
				p.Props = append(p.Props, webdav.Property{XMLName: prop.Name, InnerXML: []byte(v)})
			}
		}
		if len(p.Props) == 0 {
			return nil, fmt.Errorf("%w: empty %s", errBadXML, el.Name.Local)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty propertyupdate", errBadXML)
	}
	return out, nil
}

type lockInfo struct {
	shared bool
	owner  string
}

// parseLockInfo parses a LOCK body; ok=false for an empty body (refresh).
func parseLockInfo(body []byte) (li lockInfo, ok bool, err error) {
	if len(body) == 0 {
		return lockInfo{}, false, nil
	}
	x := newXMLReader(body)
	if err := x.root(davName("lockinfo")); err != nil {
		return lockInfo{}, false, err
	}
	var scope, write bool
	for {
		el, more, err := x.child()
		if err != nil {
			return lockInfo{}, false, err
		}
		if !more {
			break
		}
		switch el.Name {
		case davName("lockscope"):
			for {
				s, more, err := x.child()
				if err != nil {
					return lockInfo{}, false, err
				}
				if !more {
					break
				}
				switch s.Name {
				case davName("exclusive"):
					scope = true
				case davName("shared"):
					scope, li.shared = true, true
				}
				if err := x.skip(); err != nil {
					return lockInfo{}, false, err
				}
			}
		case davName("locktype"):
			for {
				s, more, err := x.child()
				if err != nil {
					return lockInfo{}, false, err
				}
				if !more {
					break
				}
				if s.Name == davName("write") {
					write = true
				}
				if err := x.skip(); err != nil {
					return lockInfo{}, false, err
				}
			}
		case davName("owner"):
			li.owner, err = x.inner()
			if err != nil {
				return lockInfo{}, false, err
			}
		default:
			if err := x.skip(); err != nil {
				return lockInfo{}, false, err
			}
		}
	}
	if !scope || !write {
		return lockInfo{}, false, fmt.Errorf("%w: lockinfo needs lockscope and locktype write", errBadXML)
	}
	return li, true, nil
}

// Response writing.

func escapeText(s string) string {
	if plainText(s) {
		return s
	}
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// plainText reports whether encoding/xml.EscapeText leaves s unchanged:
// printable ASCII without " ' & < >.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\'', c == '&', c == '<', c == '>':
			return false
		}
	}
	return true
}

// appendEscaped appends s escaped as encoding/xml.EscapeText does.
func appendEscaped(dst []byte, s string) []byte {
	if plainText(s) {
		return append(dst, s...)
	}
	b := bytes.NewBuffer(dst)
	xml.EscapeText(b, []byte(s))
	return b.Bytes()
}

// appendProp appends one property element with its (trusted,
// self-contained) inner XML.
func appendProp(b []byte, n xml.Name, inner []byte) []byte {
	if n.Space == nsDAV {
		b = append(b, "<D:"...)
		b = append(b, n.Local...)
		if len(inner) == 0 {
			return append(b, "/>"...)
		}
		b = append(b, '>')
		b = append(b, inner...)
		b = append(b, "</D:"...)
		b = append(b, n.Local...)
		return append(b, '>')
	}
	b = append(b, '<')
	b = append(b, n.Local...)
	b = append(b, ` xmlns="`...)
	b = appendEscaped(b, n.Space)
	b = append(b, '"')
	if len(inner) == 0 {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = append(b, inner...)
	b = append(b, "</"...)
	b = append(b, n.Local...)
	return append(b, '>')
}

func hrefFor(name string, dir bool) string {
	p := name
	if dir && p != "/" {
		p += "/"
	}
	return (&url.URL{Path: p}).EscapedPath()
}

// appendHref appends the XML-escaped href of name: hrefFor without
// allocating for names that need no escaping.
func appendHref(dst []byte, name string, dir bool) []byte {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/':
		default:
			return appendEscaped(dst, hrefFor(name, dir))
		}
	}
	dst = append(dst, name...)
	if dir && name != "/" {
		dst = append(dst, '/')
	}
	return dst
}

const (
	status200 = "HTTP/1.1 200 OK"
	status404 = "HTTP/1.1 404 Not Found"
)

func statusLine(code int) string {
	switch code {
	case http.StatusOK:
		return status200
	case http.StatusNotFound:
		return status404
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + webdav.StatusText(code)
}

// multistatus streams a 207 response. Each response is built in line and
// written with one Write to a 64 KiB buffered writer.
type multistatus struct {
	w       http.ResponseWriter
	bw      *bufio.Writer
	started bool
	line    []byte
}

func newMultistatus(w http.ResponseWriter) *multistatus {
	return &multistatus{w: w}
}

func (m *multistatus) start() {
	if m.started {
		return
	}
	m.started = true
	m.w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	m.w.WriteHeader(webdav.StatusMulti)
	m.bw = bufio.NewWriterSize(m.w, 64<<10)
	m.bw.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<D:multistatus xmlns:D="DAV:">`)
}

// response writes one response from the properties gathered in pc: a
// 200 propstat with the found ones (also when nothing was asked), a 404
// propstat with the missing ones.
func (m *multistatus) response(name string, dir bool, pc *propCtx) error {
	m.start()
	b := append(m.line[:0], "<D:response><D:href>"...)
	b = appendHref(b, name, dir)
	b = append(b, "</D:href>"...)
	if len(pc.found) > 0 || len(pc.missing) == 0 {
		b = append(b, "<D:propstat><D:prop>"...)
		for _, p := range pc.found {
			b = appendProp(b, p.name, pc.vals[p.start:p.end])
		}
		b = append(b, "</D:prop><D:status>"+status200+"</D:status></D:propstat>"...)
	}
	if len(pc.missing) > 0 {
		b = append(b, "<D:propstat><D:prop>"...)
		for _, n := range pc.missing {
			b = appendProp(b, n, nil)
		}
		b = append(b, "</D:prop><D:status>"+status404+"</D:status></D:propstat>"...)
	}
	b = append(b, "</D:response>\n"...)
	m.line = b
	_, err := m.bw.Write(b)
	return err
}

// propstats writes one response with its propstat groups.
func (m *multistatus) propstats(href string, pss []webdav.Propstat) error {
	m.start()
	b := append(m.line[:0], "<D:response><D:href>"...)
	b = appendEscaped(b, href)
	b = append(b, "</D:href>"...)
	for _, ps := range pss {
		b = append(b, "<D:propstat><D:prop>"...)
		for _, p := range ps.Props {
			b = appendProp(b, p.XMLName, p.InnerXML)
		}
		b = append(b, "</D:prop><D:status>"...)
		b = append(b, statusLine(ps.Status)...)
		b = append(b, "</D:status>"...)
		if ps.XMLError != "" {
			b = append(b, "<D:error>"+ps.XMLError+"</D:error>"...)
		}
		if ps.ResponseDescription != "" {
			b = append(b, "<D:responsedescription>"...)
			b = appendEscaped(b, ps.ResponseDescription)
			b = append(b, "</D:responsedescription>"...)
		}
		b = append(b, "</D:propstat>"...)
	}
	b = append(b, "</D:response>\n"...)
	m.line = b
	_, err := m.bw.Write(b)
	return err
}

// status writes one response with a status only (e.g. a member that failed).
func (m *multistatus) status(href string, code int, errXML string) error {
	m.start()
	b := append(m.line[:0], "<D:response><D:href>"...)
	b = appendEscaped(b, href)
	b = append(b, "</D:href><D:status>"+statusLine(code)+"</D:status>"...)
	if errXML != "" {
		b = append(b, "<D:error>"+errXML+"</D:error>"...)
	}
	b = append(b, "</D:response>\n"...)
	m.line = b
	_, err := m.bw.Write(b)
	return err
}

func (m *multistatus) close() error {
	m.start()
	m.bw.WriteString("</D:multistatus>\n")
	return m.bw.Flush()
}

// writeDAVError writes a status with a DAV:error body naming a precondition.
func writeDAVError(w http.ResponseWriter, code int, condition string) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?>`+"\n"+`<D:error xmlns:D="DAV:"><D:%s/></D:error>`+"\n", condition)
}
