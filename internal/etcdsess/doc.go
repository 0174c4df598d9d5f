// Package etcdsess keeps a cluster's sessions in etcd (issue 21,
// docs/CLUSTER.md): browser sessions and the pending logins of their
// two-factor step, which any node serves and which outlive the node that
// signed them in, and the registry of every node's
// live SSH sessions, with the requests that end one on another node.
//
// Keys under Config.Prefix ("PREFIX/sessions/"):
//
//	w/<keyed hash of the session key>       a browser session, under its own lease (the idle timeout)
//	p/<keyed hash of its key>               a pending login (password given, code awaited), under its own lease
//	n/<node lease>                          a node: its name, under its lease
//	l/<node lease>/<keyed hash of the id>   a node's live session, under the node's lease
//	k/<request id>                          a kill request, under a lease of a few seconds
//	a/<request id>/<node lease>             a node's answer to it (how many it ended), same lease
//
// Every value is sealed with XChaCha20-Poly1305 under a subkey of the
// users key, bound to its etcd key; key names are HMACs under another
// subkey. etcd sees no user name, address, file name or token. A browser
// session's key is SHA-256 of the cookie's random 32 bytes, stored only
// as its keyed hash: a copy of etcd (or of the users key) gives no
// cookie, since the cookie's bytes are nowhere.
//
// Imports of ours: none; only the etcd client and x/crypto.
package etcdsess
