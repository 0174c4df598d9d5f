package davd

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/webdav"

	"github.com/securefsd/securefsd/internal/vfs"
)

// Live properties. PROPFIND answers them from the FileInfo of one Stat (or
// one ReadDir for a Depth: 1 listing): no file is opened or decrypted,
// except for oc:checksums when the cached hashes are stale.
var (
	pResourceType   = davName("resourcetype")
	pDisplayName    = davName("displayname")
	pContentLength  = davName("getcontentlength")
	pLastModified   = davName("getlastmodified")
	pContentType    = davName("getcontenttype")
	pETag           = davName("getetag")
	pSupportedLock  = davName("supportedlock")
	pLockDiscovery  = davName("lockdiscovery")
	pCreationDate   = davName("creationdate")
	pQuotaAvailable = davName("quota-available-bytes")
	pQuotaUsed      = davName("quota-used-bytes")
	pOCChecksums    = xml.Name{Space: nsOC, Local: "checksums"}
	pOCSize         = xml.Name{Space: nsOC, Local: "size"}
	pMSModified     = xml.Name{Space: nsMS, Local: "Win32LastModifiedTime"}
)

// allpropNames are returned for allprop (RFC 4918 9.1: the DAV: properties
// it defines; quota and checksums only when asked for).
var allpropNames = []xml.Name{
	pResourceType, pDisplayName, pContentLength, pLastModified, pContentType,
	pETag, pSupportedLock, pLockDiscovery,
}

// protected live properties: PROPPATCH of them fails with 403.
var protected = map[xml.Name]bool{
	pResourceType: true, pContentLength: true, pContentType: true, pETag: true,
	pSupportedLock: true, pLockDiscovery: true, pQuotaAvailable: true, pQuotaUsed: true,
	pOCChecksums: true, pOCSize: true, pCreationDate: true,
}

// propCtx holds per-request lazily computed values.
type propCtx struct {
	h        *handler
	ctx      context.Context
	usage    *vfs.Usage
	usageErr error
	// listDir and listMeta: the members' metadata of a Depth: 1 listing,
	// read with the listing in one pass (vfs.ReadDirMeta), so a member
	// costs no metadata lookup of its own.
	listDir  string
	listMeta map[string]vfs.Meta
}

// listed returns the metadata of a member of the listing (ok=false if
// name is not one: look it up by name).
func (pc *propCtx) listed(name string) (vfs.Meta, bool) {
	if pc.listMeta == nil || name == pc.listDir || parentName(name) != pc.listDir {
		return vfs.Meta{}, false
	}
	return pc.listMeta[baseName(name)], true
}

func (pc *propCtx) getUsage() (*vfs.Usage, error) {
	if pc.usage == nil && pc.usageErr == nil {
		u, err := pc.h.fs.Usage()
		pc.usage, pc.usageErr = &u, err
	}
	return pc.usage, pc.usageErr
}

