package sftpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/securefsd/securefsd/internal/users"
	"github.com/securefsd/securefsd/internal/vfs"
)

// The legacy SCP protocol (what `scp -O` speaks; OpenSSH scp.c source()
// and sink()). The client runs "scp -t PATH" (we receive, "sink") or
// "scp -f PATH..." (we send, "source") and both sides exchange lines:
//
//	T<mtime> 0 <atime> 0\n        times of the next file/directory (-p)
//	C<mode> <size> <name>\n       a file, followed by size bytes and a status byte
//	D<mode> 0 <name>\n            enter a directory (-r) ... E\n leaves it
//
// Each line is acknowledged with one byte: 0 OK, 1 warning (a message line
// follows, the peer prints it and goes on), 2 fatal.

const (
	scpOK      = 0
	scpWarning = 1
	scpFatal   = 2

	scpMaxLine = 4096       // longest control line accepted
	scpBufSize = 256 * 1024 // data copy buffer
)

// errSCPProtocol: the peer broke the protocol; the session ends.
var errSCPProtocol = errors.New("scp: protocol error")

type scpSession struct {
	ss   *session
	ctx  context.Context
	opts scpOptions
	in   *bufio.Reader
	out  io.Writer
	buf  []byte
	errs int // warnings sent or received; the exit status is 1 if any
}

// scp runs the legacy SCP protocol on the channel.
func (ss *session) scp(ctx context.Context, ch ssh.Channel, o scpOptions) uint32 {
	s := &scpSession{
		ss:   ss,
		ctx:  ctx,
		opts: o,
		in:   bufio.NewReaderSize(ch, 64*1024),
		out:  ch,
		buf:  make([]byte, scpBufSize),
	}
	var err error
	if o.sink {
		err = s.sink(o.paths[0].s)
	} else {
		err = s.sources()
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			ss.log.Info("scp ended", "err", err)
		}
		return exitFailure
	}
	if s.errs > 0 {
		return exitFailure
	}
	return exitOK
}

// ack sends OK.
func (s *scpSession) ack() error {
	_, err := s.out.Write([]byte{scpOK})
	return err
}

// warn sends a warning the client prints as "scp: <msg>" and counts it.
func (s *scpSession) warn(format string, args ...any) error {
	s.errs++
	msg := fmt.Sprintf(format, args...)
	msg = strings.ReplaceAll(msg, "\n", " ")
	_, err := fmt.Fprintf(s.out, "\x01scp: %s\n", msg)
	return err
}

// fatal sends a fatal error; the client prints it and gives up.
func (s *scpSession) fatal(format string, args ...any) error {
	s.errs++
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	fmt.Fprintf(s.out, "\x02scp: %s\n", msg)
	return fmt.Errorf("%w: %s", errSCPProtocol, msg)
}

// errText is the POSIX-style reason scp prints for err (from the one error
// table; never a disk path).
func errText(err error) string { return statusFor(err).text }

// readLine reads one control line without its newline.
func (s *scpSession) readLine() (string, error) {
	line, err := s.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > scpMaxLine {
		return "", s.fatal("protocol error: line too long")
	}
	if err != nil {
		return "", err
	}
	return string(line[:len(line)-1]), nil
}

// response reads the peer's acknowledgement. A warning is counted and
// returned as errWarned; a fatal error ends the session.
func (s *scpSession) response() error {
	b, err := s.in.ReadByte()
	if err != nil {
		return err
	}
	switch b {
	case scpOK:
		return nil
	case scpWarning, scpFatal:
		msg, err := s.readLine()
		if err != nil {
			return err
		}
		s.errs++
		s.ss.log.Info("scp peer error", "msg", truncate(msg, 200))
		if b == scpFatal {
			return fmt.Errorf("%w: peer: %s", errSCPProtocol, msg)
		}
		return errWarned
	}
	return fmt.Errorf("%w: unexpected response byte %d", errSCPProtocol, b)
}

var errWarned = errors.New("scp: peer reported an error")

// ---- sink: receive files (scp -t) ----

