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
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
mkdir "$tmp/files"
python3 - "$tmp/files" <<'P'
import os, random, sys
random.seed(1)
for i in range(500):
    with open(f"{sys.argv[1]}/f{i:05d}", "wb") as f:
        f.write(os.urandom(random.randint(4096, 65536)))
P
one() { # NAME BIN [serve args...]
	local name=$1 bin=$2 dd pid addr="" port c0 c1 s e
	shift 2
	dd=$(mktemp -d "$tmp/data.XXXX")
	"$bin" --data-dir "$dd" serve --sftp-addr 127.0.0.1:0 --dav-addr 127.0.0.1:0 "$@" >"$dd.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		addr=$(sed -n 's/^listening sftp \([0-9.]*:[0-9]*\).*/\1/p' "$dd.log" | head -1)
		[[ -n $addr ]] && break
		sleep 0.1
	done
	[[ -n $addr ]] || { cat "$dd.log" >&2; exit 1; }
	echo 'Qz-pw-alternate-987!' | "$bin" --data-dir "$dd" user add bench --password-stdin --key "$tmp/key.pub" >/dev/null
	port=${addr##*:}
	sftp_() { sftp -q -b - -i "$tmp/key" -P "$port" -c "${BENCH_CIPHER:-aes128-gcm@openssh.com}" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null bench@127.0.0.1 >/dev/null; }
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