// live returns the value of a live property; ok=false if n is not live for
// this resource.
func (pc *propCtx) live(name string, fi fs.FileInfo, n xml.Name) (string, bool, error) {
	dir := fi.IsDir()
	switch n {
	case pResourceType:
		if dir {
			return "<D:collection/>", true, nil
		}
		return "", true, nil
	case pDisplayName:
		return escapeText(baseName(name)), true, nil
	case pLastModified:
		return fi.ModTime().UTC().Format(http.TimeFormat), true, nil
	case pSupportedLock:
		return "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>" +
			"<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>", true, nil
	case pLockDiscovery:
		var b bytes.Buffer
		for _, l := range pc.h.s.locks.discover(pc.h.home, name) {
			writeActiveLock(&b, l, pc.h.s.now())
		}
		return b.String(), true, nil
	case pQuotaAvailable, pQuotaUsed:
		if !dir {
			return "", false, nil
		}
		u, err := pc.getUsage()
		if err != nil {
			return "", false, err
		}
		if n == pQuotaUsed {
			return strconv.FormatInt(u.UsedBytes, 10), true, nil
		}
		if u.QuotaBytes == 0 && u.DiskTotal == 0 {
			return "", false, nil // unknown: better absent than "0 bytes free"
		}
		return strconv.FormatInt(available(u), 10), true, nil
	}
	if dir {
		return "", false, nil
	}
	switch n {
	case pContentLength, pOCSize:
		return strconv.FormatInt(fi.Size(), 10), true, nil
	case pContentType:
		return escapeText(contentType(name)), true, nil
	case pETag:
		return escapeText(etag(fi)), true, nil
	case pOCChecksums:
		if m, ok := pc.listed(name); ok && m.Hashes != nil && m.Hashes.MD5 != "" && m.Hashes.SHA1 != "" {
			// Valid for this entry (vfs.ReadDirMeta checked size and mtime).
			return fmt.Sprintf("<checksum>SHA1:%s MD5:%s</checksum>", m.Hashes.SHA1, m.Hashes.MD5), true, nil
		}
		hs, err := pc.h.fs.Checksums(pc.ctx, name, vfs.HashMD5, vfs.HashSHA1)
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("<checksum>SHA1:%s MD5:%s</checksum>", hs.SHA1, hs.MD5), true, nil
	}
	return "", false, nil
}

// available is what the user may still store: the quota's rest, bounded
// by the free disk space.
func available(u *vfs.Usage) int64 {
	free := u.DiskFree
	if u.QuotaBytes > 0 {
		rest := u.QuotaBytes - u.UsedBytes
		if rest < 0 {
			rest = 0
		}
		if u.DiskTotal == 0 || rest < free {
			free = rest
		}
	}
	if free < 0 {
		free = 0
	}
	return free
}

func writeActiveLock(b *bytes.Buffer, l davLock, now time.Time) {
	depth := "0"
	if l.infinite {
		depth = "infinity"
	}
	scope := "<D:exclusive/>"
	if l.shared {
		scope = "<D:shared/>"
	}
	secs := int64(l.expires.Sub(now)/time.Second) + 1
	if secs < 1 {
		secs = 1
	}
	fmt.Fprintf(b, "<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope>%s</D:lockscope><D:depth>%s</D:depth>", scope, depth)
	if l.owner != "" {
		b.WriteString("<D:owner>" + l.owner + "</D:owner>")
	}
	fmt.Fprintf(b, "<D:timeout>Second-%d</D:timeout><D:locktoken><D:href>%s</D:href></D:locktoken><D:lockroot><D:href>%s</D:href></D:lockroot></D:activelock>",
		secs, escapeText(l.token), escapeText(hrefFor(l.root, false)))
}

func (h *handler) propfind(w http.ResponseWriter, r *http.Request, name string) error {
	fi, err := h.fs.Stat(name)
	if err != nil {
		return err // a cheap 404 for Finder's ._* and .DS_Store probes
	}
	body, err := readBody(r.Body)
	if err != nil {
		return err
	}
	pf, err := parsePropfind(body)
	if err != nil {
		return err
	}
	depth, noroot := 0, false
	switch d := strings.ReplaceAll(r.Header.Get("Depth"), " ", ""); d {
	case "0":
	case "1":
		depth = 1
	case "1,noroot": // IIS extension some Windows tools send
		depth, noroot = 1, true
	case "", "infinity":
		// RFC 4918 9.1.1: refuse rather than walk a whole tree.
		return &statusError{code: http.StatusForbidden, cond: "propfind-finite-depth", msg: "Depth: infinity"}
	default:
		return httpErr(http.StatusBadRequest, "bad Depth")
	}
	pc := &propCtx{h: h, ctx: r.Context()}
	ms := newMultistatus(w)
	if !noroot || !fi.IsDir() {
		if err := h.propfindOne(ms, pc, name, fi, pf); err != nil {
			return err // nothing written yet
		}
	}
	if depth == 1 && fi.IsDir() {
		kids, metas, err := h.fs.ReadDirMeta(name)
		switch {
		case err != nil && kids == nil:
			h.log.Error("dav: PROPFIND listing", "path", name, "err", err)
		case err != nil:
			// A damaged metadata file must not hide the entries: list
			// them, without the properties it held.
			h.log.Error("dav: reading properties of a listing", "path", name, "err", err)
		}
		if kids != nil {
			pc.listDir, pc.listMeta = name, metas
		}
		for _, k := range kids {
			if !k.IsDir() && !k.Mode().IsRegular() {
				continue // planted symlinks and devices are not shown
			}
			kn := joinName(name, k.Name())
			if err := h.propfindOne(ms, pc, kn, k, pf); err != nil {
				h.log.Warn("dav: PROPFIND member", "path", kn, "err", err)
				ms.status(hrefFor(kn, k.IsDir()), statusOf(err), "")
			}
		}
	}
	return ms.close()
}