type scpTimes struct {
	set          bool
	mtime, atime time.Time
}

func (s *scpSession) sink(target string) error {
	fi, err := s.ss.acc.fs().Stat(target)
	targetIsDir := err == nil && fi.IsDir()
	if s.opts.targetDir && !targetIsDir {
		if err == nil {
			err = &fs.PathError{Op: "scp", Path: target, Err: vfs.ErrNotDir}
		}
		return s.fatal("%s: %s", target, errText(err))
	}
	if err := s.ack(); err != nil {
		return err
	}
	return s.sinkDir(target, targetIsDir, 0)
}

// maxSCPDepth bounds directory recursion from the client.
const maxSCPDepth = 256

// sinkDir handles records until "E" (end of this directory) or EOF (end of
// the top level). target is where names go: inside it if isDir, else the
// file itself.
func (s *scpSession) sinkDir(target string, isDir bool, depth int) error {
	var times scpTimes
	for first := true; ; first = false {
		kind, err := s.in.ReadByte()
		if err != nil {
			if err == io.EOF && depth == 0 {
				return nil
			}
			return err
		}
		if kind == '\n' {
			return s.fatal("protocol error: unexpected <newline>")
		}
		line, err := s.readLine()
		if err != nil {
			return err
		}
		switch kind {
		case scpWarning, scpFatal:
			// The source's own error (e.g. it could not read a file).
			s.errs++
			s.ss.log.Info("scp peer error", "msg", truncate(line, 200))
			if kind == scpFatal {
				return fmt.Errorf("%w: peer: %s", errSCPProtocol, line)
			}
			continue
		case 'E':
			if depth == 0 {
				return s.fatal("protocol error: unexpected E")
			}
			return s.ack()
		case 'T':
			times, err = parseSCPTimes(line)
			if err != nil {
				return s.fatal("protocol error: %v", err)
			}
			if err := s.ack(); err != nil {
				return err
			}
			continue
		case 'C', 'D':
		default:
			if first && depth == 0 {
				return s.fatal("%s", truncate(string(kind)+line, 200))
			}
			return s.fatal("protocol error: expected control record")
		}
		mode, size, name, err := parseSCPRecord(line)
		if err != nil {
			return s.fatal("protocol error: %v", err)
		}
		if kind == 'D' && size != 0 {
			return s.fatal("protocol error: directory size not zero")
		}
		dst := target
		if isDir {
			dst = path.Join(target, name)
		}
		t := times
		times = scpTimes{}
		if kind == 'D' {
			if !s.opts.recursive {
				return s.fatal("received directory without -r")
			}
			if depth >= maxSCPDepth {
				return s.fatal("%s: directories nested too deeply", dst)
			}
			if err := s.sinkMkdir(dst, mode, t, depth); err != nil {
				return err
			}
			continue
		}
		if err := s.sinkFile(dst, mode, size, t); err != nil {
			return err
		}
	}
}

// sinkMkdir creates (or reuses) a directory and receives into it.
func (s *scpSession) sinkMkdir(dst string, mode fs.FileMode, t scpTimes, depth int) error {
	start := time.Now()
	fi, err := s.ss.acc.fs().Stat(dst)
	switch {
	case err == nil && !fi.IsDir():
		err = &fs.PathError{Op: "mkdir", Path: dst, Err: vfs.ErrNotDir}
	case err == nil:
		if s.opts.preserve {
			s.ignoreChmod(dst, mode)
		}
	case errors.Is(err, fs.ErrNotExist):
		err = s.ss.acc.fs().Mkdir(dst, mode|0o700)
		if err == nil {
			s.ss.logOp("scp-mkdir", dst, -1, start, nil)
		}
	}
	if err != nil {
		s.ss.logOp("scp-mkdir", dst, -1, start, err)
		// The source skips this directory's contents on a warning.
		return s.warn("%s: %s", dst, errText(err))
	}
	if err := s.ack(); err != nil {
		return err
	}
	if err := s.sinkDir(dst, true, depth+1); err != nil {
		return err
	}
	if t.set {
		if err := s.ss.acc.fs().Chtimes(dst, t.atime, t.mtime); err != nil {
			s.ss.log.Debug("scp: set directory times failed", "path", dst, "err", err)
		}
	}
	return nil
}

