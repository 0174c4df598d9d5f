// Package webui is securefsd's browser client: log in, list, upload,
// download, new folder, rename, delete, log out; html/template and a little
// JavaScript embedded in the binary, over internal/vfs and internal/users.
//
// It owns its URL space under Options.Prefix (default "/ui/"), server-side
// sessions, CSRF tokens and the page templates. It must not import
// internal/envelope; file access goes through vfs.FS, which confines every
// name to the user's home and enforces the user's permissions.
//
// Threat notes: uploaded files are attacker-controlled content served from
// the same origin as the client, so downloads are always sent as
// application/octet-stream attachments with nosniff and a sandboxing CSP;
// every page carries a strict Content-Security-Policy (no inline script or
// style), names are escaped by html/template, state changes are POST-only and
// need the session's CSRF token, and session cookies are HttpOnly,
// SameSite=Strict and (over HTTPS) Secure. Sessions live in this process's
// memory only, keyed by a hash of the cookie value.
//
// Two-factor login: a correct password of a user with TOTP makes a pending
// login (login/code asks for the code, twofactor.go), not a session; the
// self-service page account/ (accountpage.go) enrols (QR code from
// account/qr), manages app passwords, the password and SSH keys; under
// users.Options.Require2FA a session without 2FA reaches only account/ and
// logout.
//
// URL space (under Prefix): login, login/code, logout, account/ (and its
// actions), files/<dir>/ (list),
// dl/<file> (download), upload/<dir>, mkdir/<dir>, rename/<path>,
// delete/<path> (GET shows the form or confirmation, POST acts),
// static/<asset>; with EnableAccounts, signup (no session: the invitation
// token or the defender's address budget is the gate) and admin/ (users
// with the admin role only; everyone else gets 404), which run
// internal/admin's operations. See docs/WEBUI.md.
package webui