func (h *handler) propfindOne(ms *multistatus, pc *propCtx, name string, fi fs.FileInfo, pf propfindReq) error {
	var dead map[xml.Name]webdav.Property
	loadDead := func() error {
		if dead != nil {
			return nil
		}
		var d map[xml.Name]webdav.Property
		var err error
		if m, ok := pc.listed(name); ok {
			d = propsOf(m)
		} else {
			d, err = deadProps(h.fs, name)
		}
		if err != nil {
			// A damaged metadata file must not hide the entry itself:
			// list it without dead properties.
			if errors.Is(err, vfs.ErrIntegrity) {
				h.log.Error("dav: integrity failure reading properties", "path", name, "err", err)
			} else {
				h.log.Warn("dav: reading properties", "path", name, "err", err)
			}
			d = nil
		}
		if d == nil {
			d = map[xml.Name]webdav.Property{}
		}
		dead = d
		return nil
	}
	ok := webdav.Propstat{Status: http.StatusOK}
	missing := webdav.Propstat{Status: http.StatusNotFound}
	var names []xml.Name
	switch {
	case pf.propname:
		if err := loadDead(); err != nil {
			return err
		}
		for _, n := range allpropNames {
			if isLiveName(fi, n) {
				ok.Props = append(ok.Props, webdav.Property{XMLName: n})
			}
		}
		for _, n := range sortedNames(dead) {
			ok.Props = append(ok.Props, webdav.Property{XMLName: n})
		}
		return ms.propstats(hrefFor(name, fi.IsDir()), []webdav.Propstat{ok})
	case pf.allprop:
		if err := loadDead(); err != nil {
			return err
		}
		seen := map[xml.Name]bool{}
		for _, n := range allpropNames {
			if isLiveName(fi, n) {
				names = append(names, n)
				seen[n] = true
			}
		}
		for _, n := range sortedNames(dead) {
			if !seen[n] {
				names = append(names, n)
				seen[n] = true
			}
		}
		for _, n := range pf.props {
			if !seen[n] {
				names = append(names, n)
				seen[n] = true
			}
		}
	default:
		names = pf.props
	}
	for _, n := range names {
		if dead != nil {
			if p, found := dead[n]; found {
				ok.Props = append(ok.Props, p)
				continue
			}
		}
		v, isLive, err := pc.live(name, fi, n)
		if err != nil {
			if errors.Is(err, vfs.ErrIntegrity) {
				h.log.Error("dav: integrity failure while computing checksums", "path", name, "err", err)
			} else {
				h.log.Warn("dav: property", "path", name, "prop", n.Local, "err", err)
			}
			missing.Props = append(missing.Props, webdav.Property{XMLName: n})
			continue
		}
		if isLive {
			ok.Props = append(ok.Props, webdav.Property{XMLName: n, InnerXML: []byte(v)})
			continue
		}
		if protected[n] {
			// Never stored as a dead property (PROPPATCH refuses it): no
			// need to read metadata, e.g. oc:checksums of a collection.
			missing.Props = append(missing.Props, webdav.Property{XMLName: n})
			continue
		}
		if dead == nil {
			if err := loadDead(); err != nil {
				return err
			}
		}
		if p, found := dead[n]; found {
			ok.Props = append(ok.Props, p)
		} else {
			missing.Props = append(missing.Props, webdav.Property{XMLName: n})
		}
	}
	var pss []webdav.Propstat
	if len(ok.Props) > 0 || len(missing.Props) == 0 {
		pss = append(pss, ok)
	}
	if len(missing.Props) > 0 {
		pss = append(pss, missing)
	}
	return ms.propstats(hrefFor(name, fi.IsDir()), pss)
}