// ignoreChmod applies a mode where the user may; a user without the chmod
// permission still gets the upload (the mode is advisory here).
func (s *scpSession) ignoreChmod(name string, mode fs.FileMode) {
	if err := s.ss.acc.fs().Chmod(name, mode&0o777); err != nil {
		s.ss.log.Debug("scp: chmod skipped", "path", name, "err", err)
	}
}

// sinkFile receives one file's data. Writes go to a replacement that is
// only published when all bytes arrived; on any failure the previous
// content (if any) stays.
func (s *scpSession) sinkFile(dst string, mode fs.FileMode, size int64, t scpTimes) error {
	start := time.Now()
	existed := false
	if fi, err := s.ss.acc.fs().Stat(dst); err == nil {
		existed = true
		if fi.IsDir() {
			err = &fs.PathError{Op: "open", Path: dst, Err: vfs.ErrIsDir}
			s.ss.logOp("scp-upload", dst, -1, start, err)
			return s.warn("%s: %s", dst, errText(err))
		}
	}
	f, err := s.ss.acc.fs().OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode&0o777|0o200)
	if err != nil {
		s.ss.logOp("scp-upload", dst, -1, start, err)
		return s.warn("%s: %s", dst, errText(err))
	}
	if err := s.ack(); err != nil {
		f.Abort()
		return err
	}
	var (
		werr error
		left = size
	)
	for left > 0 {
		n := int64(len(s.buf))
		if left < n {
			n = left
		}
		m, err := io.ReadFull(s.in, s.buf[:n])
		left -= int64(m)
		if err != nil {
			f.Abort()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			s.ss.logOp("scp-upload", dst, size-left, start, err)
			return err
		}
		if werr == nil && !s.ss.acc.mayAt(dst, users.PermUpload) && !s.ss.acc.mayAt(dst, users.PermOverwrite) {
			// The user lost the right to upload meanwhile (or the
			// connection's access was revoked): not one more byte.
			werr = errRevoked
		}
		if werr == nil {
			// Keep reading after a write error to stay in step.
			if _, err := f.Write(s.buf[:m]); err != nil {
				werr = err
			}
		}
	}
	// The source's status byte after the data.
	rerr := s.response()
	if rerr != nil && !errors.Is(rerr, errWarned) {
		f.Abort()
		s.ss.logOp("scp-upload", dst, size, start, rerr)
		return rerr
	}
	if werr != nil || rerr != nil {
		f.Abort()
		if werr == nil {
			werr = rerr
		}
		s.ss.logOp("scp-upload", dst, size, start, werr)
		if errors.Is(werr, errWarned) {
			return nil // the source already reported it
		}
		return s.warn("%s: %s", dst, errText(werr))
	}
	if err := f.Close(); err != nil {
		s.ss.logOp("scp-upload", dst, size, start, err)
		return s.warn("%s: %s", dst, errText(err))
	}
	if s.opts.preserve && existed {
		s.ignoreChmod(dst, mode)
	}
	if t.set {
		if err := s.ss.acc.fs().Chtimes(dst, t.atime, t.mtime); err != nil {
			s.ss.logOp("scp-upload", dst, size, start, err)
			return s.warn("%s: set times: %s", dst, errText(err))
		}
	}
	s.ss.logOp("scp-upload", dst, size, start, nil)
	return s.ack()
}

// parseSCPTimes parses "<mtime> <usec> <atime> <usec>" (after the T).
func parseSCPTimes(line string) (scpTimes, error) {
	f := strings.Split(line, " ")
	if len(f) != 4 {
		return scpTimes{}, errors.New("bad T record")
	}
	var v [4]int64
	for i, s := range f {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || (i%2 == 1 && n > 999999) {
			return scpTimes{}, errors.New("bad T record")
		}
		v[i] = n
	}
	return scpTimes{set: true, mtime: time.Unix(v[0], v[1]*1000), atime: time.Unix(v[2], v[3]*1000)}, nil
}

