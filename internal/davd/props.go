package davd

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"github.com/securefsd/securefsd/internal/perm"
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

// propCtx holds per-request lazily computed values, and scratch space
// reused from one response to the next: a 10,000-entry listing must not
// allocate per entry.
type propCtx struct {
	h        *handler
	ctx      context.Context
	usage    *vfs.Usage
	usageErr error
	// folderUsage: the usage of each shared folder the request reached.
	folderUsage map[string]*vfs.Usage
	// listDir and listMeta: the members' metadata of a Depth: 1 listing,
	// read with the listing in one pass (vfs.ReadDirMeta), so a member
	// costs no metadata lookup of its own.
	listDir  string
	listMeta map[string]vfs.Meta
	// treeLocks: the live locks of each tree the request reached, read
	// once (in a cluster each read is an etcd round trip).
	treeLocks map[string][]davLock

	// hashed is the content this request has read to compute checksums;
	// deferred counts the files left without (checksumBudget).
	hashed   int64
	deferred int

	// The response being built: found properties (values in vals),
	// missing ones, and the names allprop asks for.
	vals    []byte
	found   []propRef
	missing []xml.Name
	names   []xml.Name
}

// propRef is a property of the response being built; its inner XML
// (trusted, self-contained) is propCtx.vals[start:end].
type propRef struct {
	name       xml.Name
	start, end int
}

