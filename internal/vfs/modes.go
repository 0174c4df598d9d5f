package vfs

import (
	"errors"
	"io/fs"
)

// Client modes are metadata: the server's own access to its store (open,
// list, rotate, verify, purge) never depends on them. A client that
// removes an owner bit (chmod 000 on a directory) would otherwise lock
// the server, running as a non-root user, out of the entry for every
// sweep. So the disk always grants the owner read and write (and search
// on directories), and the owner bits the client removed are recorded in
// the special bits, which clients can neither set nor see:
//
//	setuid: the client's mode has no owner read
//	setgid: no owner write
//	sticky: no owner search (directories only; a file's x bit is kept as is)
//
// Modes with the usual owner bits (0644, 0755) are stored as they are.
// Stores written before this scheme never have special bits on client
// entries, so their modes read unchanged; entries without owner access
// are repaired (encoded) when the home is first opened (home.init walks
// every entry). None of these bits has an effect for the server's user:
// the store is not executed, every entry has the same owner and group.

// diskMode is the on-disk mode that stores the client's permission bits.
func diskMode(client fs.FileMode, dir bool) fs.FileMode {
	perm := client.Perm()
	disk := perm
	if perm&0o400 == 0 {
		disk |= 0o400 | fs.ModeSetuid
	}
	if perm&0o200 == 0 {
		disk |= 0o200 | fs.ModeSetgid
	}
	if dir && perm&0o100 == 0 {
		disk |= 0o100 | fs.ModeSticky
	}
	return disk
}

// clientMode is the permission bits a client sees for an on-disk mode.
func clientMode(disk fs.FileMode) fs.FileMode {
	perm := disk.Perm()
	if disk&fs.ModeSetuid != 0 {
		perm &^= 0o400
	}
	if disk&fs.ModeSetgid != 0 {
		perm &^= 0o200
	}
	if disk.IsDir() && disk&fs.ModeSticky != 0 {
		perm &^= 0o100
	}
	return perm
}

// ownerAccess reports whether an on-disk mode gives the server the
// access it needs: read and write, and search on a directory.
func ownerAccess(disk fs.FileMode) bool {
	need := fs.FileMode(0o600)
	if disk.IsDir() {
		need = 0o700
	}
	return disk.Perm()&need == need
}

// chmodClient sets rel's on-disk mode to store the client mode.
func (h *home) chmodClient(rel string, client fs.FileMode, dir bool) error {
	return h.d.Chmod(rel, diskMode(client, dir))
}

// mkdirClient creates directory rel with the client's mode. On a disk the
// mode is set after creating (not through mkdir's mode) so the owner keeps
// access whatever the client asked, and a parent's setgid bit is not
// inherited; storage v2 stores it with the directory, in one transaction.
func (h *home) mkdirClient(rel string, client fs.FileMode) error {
	if h.root == nil {
		return h.d.Mkdir(rel, diskMode(client, true))
	}
	if err := h.d.Mkdir(rel, 0o700); err != nil {
		return err
	}
	return h.chmodClient(rel, client, true)
}

// repairMode gives the owner its access back on an entry a client (or an
// older version) left without it, keeping the client-visible mode. fi is
// the entry's Lstat; the repaired FileInfo is returned.
func (h *home) repairMode(rel string, fi fs.FileInfo) (fs.FileInfo, error) {
	if !(fi.Mode().IsRegular() || fi.IsDir()) || ownerAccess(fi.Mode()) {
		return fi, nil
	}
	if err := h.chmodClient(rel, clientMode(fi.Mode()), fi.IsDir()); err != nil {
		return fi, err
	}
	h.logger().Info("vfs: gave the server access back to an entry a client chmod closed", "home", h.name, "path", "/"+rel, "mode", fi.Mode().Perm())
	nfi, err := h.d.Lstat(rel)
	if err != nil {
		return fi, err
	}
	if !ownerAccess(nfi.Mode()) {
		return nfi, errors.New("vfs: mode repair did not take")
	}
	return nfi, nil
}