// parseSCPRecord parses "<mode> <size> <name>" (after the C or D). The
// name is a single element: no "/", not "." or "..", no NUL.
func parseSCPRecord(line string) (fs.FileMode, int64, string, error) {
	modeStr, rest, ok := strings.Cut(line, " ")
	if !ok || len(modeStr) == 0 || len(modeStr) > 5 {
		return 0, 0, "", errors.New("mode not delimited")
	}
	mode, err := strconv.ParseUint(modeStr, 8, 32)
	if err != nil || mode > 0o7777 {
		return 0, 0, "", errors.New("bad mode")
	}
	sizeStr, name, ok := strings.Cut(rest, " ")
	if !ok {
		return 0, 0, "", errors.New("size not delimited")
	}
	size, err := strconv.ParseInt(sizeStr, 10, 64)
	if err != nil || size < 0 {
		return 0, 0, "", errors.New("bad size")
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return 0, 0, "", fmt.Errorf("unexpected filename: %q", truncate(name, 100))
	}
	return fs.FileMode(mode) & fs.ModePerm, size, name, nil
}

// ---- source: send files (scp -f) ----

func (s *scpSession) sources() error {
	// Wait for the sink's go-ahead.
	if err := s.response(); err != nil {
		return err
	}
	for _, p := range s.opts.paths {
		names, err := s.expand(p)
		if err != nil {
			if err := s.warn("%s: %s", p.s, errText(err)); err != nil {
				return err
			}
			continue
		}
		for _, name := range names {
			if err := s.source(name, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// expand resolves a glob in the last element of p (the remote shell would
// have expanded it for OpenSSH); a pattern matching nothing is "no such
// file", as with scp against sshd.
func (s *scpSession) expand(p word) ([]string, error) {
	if !p.glob {
		return []string{p.s}, nil
	}
	dirPat, filePat := path.Split(p.pattern)
	if strings.ContainsAny(dirPat, "*?[") && hasUnescapedMeta(dirPat) {
		return nil, &fs.PathError{Op: "glob", Path: p.s, Err: fs.ErrNotExist}
	}
	dir := unescapePattern(dirPat)
	if _, err := path.Match(filePat, ""); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: p.s, Err: fs.ErrNotExist}
	}
	d, err := s.ss.acc.fs().Open(cleanDir(dir))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var out []string
	for {
		fis, err := d.Readdir(1024)
		for _, fi := range fis {
			if ok, _ := path.Match(filePat, fi.Name()); ok && (fi.Name()[0] != '.' || strings.HasPrefix(filePat, ".")) {
				out = append(out, dir+fi.Name())
			}
		}
		if err == io.EOF || len(fis) == 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, &fs.PathError{Op: "glob", Path: p.s, Err: fs.ErrNotExist}
	}
	return out, nil
}

func cleanDir(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// hasUnescapedMeta reports a glob metacharacter not escaped by a backslash.
func hasUnescapedMeta(p string) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

func unescapePattern(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+1 < len(p) {
			i++
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// source sends one file or (with -r) directory tree.
func (s *scpSession) source(name string, depth int) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if len(name) > 1 {
		name = strings.TrimRight(name, "/")
		if name == "" {
			name = "/"
		}
	}
	start := time.Now()
	f, err := s.ss.acc.fs().OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		s.ss.logOp("scp-download", name, -1, start, err)
		return s.warn("%s: %s", name, errText(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.ss.logOp("scp-download", name, -1, start, err)
		return s.warn("%s: %s", name, errText(err))
	}
	base := path.Base(name)
	if base == "/" || base == "." {
		base = "home"
	}
	if fi.IsDir() {
		if !s.opts.recursive || depth >= maxSCPDepth {
			return s.warn("%s: not a regular file", name)
		}
		return s.sourceDir(f, name, base, fi, depth)
	}
	if !fi.Mode().IsRegular() {
		return s.warn("%s: not a regular file", name)
	}
	// Read (and so authenticate) the first chunk before announcing the
	// file: a damaged or unreadable file gets an error line the client
	// prints, and no local file is created.
	size := fi.Size()
	first := s.buf[:min(int64(len(s.buf)), size)]
	if err := readChunk(f, first, 0); err != nil {
		s.ss.logOp("scp-download", name, 0, start, err)
		return s.warn("%s: %s", name, errText(err))
	}
	if s.opts.preserve {
		if err := s.sendTimes(fi.ModTime()); err != nil {
			return ignoreWarned(err)
		}
	}
	if _, err := fmt.Fprintf(s.out, "C%04o %d %s\n", fi.Mode().Perm(), size, base); err != nil {
		return err
	}
	if err := s.response(); err != nil {
		return ignoreWarned(err)
	}
	// Send exactly size bytes. A read error after the C line cannot be
	// reported in band without sending wrong bytes: OpenSSH's scp source
	// pads with zeros, which leaves a complete-looking file of wrong
	// content at the client. Instead the transfer is aborted: the channel
	// closes with a failure exit status, scp reports the lost connection
	// and exits non-zero, the local copy holds only authentic bytes.
	chunk := first
	for off := int64(0); off < size; {
		if !s.ss.acc.mayAt(name, users.PermDownload) {
			// Rights changed or access revoked mid-file.
			s.ss.logOp("scp-download", name, off, start, errRevoked)
			return fmt.Errorf("%w: %s: %w", errSCPAborted, name, errRevoked)
		}
		if off > 0 {
			chunk = s.buf[:min(int64(len(s.buf)), size-off)]
			if err := readChunk(f, chunk, off); err != nil {
				s.ss.logOp("scp-download", name, off, start, err)
				return fmt.Errorf("%w: %s: read at %d: %w", errSCPAborted, name, off, err)
			}
		}
		if _, err := s.out.Write(chunk); err != nil {
			s.ss.logOp("scp-download", name, off, start, err)
			return err
		}
		off += int64(len(chunk))
	}
	if err := s.ack(); err != nil {
		return err
	}
	s.ss.logOp("scp-download", name, size, start, nil)
	return ignoreWarned(s.response())
}

// errSCPAborted: a source transfer stopped mid-file; the session ends
// with a failure status instead of sending wrong bytes.
var errSCPAborted = errors.New("scp: transfer aborted")

// readChunk fills p from off; a short read is an error.
func readChunk(f io.ReaderAt, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	m, err := f.ReadAt(p, off)
	if m < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

func (s *scpSession) sendTimes(mtime time.Time) error {
	t := max(mtime.Unix(), 0)
	if _, err := fmt.Fprintf(s.out, "T%d 0 %d 0\n", t, t); err != nil {
		return err
	}
	return s.response()
}

// ignoreWarned: a warning from the sink (it printed it) skips the item but
// the transfer goes on.
func ignoreWarned(err error) error {
	if errors.Is(err, errWarned) {
		return nil
	}
	return err
}

func (s *scpSession) sourceDir(d interface {
	Readdir(int) ([]fs.FileInfo, error)
}, name, base string, fi fs.FileInfo, depth int) error {
	if s.opts.preserve {
		if err := s.sendTimes(fi.ModTime()); err != nil {
			return ignoreWarned(err)
		}
	}
	if _, err := fmt.Fprintf(s.out, "D%04o 0 %s\n", fi.Mode().Perm(), base); err != nil {
		return err
	}
	if err := s.response(); err != nil {
		return ignoreWarned(err)
	}
	s.ss.logOp("scp-download-dir", name, -1, time.Time{}, nil)
	for {
		fis, err := d.Readdir(256)
		for _, e := range fis {
			if err := s.source(path.Join(name, e.Name()), depth+1); err != nil {
				return err
			}
		}
		if err == io.EOF || (err == nil && len(fis) == 0) {
			break
		}
		if err != nil {
			if err := s.warn("%s: %s", name, errText(err)); err != nil {
				return err
			}
			break
		}
	}
	if _, err := io.WriteString(s.out, "E\n"); err != nil {
		return err
	}
	return ignoreWarned(s.response())
}