// locksAt returns the live locks covering name, reading its tree's locks
// at the first member of the request that asks.
func (pc *propCtx) locksAt(name string) ([]davLock, error) {
	tree := pc.h.tree(name)
	all, ok := pc.treeLocks[tree]
	if !ok {
		var err error
		if all, err = pc.h.s.locks.live(tree); err != nil {
			return nil, err
		}
		if pc.treeLocks == nil {
			pc.treeLocks = map[string][]davLock{}
		}
		pc.treeLocks[tree] = all
	}
	var out []davLock
	for i := range all {
		if all[i].covers(name) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// listed returns the metadata of a member of the listing (ok=false if
// name is not one: look it up by name).
func (pc *propCtx) listed(name string) (vfs.Meta, bool) {
	if pc.listMeta == nil || name == pc.listDir || parentName(name) != pc.listDir {
		return vfs.Meta{}, false
	}
	return pc.listMeta[baseName(name)], true
}

// getUsage is the usage of the tree that holds name (the home, or a shared
// folder with its own quota), read once per tree and request.
func (pc *propCtx) getUsage(name string) (*vfs.Usage, error) {
	if f, ok := pc.h.fs.FolderOf(name); ok {
		if pc.folderUsage == nil {
			pc.folderUsage = map[string]*vfs.Usage{}
		}
		if u := pc.folderUsage[f]; u != nil {
			return u, nil
		}
		u, err := pc.h.fs.UsageAt(name)
		if err != nil {
			return nil, err
		}
		pc.folderUsage[f] = &u
		return &u, nil
	}
	if pc.usage == nil && pc.usageErr == nil {
		u, err := pc.h.fs.Usage()
		pc.usage, pc.usageErr = &u, err
	}
	return pc.usage, pc.usageErr
}

// supportedLockXML is the value of DAV:supportedlock, the same for every
// resource.
const supportedLockXML = "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>" +
	"<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>"

// appendLive appends the value (inner XML) of a live property to dst;
// ok=false if n is not live for this resource (dst is then unchanged).
func (pc *propCtx) appendLive(dst []byte, name string, fi fs.FileInfo, n xml.Name) ([]byte, bool, error) {
	dir := fi.IsDir()
	if n.Space == nsDAV {
		switch n.Local {
		case "resourcetype":
			if dir {
				dst = append(dst, "<D:collection/>"...)
			}
			return dst, true, nil
		case "displayname":
			return appendEscaped(dst, baseName(name)), true, nil
		case "getlastmodified":
			return fi.ModTime().UTC().AppendFormat(dst, http.TimeFormat), true, nil
		case "supportedlock":
			return append(dst, supportedLockXML...), true, nil
		case "lockdiscovery":
			locks, err := pc.locksAt(name)
			if err != nil {
				return dst, true, err
			}
			if len(locks) == 0 {
				return dst, true, nil
			}
			var b bytes.Buffer
			for _, l := range locks {
				writeActiveLock(&b, l, pc.h.s.now())
			}
			return append(dst, b.Bytes()...), true, nil
		case "quota-available-bytes", "quota-used-bytes":
			if !dir {
				return dst, false, nil
			}
			u, err := pc.getUsage(name)
			if err != nil {
				return dst, false, err
			}
			if n.Local == "quota-used-bytes" {
				return strconv.AppendInt(dst, u.UsedBytes, 10), true, nil
			}
			if u.QuotaBytes == 0 && u.DiskTotal == 0 {
				return dst, false, nil // unknown: better absent than "0 bytes free"
			}
			return strconv.AppendInt(dst, available(u), 10), true, nil
		}
	}
	if dir {
		return dst, false, nil
	}
	switch n {
	case pContentLength, pOCSize:
		return strconv.AppendInt(dst, fi.Size(), 10), true, nil
	case pContentType:
		return appendEscaped(dst, contentType(name)), true, nil
	case pETag:
		// Quotes escaped as encoding/xml.EscapeText does.
		dst = append(dst, "&#34;"...)
		dst = appendETagBody(dst, fi)
		return append(dst, "&#34;"...), true, nil
	case pOCChecksums:
		var hs vfs.Hashes
		if m, ok := pc.listed(name); ok && m.Hashes != nil && m.Hashes.MD5 != "" && m.Hashes.SHA1 != "" {
			// Valid for this entry (vfs.ReadDirMeta checked size and mtime).
			hs = *m.Hashes
		} else {
			if pc.hashed >= pc.h.s.checksumBudget {
				// Left out (404 in this response); a later request
				// computes it, and the cache keeps what this one did.
				pc.deferred++
				return dst, false, nil
			}
			var err error
			if hs, err = pc.h.fs.Checksums(pc.ctx, name, vfs.HashMD5, vfs.HashSHA1); err != nil {
				return dst, false, err
			}
			pc.hashed += fi.Size()
		}
		dst = append(dst, "<checksum>SHA1:"...)
		dst = appendEscaped(dst, hs.SHA1)
		dst = append(dst, " MD5:"...)
		dst = appendEscaped(dst, hs.MD5)
		return append(dst, "</checksum>"...), true, nil
	}
	return dst, false, nil
}

// checksumBudget bounds the content one PROPFIND reads to compute
// oc:checksums that are not cached yet (digests are computed on demand,
// vfs.Options.UploadHashes): a listing of many never-hashed files must not
// turn one request into a read of the whole directory. The file that
// crosses the budget is finished, so a single file of any size gets its
// checksums.
const checksumBudget = 1 << 30

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
	if pc.deferred > 0 {
		h.log.Info("dav: PROPFIND left checksums out for files over the per-request hashing budget; later requests compute them",
			"event", eventHashBudget, "path", name, "files", pc.deferred, "hashed_bytes", pc.hashed)
	}
	return ms.close()
}

// propfindOne writes the response for one resource. Its properties are
// gathered into pc's scratch space first, so an error returned (nothing
// written for this resource) can still become a status response.
func (h *handler) propfindOne(ms *multistatus, pc *propCtx, name string, fi fs.FileInfo, pf propfindReq) error {
	var dead map[xml.Name]webdav.Property
	deadLoaded := false
	loadDead := func() {
		deadLoaded = true
		var err error
		if m, ok := pc.listed(name); ok {
			if len(m.Props) > 0 {
				dead = propsOf(m)
			}
		} else {
			dead, err = deadProps(h.fs, name)
		}
		if err != nil {
			// A damaged metadata file must not hide the entry itself:
			// list it without dead properties.
			if errors.Is(err, vfs.ErrIntegrity) {
				h.log.Error("dav: integrity failure reading properties", "path", name, "err", err)
			} else {
				h.log.Warn("dav: reading properties", "path", name, "err", err)
			}
			dead = nil
		}
	}
	pc.vals, pc.found, pc.missing = pc.vals[:0], pc.found[:0], pc.missing[:0]
	var names []xml.Name
	switch {
	case pf.propname:
		loadDead()
		for _, n := range allpropFor(fi) {
			pc.found = append(pc.found, propRef{name: n})
		}
		for _, n := range sortedNames(dead) {
			pc.found = append(pc.found, propRef{name: n})
		}
		return ms.response(name, fi.IsDir(), pc)
	case pf.allprop:
		loadDead()
		names = allpropFor(fi)
		if len(dead) > 0 || len(pf.props) > 0 {
			names = append(pc.names[:0], names...)
			for _, n := range sortedNames(dead) {
				names = appendNew(names, n)
			}
			for _, n := range pf.props {
				names = appendNew(names, n)
			}
			pc.names = names
		}
	default:
		names = pf.props
	}
	for _, n := range names {
		if p, found := dead[n]; found {
			pc.addFound(n, p.InnerXML)
			continue
		}
		start := len(pc.vals)
		vals, isLive, err := pc.appendLive(pc.vals, name, fi, n)
		if err != nil {
			if errors.Is(err, vfs.ErrIntegrity) {
				h.log.Error("dav: integrity failure while computing checksums", "path", name, "err", err)
			} else {
				h.log.Warn("dav: property", "path", name, "prop", n.Local, "err", err)
			}
			pc.missing = append(pc.missing, n)
			continue
		}
		if isLive {
			pc.vals = vals
			pc.found = append(pc.found, propRef{name: n, start: start, end: len(vals)})
			continue
		}
		if protected[n] {
			// Never stored as a dead property (PROPPATCH refuses it): no
			// need to read metadata, e.g. oc:checksums of a collection.
			pc.missing = append(pc.missing, n)
			continue
		}
		if !deadLoaded {
			loadDead()
		}
		if p, found := dead[n]; found {
			pc.addFound(n, p.InnerXML)
		} else {
			pc.missing = append(pc.missing, n)
		}
	}
	return ms.response(name, fi.IsDir(), pc)
}

func (pc *propCtx) addFound(n xml.Name, inner []byte) {
	start := len(pc.vals)
	pc.vals = append(pc.vals, inner...)
	pc.found = append(pc.found, propRef{name: n, start: start, end: len(pc.vals)})
}

// appendNew appends n to names unless it is there already.
func appendNew(names []xml.Name, n xml.Name) []xml.Name {
	for _, have := range names {
		if have == n {
			return names
		}
	}
	return append(names, n)
}

// allprop's live names of a collection and of a file (read only).
var allpropDir, allpropFile = func() (d, f []xml.Name) {
	for _, n := range allpropNames {
		if isLiveName(true, n) {
			d = append(d, n)
		}
		if isLiveName(false, n) {
			f = append(f, n)
		}
	}
	return d, f
}()

// allpropFor returns the live properties allprop and propname list for fi
// (read only).
func allpropFor(fi fs.FileInfo) []xml.Name {
	if fi.IsDir() {
		return allpropDir
	}
	return allpropFile
}

// isLiveName reports whether n is a live property of the resource without
// computing it (the names allprop and propname list).
func isLiveName(dir bool, n xml.Name) bool {
	switch n {
	case pResourceType, pDisplayName, pLastModified, pSupportedLock, pLockDiscovery:
		return true
	case pContentLength, pContentType, pETag:
		return !dir
	}
	return false
}

func sortedNames(m map[xml.Name]webdav.Property) []xml.Name {
	if len(m) == 0 {
		return nil
	}
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
			if h.s.locks.tokenCovers(h.tree(name), name, t) {
				token = t
				break
			}
		}
		if token == "" {
			return httpErr(http.StatusPreconditionFailed, "no such lock")
		}
		l, err = h.s.locks.refresh(h.tree(name), h.user, name, token, timeout)
		switch {
		case errors.Is(err, errNoSuchLock):
			return httpErr(http.StatusPreconditionFailed, "no such lock")
		case errors.Is(err, errLockForeign):
			return httpErr(http.StatusForbidden, "lock of another user")
		case err != nil:
			return err
		}
	} else {
		// A lock announces a write: an account that may not change files
		// (read-only) takes none, shared or exclusive, or it could keep
		// everyone else from saving (Office then opens the file read-only).
		if h.fs.RightsAt(name)&(perm.Upload|perm.Overwrite) == 0 {
			return httpErr(http.StatusForbidden, "locking needs the right to write; this account may only read")
		}
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
		nl, err := h.s.locks.create(h.tree(name), h.user, name, li.shared, infinite, li.owner, timeout)
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
				h.s.locks.unlock(h.tree(name), h.user, name, nl.token)
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
	switch err := h.s.locks.unlock(h.tree(name), h.user, name, t[1:len(t)-1]); {
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
