package main

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/securefsd/securefsd/internal/audit"
	"github.com/securefsd/securefsd/internal/envelope"
	"github.com/securefsd/securefsd/internal/users"
)

func TestLogNames(t *testing.T) {
	kr, err := envelope.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.LoadKeys(t.TempDir(), kr, true)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "Patient Smith.pdf"
	perr := &fs.PathError{Op: "open", Path: "/" + secret, Err: fs.ErrPermission}
	lerr := &os.LinkError{Op: "rename", Old: "/a/" + secret, New: "/b/" + secret, Err: fs.ErrExist}
	for _, mode := range []string{"clear", "hash", "none"} {
		t.Run(mode, func(t *testing.T) {
			n, err := parseLogNames(mode)
			if err != nil {
				t.Fatal(err)
			}
			n.keys.Store(keys)
			var buf bytes.Buffer
			log, err := newLogger(&buf, "info", "json", n.replace)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("op", "path", "/"+secret, "target", "/x/"+secret, "from", secret, "err", perr)
			log.Info("op", "name", secret, "err", errors.Join(errors.New("copy"), lerr), "user", "alice")
			out := buf.String()
			if got := strings.Contains(out, "Smith"); got != (mode == "clear") {
				t.Fatalf("mode %s: name in the log = %v:\n%s", mode, got, out)
			}
			if !strings.Contains(out, `"user":"alice"`) {
				t.Fatalf("user name hidden: %s", out)
			}
			tok := keys.NameToken("/" + secret)
			if mode == "hash" && strings.Count(out, tok) != 2 { // the path attribute and the error's path
				t.Fatalf("want the same token %s twice: %s", tok, out)
			}
			if mode == "none" && strings.Contains(out, "h:") {
				t.Fatalf("tokens in none mode: %s", out)
			}
		})
	}
	if _, err := parseLogNames("sometimes"); err == nil {
		t.Fatal("bad mode accepted")
	}
}

func TestParseRetention(t *testing.T) {
	for s, want := range map[string]time.Duration{"": 0, "6y": 6 * 365 * 24 * time.Hour, "90d": 90 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "720h": 720 * time.Hour} {
		if got, err := parseRetention(s); err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"y", "-1d", "0d", "soon", "-5h"} {
		if _, err := parseRetention(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// onLogin: every outcome is a record, but WebDAV's per-request logins
// served from the password cache are not.
func TestOnLogin(t *testing.T) {
	dir := t.TempDir()
	kr, _ := envelope.NewKeyring()
	keys, err := audit.LoadKeys(dir, kr, true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(dir, keys, audit.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hook := onLogin(l)
	hook(users.LoginEvent{Proto: "dav", Remote: "192.0.2.1:5", User: "a", Method: "password"})
	hook(users.LoginEvent{Proto: "dav", Remote: "192.0.2.1:6", User: "a", Method: "password", Cached: true})
	hook(users.LoginEvent{Proto: "ssh", Remote: "192.0.2.1:7", User: "a", Method: "password", Cached: true})
	hook(users.LoginEvent{Proto: "web", Remote: "192.0.2.2:1", User: "b", Method: "password", Err: users.ErrAuthFailed})
	hook(users.LoginEvent{Proto: "dav", Remote: "192.0.2.3:1", User: "c", Err: users.ErrBanned})
	hook(users.LoginEvent{Proto: "ssh", Remote: "192.0.2.4", Ban: "address"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = audit.Query(t.Context(), dir, keys, audit.Filter{}, func(r audit.Record) error {
		got = append(got, strings.Join([]string{r.Protocol, r.Op, r.User, r.Remote, r.Result, r.Error}, " "))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"webdav login a 192.0.2.1:5 ok ",
		"ssh login a 192.0.2.1:7 ok ",
		"web login b 192.0.2.2:1 fail auth",
		"webdav login c 192.0.2.3:1 fail banned",
		"ssh ban  192.0.2.4 ok ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