// isLiveName reports whether n is a live property of the resource without
// computing it (the names allprop and propname list).
func isLiveName(fi fs.FileInfo, n xml.Name) bool {
	switch n {
	case pResourceType, pDisplayName, pLastModified, pSupportedLock, pLockDiscovery:
		return true
	case pContentLength, pContentType, pETag:
		return !fi.IsDir()
	}
	return false
}

func sortedNames(m map[xml.Name]webdav.Property) []xml.Name {
	out := make([]xml.Name, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Space != out[j].Space {
			return out[i].Space < out[j].Space
		}
		return out[i].Local < out[j].Local
	})
	return out
}

func (h *handler) proppatch(w http.ResponseWriter, r *http.Request, name string) error {
	fi, err := h.fs.Stat(name)
	if err != nil {
		return err
	}
	if err := h.conditions(r, name, writeScope{name: name}); err != nil {
		return err
	}
	body, err := readBody(r.Body)
	if err != nil {
		return err
	}
	patches, err := parseProppatch(body)
	if err != nil {
		return err
	}
	var (
		forbidden, others []webdav.Property
		dead              []webdav.Proppatch
		mtime             time.Time
		setMtime          bool
	)
	for _, p := range patches {
		var keep []webdav.Property
		for _, prop := range p.Props {
			n := prop.XMLName
			switch {
			case protected[n]:
				forbidden = append(forbidden, webdav.Property{XMLName: n})
				continue
			case n == pMSModified || n == pLastModified:
				// Windows sets Win32LastModifiedTime after an upload; some
				// clients set DAV:getlastmodified. Both become the mtime.
				others = append(others, webdav.Property{XMLName: n})
				if !p.Remove {
					if t, err := http.ParseTime(string(bytes.TrimSpace(innerText(prop.InnerXML)))); err == nil {
						mtime, setMtime = t, true
					}
				}
				continue
			}
			others = append(others, webdav.Property{XMLName: n})
			keep = append(keep, prop)
		}
		if len(keep) > 0 {
			dead = append(dead, webdav.Proppatch{Remove: p.Remove, Props: keep})
		}
	}
	var pss []webdav.Propstat
	if len(forbidden) > 0 {
		// All or nothing (RFC 4918 9.2): nothing is applied.
		pss = append(pss, webdav.Propstat{
			Status: http.StatusForbidden, Props: forbidden,
			XMLError: `<D:cannot-modify-protected-property/>`,
		})
		if len(others) > 0 {
			pss = append(pss, webdav.Propstat{Status: webdav.StatusFailedDependency, Props: others})
		}
	} else {
		if len(dead) > 0 {
			if err := patchDeadProps(h.fs, name, dead); err != nil {
				return err
			}
		}
		if setMtime {
			if err := h.fs.Chtimes(name, mtime, mtime); err != nil {
				return err
			}
		}
		pss = append(pss, webdav.Propstat{Status: http.StatusOK, Props: others})
	}
	ms := newMultistatus(w)
	if err := ms.propstats(hrefFor(name, fi.IsDir()), pss); err != nil {
		return nil
	}
	return ms.close()
}

