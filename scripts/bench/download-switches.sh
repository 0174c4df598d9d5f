#!/bin/bash
# download-switches.sh: what a small-file download costs the server in CPU
# and in context switches (docs/PERFORMANCE.md, "Small downloads: the cost
# is in the Go scheduler, not the store").
#
#   scripts/bench/download-switches.sh BIN [serve args]
#
# Starts BIN serve on a fresh data directory, uploads 500 files of 4-64 KiB
# with OpenSSH's sftp, then downloads them three times (get -r) under
# `perf stat -e task-clock,context-switches -p PID` and prints the wall
# time, CPU milliseconds and context switches per round. Run it with
# GOMAXPROCS=1 in the environment to see the scheduler's part.
set -euo pipefail
bin=$1
shift
command -v perf >/dev/null || { echo "download-switches.sh: needs perf (Debian: linux-perf)" >&2; exit 1; }
tmp=$(mktemp -d)
pid=""
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
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
echo 'Qz-pw-switches-987!' | "$bin" --data-dir "$tmp/data" user add bench --password-stdin --key "$tmp/key.pub" >/dev/null
sftp_() { sftp -q -b - -i "$tmp/key" -P "${addr##*:}" -c "${BENCH_CIPHER:-aes128-gcm@openssh.com}" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null bench@127.0.0.1 >/dev/null; }
echo "mkdir w" | sftp_
echo "put -r $tmp/files w/r0" | sftp_
perf stat -e task-clock,context-switches -p "$pid" -o "$tmp/perf.txt" &
pp=$!
sleep 0.2
s=$(date +%s.%N)
for _ in 1 2 3; do
	rm -rf "$tmp/dl" && mkdir "$tmp/dl"
	echo "get -r w/r0 $tmp/dl/" | sftp_
done
e=$(date +%s.%N)
kill -INT "$pp"
wait "$pp" 2>/dev/null || true
printf 'per round of 500 files: wall %.3f s; ' "$(echo "($e-$s)/3" | bc -l)"
awk '/task-clock/ {printf "server CPU %.0f ms; ", $1/3} /context-switches/ {printf "%d context switches\n", $1/3}' "$tmp/perf.txt"
