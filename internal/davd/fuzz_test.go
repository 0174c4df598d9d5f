package davd

import (
	"bytes"
	"encoding/xml"
	"io"
	"testing"
)

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
