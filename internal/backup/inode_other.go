//go:build !unix

package backup

import "io/fs"

// inode is unknown here: incremental backups compare size and time only.
func inode(fs.FileInfo) uint64 { return 0 }
