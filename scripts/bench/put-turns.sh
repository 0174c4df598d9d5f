#!/bin/bash
# put-turns.sh: where the time of a small WebDAV upload goes, seen on the
# wire (docs/PERFORMANCE.md, "Small WebDAV uploads on the wire").
#
#   scripts/bench/put-turns.sh BIN [serve args]
#   scripts/bench/put-turns.sh --url https://127.0.0.1:PORT USER:PASSWORD
#
# Uploads 500 files of 4-64 KiB with curl over one HTTPS connection (once
# to warm up, then three rounds under tcpdump) to BIN serve on a fresh data
# directory, or to any WebDAV server at URL (nginx, for the comparison).
# curl sends each PUT with "Expect: 100-continue", so every file is two
# turns of the server and two of the client. It prints, for each, the
# number, sum, median, 90th percentile and longest of the gaps between the last
# packet one side sent and the first the other sent back:
#
#   server headers -> 100   authentication and the checks before the body
#   server body -> 201      the body's last bytes to the final answer (the
#                           server stores the file)
#   client 100 -> body      curl starting to send the body
#   client 201 -> next      curl's turn between two files
set -euo pipefail
command -v tcpdump >/dev/null || { echo "put-turns.sh: needs tcpdump" >&2; exit 1; }
# shellcheck source=scripts/bench/small-lib.sh
. "$(dirname "$0")/small-lib.sh"
tmp=$(mktemp -d)
trap 'kill "${small_pid:-}" "${tp:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
small_files "$tmp/files" "$tmp/key"
if [[ $1 == --url ]]; then
	url=$2 cred=$3
else
	bin=$1
	shift
	small_serve "$bin" "$tmp/data" "$tmp/key" "$@"
	url=$(sed -n 's/^listening webdav \(https:[^ ]*\).*/\1/p' "$tmp/data.log" | head -1)
	cred='bench:Qz-pw-smallfiles-987!'
fi
port=${url##*:}
port=${port%%/*}
put() { # ROUND: the 500 files as ROUND-NAME, one connection
	local f
	for f in "$tmp"/files/*; do
		printf 'url = "%s/r%s-%s"\nupload-file = "%s"\noutput = "/dev/null"\n' "$url" "$1" "${f##*/}" "$f"
	done >"$tmp/curl.cfg"
	curl -sS --http1.1 -k --tls13-ciphers TLS_AES_128_GCM_SHA256 -u "$cred" -K "$tmp/curl.cfg" >/dev/null
}
put "$$-0"
tcpdump -i lo -n -tt -s 96 -w "$tmp/put.pcap" "tcp port $port" 2>/dev/null &
tp=$!
sleep 0.5
for r in 1 2 3; do put "$$-$r"; done
sleep 0.3
kill "$tp"
wait "$tp" 2>/dev/null || true
tcpdump -r "$tmp/put.pcap" -n -tt 2>/dev/null | python3 -c '
import re, statistics, sys
port = sys.argv[1]
bursts = []  # [side, first t, last t, payload bytes]
for line in sys.stdin:
    m = re.match(r"(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.\d+: .*length (\d+)", line)
    if not m or int(m.group(3)) == 0:
        continue
    t, side, n = float(m.group(1)), "S" if m.group(2) == port else "C", int(m.group(3))
    if bursts and bursts[-1][0] == side:
        bursts[-1][2] = t
        bursts[-1][3] += n
    else:
        bursts.append([side, t, t, n])
turns = {"server headers -> 100": [], "server body -> 201": [], "client 100 -> body": [], "client 201 -> next": []}
for a, b in zip(bursts, bursts[1:]):
    gap = b[1] - a[2]
    if a[0] == "C":  # headers are one small record, a body at least 4 KiB
        turns["server headers -> 100" if a[3] < 1000 else "server body -> 201"].append(gap)
    else:  # "100 Continue" is one small record, the final answer carries headers
        turns["client 100 -> body" if a[3] < 100 else "client 201 -> next"].append(gap)
for name, g in turns.items():
    if g:
        g.sort()
        print(f"{name:22} n={len(g):5} sum {sum(g):6.3f} s  median {statistics.median(g)*1e6:4.0f} us  p90 {g[int(len(g)*0.9)]*1e6:4.0f} us  max {g[-1]*1e3:5.1f} ms")
print(f"wall of the three rounds: {bursts[-1][2] - bursts[0][1]:.3f} s")
' "$port"
