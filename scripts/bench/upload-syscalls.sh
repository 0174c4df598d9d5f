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
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
mkdir "$tmp/files" "$tmp/data"
python3 - "$tmp/files" <<'P'
import os, random, sys
random.seed(1)
for i in range(500):
    with open(f"{sys.argv[1]}/f{i:05d}", "wb") as f:
        f.write(os.urandom(random.randint(4096, 65536)))
P
"$bin" --data-dir "$tmp/data" serve --sftp-addr 127.0.0.1:0 --dav-addr 127.0.0.1:0 "$@" >"$tmp/log" 2>&1 &
pid=$!
addr=""
for _ in $(seq 100); do
	addr=$(sed -n 's/^listening sftp \([0-9.]*:[0-9]*\).*/\1/p' "$tmp/log" | head -1)
	[[ -n $addr ]] && break
	sleep 0.1
done
[[ -n $addr ]] || { cat "$tmp/log" >&2; exit 1; }
echo 'Qz-pw-syscalls-987!' | "$bin" --data-dir "$tmp/data" user add bench --password-stdin --key "$tmp/key.pub" >/dev/null
sftp_() { sftp -q -b - -i "$tmp/key" -P "${addr##*:}" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null bench@127.0.0.1 >/dev/null; }
echo "mkdir w" | sftp_
echo "put -r $tmp/files w/r0" | sftp_
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
