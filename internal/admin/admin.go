// Package admin is the management channel between the securefsd command and
// a running server: an HTTP+JSON API on a Unix socket (0600) in the data
// directory. bbolt allows one process at a time, so while the server runs,
// `securefsd user ...` and `key rotate` go through this socket; when no server
// runs, the command opens the database directly.
package admin
