#!/bin/bash
# upload-syscalls.sh: the server's write and sync system calls per small upload.
#
#   scripts/bench/upload-syscalls.sh BIN [serve args]
#
# Starts BIN serve on a fresh data directory, uploads 500 files of 4-64 KiB
# once with OpenSSH's sftp (put -r) to warm up, then again under
# `strace -f`, and prints the count and bytes of pwrite64 and write and the
# count of fsync and fdatasync for that second round (docs/PERFORMANCE.md,
# "Storage v2 small files: a cheaper commit"). Needs strace.
set -euo pipefail
bin=$1
shift
command -v strace >/dev/null || { echo "upload-syscalls.sh: strace is missing (apt-get install strace)" >&2; exit 1; }
# shellcheck source=scripts/bench/small-lib.sh
. "$(dirname "$0")/small-lib.sh"
small_session "$bin" "$@"
tmp=$small_tmp pid=$small_pid
sftp_() { small_sftp "$tmp/key"; }
strace -f -e trace=pwrite64,write,fsync,fdatasync -p "$pid" -o "$tmp/trace" 2>/dev/null &
sp=$!
sleep 1
echo "put -r $tmp/files w/r1" | sftp_
kill "$sp"
wait "$sp" 2>/dev/null || true
awk '
	/ (pwrite64|write)\(/ { c = ($2 ~ /^pwrite64/) ? "pwrite64" : "write"; n[c]++; if (match($0, /= [0-9]+$/)) b[c] += substr($0, RSTART + 2) }
	/ (fsync|fdatasync)\(/ { c = ($2 ~ /^fsync/) ? "fsync" : "fdatasync"; n[c]++ }
	END {
		for (c in n) printf "%-10s %6d calls (%.1f per upload)%s\n", c, n[c], n[c] / 500, (c in b) ? sprintf(", %.1f MiB (%.0f KiB per upload)", b[c] / 1048576, b[c] / 500 / 1024) : ""
	}' "$tmp/trace" | sort
