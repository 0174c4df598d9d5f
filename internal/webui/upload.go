package webui

import (
	"errors"
	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/httpx"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// uploadBufSize is the copy buffer per upload request: the only memory an
// upload uses, whatever the file size.
const uploadBufSize = 256 << 10

// handleUpload stores the files of a multipart/form-data POST in dir, part
// by part, straight from the request body into vfs (which encrypts as it
// writes to its temporary file and publishes it on Close). Nothing is
// buffered beyond one copy buffer; nothing touches disk in plaintext.
//
// Fields are read in order: "csrf" must come before any file (the form
// puts it first; app.js also sends it as X-CSRF-Token), "overwrite"=1
// before a file lets it replace an existing one, "mtime" (ms since the
// epoch) sets the next file's modification time, "file" parts are stored.
// A failing file is aborted (never published) and ends the request; files
// before it stay stored.
func (ui *UI) handleUpload(w http.ResponseWriter, r *http.Request, s *sessionView, dir string) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		ui.renderError(w, r, s, http.StatusBadRequest, "The upload could not be read.")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		ui.renderError(w, r, s, http.StatusBadRequest, "The upload could not be read.")
		return
	}
	csrfOK := r.Header.Get("X-CSRF-Token") != "" && ui.checkCSRF(s, r, "")
	overwrite := false
	var mtime time.Time // for the next file only
	var stored []string
	var buf []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			ui.log.Info("webui: upload body", "user", s.user.Name, "err", err)
			ui.uploadFailed(w, r, s, stored, http.StatusBadRequest, "The upload was interrupted or malformed.")
			return
		}
		switch part.FormName() {
		case "csrf":
			v, _ := readField(part)
			if !csrfOK {
				csrfOK = ui.checkCSRF(s, r, v)
			}
			if !csrfOK {
				part.Close()
				ui.csrfFailed(w, r, s)
				return
			}
		case "overwrite":
			v, _ := readField(part)
			overwrite = v == "1" || v == "on" || v == "true"
		case "mtime":
			// app.js sends each file's lastModified (ms since the epoch)
			// just before it, so uploads keep their dates.
			v, _ := readField(part)
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 && ms < 1<<53 {
				mtime = time.UnixMilli(ms)
			}
		case "file":
			if !csrfOK {
				part.Close()
				ui.csrfFailed(w, r, s)
				return
			}
			elem := part.FileName()
			if elem == "" {
				// An empty file input (no file chosen) still sends a part.
				part.Close()
				continue
			}
			if !validElem(elem) {
				part.Close()
				ui.uploadFailed(w, r, s, stored, http.StatusBadRequest, "The file name “"+elem+"” is not allowed.")
				return
			}
			if buf == nil {
				buf = make([]byte, uploadBufSize)
			}
			name := joinName(dir, elem)
			cr := &countingReader{r: part}
			status, msg, err := ui.storeUpload(s, name, cr, overwrite, buf)
			part.Close()
			ui.audit(r, s, audit.OpWrite, name, "", cr.n, err)
			if err != nil {
				if httpx.ServerFault(status, r) {
					ui.log.Error("webui: upload", "user", s.user.Name, "name", name, "err", err)
				} else {
					ui.log.Info("webui: upload refused", "user", s.user.Name, "name", name, "status", status, "err", err)
				}
				ui.uploadFailed(w, r, s, stored, status, "“"+elem+"”: "+msg)
				return
			}
			if !mtime.IsZero() {
				if err := s.fs.Chtimes(name, mtime, mtime); err != nil {
					ui.log.Info("webui: upload: keep date", "user", s.user.Name, "name", name, "err", err)
				}
				mtime = time.Time{}
			}
			ui.log.Info("webui: upload", "user", s.user.Name, "name", name)
			stored = append(stored, elem)
		default:
			// Unknown fields are ignored (drained by NextPart).
			part.Close()
		}
	}
	if !csrfOK {
		ui.csrfFailed(w, r, s)
		return
	}
	if len(stored) == 0 {
		ui.uploadFailed(w, r, s, nil, http.StatusBadRequest, "Choose at least one file to upload.")
		return
	}
	msg := "Uploaded “" + stored[0] + "”."
	if len(stored) > 1 {
		msg = "Uploaded " + strconv.Itoa(len(stored)) + " files."
	}
	ui.done(w, r, s, dir, msg, map[string]any{"uploaded": stored})
}

// errClientBody marks a failure reading the request body (client gone,
// malformed multipart) as opposed to a storage failure.
var errClientBody = errors.New("webui: reading upload body")

// storeUpload copies one part into name. It returns an HTTP status and a
// friendly message with any error.
func (ui *UI) storeUpload(s *sessionView, name string, src io.Reader, overwrite bool, buf []byte) (int, string, error) {
	if !overwrite {
		// Without "replace existing", an existing name is a conflict. (A
		// racing creation between Stat and Close is replaced: vfs publishes
		// by rename; that is the same outcome as two uploads in a row.)
		if _, err := s.fs.Stat(name); err == nil {
			return http.StatusConflict, "a file or folder with that name already exists (tick “Replace existing” to overwrite).", fs.ErrExist
		} else if !errors.Is(err, fs.ErrNotExist) {
			st, msg := httpError(err)
			return st, msg, err
		}
	}
	f, err := s.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		st, msg := httpError(err)
		return st, msg, err
	}
	_, err = copyBuffer(f, src, buf)
	if err != nil {
		_ = f.Abort()
		if errors.Is(err, errClientBody) {
			return http.StatusBadRequest, "the upload was interrupted.", err
		}
		st, msg := httpError(err)
		return st, msg, err
	}
	if err := f.Close(); err != nil {
		st, msg := httpError(err)
		return st, msg, err
	}
	return 0, "", nil
}

// copyBuffer is io.CopyBuffer that tells read (client) errors from write
// (storage) errors.
func copyBuffer(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, errors.Join(errClientBody, rerr)
		}
	}
}

// readField reads a small form value (at most 1 KiB).
func readField(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1024))
	return strings.TrimSpace(string(b)), err
}

func (ui *UI) uploadFailed(w http.ResponseWriter, r *http.Request, s *sessionView, stored []string, status int, msg string) {
	if len(stored) > 0 {
		msg += " Already stored: " + strings.Join(stored, ", ") + "."
	}
	if wantsJSON(r) {
		writeJSON(w, status, map[string]any{"error": msg, "uploaded": stored})
		return
	}
	ui.renderError(w, r, s, status, msg)
}
