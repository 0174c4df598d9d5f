#!/bin/bash
# small-alternate.sh: per-file upload cost of securefsd builds side by side.
#
#   scripts/bench/small-alternate.sh ROUNDS 'NAME BIN [serve args]' ...
#
# For each configuration in turn (alternating, ROUNDS times, so drift in
# the machine's load or disk hits every one alike) it starts BIN serve on a
# fresh data directory, adds a user with a fresh SSH key, and uploads the
# same 500 files of 4-64 KiB three times with OpenSSH's sftp (put -r), then
# downloads them three times (get -r), and prints the wall time per round
# and the server's CPU time per round (from /proc) of each. Example (docs/PERFORMANCE.md, "Small segments in the index"):
#
#   scripts/bench/small-alternate.sh 3 "v1 /tmp/sfd" "v2 /tmp/sfd --storage v2"
set -euo pipefail
rounds=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=scripts/bench/small-lib.sh
. "$(dirname "$0")/small-lib.sh"
small_files "$tmp/files" "$tmp/key"
one() { # NAME BIN [serve args...]
	local name=$1 bin=$2 dd pid c0 c1 s e
	shift 2
	dd=$(mktemp -d "$tmp/data.XXXX")
	small_serve "$bin" "$dd" "$tmp/key" "$@"
	pid=$small_pid
	sftp_() { small_sftp "$tmp/key"; }
	echo "mkdir w" | sftp_
	c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
	s=$(date +%s.%N)
	for r in 1 2 3; do echo "put -r $tmp/files w/r$r" | sftp_; done
	e=$(date +%s.%N)
	c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
	local up upcpu
	up=$(echo "($e-$s)/3" | bc -l) upcpu=$(((c1 - c0) * 10 / 3))
	c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
	s=$(date +%s.%N)
	for r in 1 2 3; do
		rm -rf "$dd.dl" && mkdir "$dd.dl"
		echo "get -r w/r$r $dd.dl/" | sftp_
	done
	e=$(date +%s.%N)
	c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
	printf '%-10s per round of 500 files: up wall %.3f s, server CPU %d ms; down wall %.3f s, server CPU %d ms\n' "$name" \
		"$up" "$upcpu" "$(echo "($e-$s)/3" | bc -l)" $(((c1 - c0) * 10 / 3))
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	rm -rf "$dd" "$dd.log" "$dd.dl"
}
for _ in $(seq "$rounds"); do
	for cfg in "$@"; do
		# shellcheck disable=SC2086 # a configuration is a word list on purpose
		one $cfg
	done
done
