package davd

import (
	"bytes"
	"encoding/xml"
	"io"
	"testing"
	"unicode/utf8"
)

func utf8Valid(s string) bool { return utf8.ValidString(s) }

func FuzzParseIf(f *testing.F) {
	for _, s := range []string{
		"(<opaquelocktoken:a>)",
		`(<opaquelocktoken:a> ["etag"]) (Not <DAV:no-lock> ["etag"])`,
		`<http://h/p> (<opaquelocktoken:a>) <http://h/q> (["x"])`,
		"(Not", "<", "([", "(Not Not <a>)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lists, ok := parseIf(s)
		if ok && len(lists) == 0 {
			t.Fatal("ok with no lists")
		}
		for _, l := range lists {
			if len(l.conds) == 0 {
				t.Fatal("empty list accepted")
			}
		}
	})
}

// wellFormed reports whether s is well-formed XML content.
func wellFormed(s string) bool {
	d := xml.NewDecoder(bytes.NewReader([]byte("<x>" + s + "</x>")))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// FuzzXMLBodies: no panic on any body, and every stored or echoed value
// (dead property values, lock owners) is well-formed, self-contained XML,
// since responses paste it verbatim.
func FuzzXMLBodies(f *testing.F) {
	for _, s := range []string{
		propfindAll,
		`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>`,
		`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:x="urn:x"><D:set><D:prop><x:a xml:lang="en" x:attr="1">v<b xmlns="urn:y">&amp;</b></x:a></D:prop></D:set><D:remove><D:prop><x:b/></D:prop></D:remove></D:propertyupdate>`,
		`<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner><D:href>me &lt;x&gt;</D:href></D:owner></D:lockinfo>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parsePropfind(b)
		if patches, err := parseProppatch(b); err == nil {
			for _, p := range patches {
				for _, prop := range p.Props {
					if !wellFormed(string(prop.InnerXML)) {
						t.Fatalf("stored value not well-formed: %q", prop.InnerXML)
					}
				}
			}
		}
		if li, ok, err := parseLockInfo(b); err == nil && ok && !wellFormed(li.owner) {
			t.Fatalf("owner not well-formed: %q", li.owner)
		}
	})
}

// FuzzEscape checks the allocation-free response helpers against what
// they replace: appendEscaped against encoding/xml.EscapeText, appendHref
// against the escaped hrefFor, and that a property element built from any
// name and namespace parses back as well-formed XML with that name.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a.txt", "/d/b <&>'\".pdf", "/é ü", "x\x00y", "\xff", "tab\there", "a%20b", "~/-_."} {
		f.Add(s, "urn:x&y")
	}
	f.Fuzz(func(t *testing.T, s, ns string) {
		var want bytes.Buffer
		xml.EscapeText(&want, []byte(s))
		if got := appendEscaped([]byte("p"), s); string(got) != "p"+want.String() {
			t.Fatalf("appendEscaped(%q) = %q, want %q", s, got[1:], want.String())
		}
		for _, dir := range []bool{false, true} {
			name := cleanName(s)
			want.Reset()
			xml.EscapeText(&want, []byte(hrefFor(name, dir)))
			if got := appendHref(nil, name, dir); string(got) != want.String() {
				t.Fatalf("appendHref(%q, %v) = %q, want %q", name, dir, got, want.String())
			}
		}
		if ns == "" || ns == nsDAV {
			return
		}
		doc := appendProp([]byte(`<D:prop xmlns:D="DAV:">`), xml.Name{Space: ns, Local: "p"}, []byte("v"))
		doc = append(doc, "</D:prop>"...)
		d := xml.NewDecoder(bytes.NewReader(doc))
		d.Strict = true
		var names []xml.Name
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !utf8Valid(ns) {
					return // invalid UTF-8 namespaces cannot come from a parsed request
				}
				t.Fatalf("%q: %v", doc, err)
			}
			if se, ok := tok.(xml.StartElement); ok {
				names = append(names, se.Name)
			}
		}
		if len(names) != 2 || names[1].Local != "p" {
			t.Fatalf("%q parsed as %v", doc, names)
		}
	})
}
