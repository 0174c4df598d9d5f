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
# shellcheck source=scripts/bench/small-lib.sh
. "$(dirname "$0")/small-lib.sh"
small_session "$bin" "$@"
tmp=$small_tmp pid=$small_pid
sftp_() { small_sftp "$tmp/key"; }
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