// innerText strips markup from a stored value (dates are plain text).
func innerText(b []byte) []byte {
	d := xml.NewDecoder(bytes.NewReader(append(append([]byte("<x>"), b...), "</x>"...)))
	var out []byte
	for {
		t, err := d.Token()
		if err != nil {
			return out
		}
		if c, ok := t.(xml.CharData); ok {
			out = append(out, c...)
		}
	}
}

func (h *handler) lock(w http.ResponseWriter, r *http.Request, name string) error {
	body, err := readBody(r.Body)
	if err != nil {
		return err
	}
	li, hasBody, err := parseLockInfo(body)
	if err != nil {
		return err
	}
	timeout := parseTimeout(r.Header.Get("Timeout"))
	var l davLock
	created := false
	if !hasBody {
		// Refresh: the token comes in the If header.
		lists, ok := parseIf(r.Header.Get("If"))
		if !ok {
			return httpErr(http.StatusBadRequest, "LOCK refresh needs an If header with the lock token")
		}
		token := ""
		for t := range submittedTokens(lists) {
			if h.s.locks.tokenCovers(h.home, name, t) {
				token = t
				break
			}
		}
		if token == "" {
			return httpErr(http.StatusPreconditionFailed, "no such lock")
		}
		l, err = h.s.locks.refresh(h.home, h.user, name, token, timeout)
		switch {
		case errors.Is(err, errNoSuchLock):
			return httpErr(http.StatusPreconditionFailed, "no such lock")
		case errors.Is(err, errLockForeign):
			return httpErr(http.StatusForbidden, "lock of another user")
		case err != nil:
			return err
		}
	} else {
		infinite := true
		switch r.Header.Get("Depth") {
		case "", "infinity":
		case "0":
			infinite = false
		default:
			return httpErr(http.StatusBadRequest, "LOCK Depth must be 0 or infinity")
		}
		if _, err := h.evalIf(r, name); err != nil {
			return err
		}
		_, statErr := h.fs.Stat(name)
		if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
			return statErr
		}
		if statErr != nil {
			if name == "/" {
				return statErr
			}
			if pfi, err := h.fs.Stat(parentName(name)); err != nil || !pfi.IsDir() {
				return httpErr(http.StatusConflict, "parent collection missing")
			}
		}
		nl, err := h.s.locks.create(h.home, h.user, name, li.shared, infinite, li.owner, timeout)
		if err != nil {
			return err
		}
		if statErr != nil {
			// LOCK of an unmapped URL creates an empty resource (RFC 4918 7.3).
			f, err := h.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err == nil {
				err = f.Close()
			}
			if err != nil {
				h.s.locks.unlock(h.home, h.user, name, nl.token)
				if errors.Is(err, fs.ErrNotExist) {
					return httpErr(http.StatusConflict, "parent collection missing")
				}
				return err
			}
			created = true
		}
		l = *nl
		w.Header().Set("Lock-Token", "<"+l.token+">")
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<D:prop xmlns:D="DAV:"><D:lockdiscovery>`)
	writeActiveLock(&b, l, h.s.now())
	b.WriteString("</D:lockdiscovery></D:prop>\n")
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	if created {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	w.Write(b.Bytes())
	return nil
}

func (h *handler) unlock(w http.ResponseWriter, r *http.Request, name string) error {
	t := r.Header.Get("Lock-Token")
	if len(t) < 3 || t[0] != '<' || t[len(t)-1] != '>' {
		return httpErr(http.StatusBadRequest, "malformed Lock-Token")
	}
	switch err := h.s.locks.unlock(h.home, h.user, name, t[1:len(t)-1]); {
	case errors.Is(err, errNoSuchLock):
		return &statusError{code: http.StatusConflict, cond: "lock-token-matches-request-uri", msg: "no such lock"}
	case errors.Is(err, errLockForeign):
		return httpErr(http.StatusForbidden, "lock of another user")
	case err != nil:
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
