#!/usr/bin/env bash
# scripts/bench/audit.sh (run as `scripts/bench.sh audit`): what does the
# audit trail cost (issue 19: under 5% of throughput)? Two securefsd
# servers from one binary, one with the trail (the default) and one with
# --audit=false, each with one user; OpenSSH sftp measures, alternating
# the two servers in every run so drift hits both alike:
#   - upload and download of one BENCH_AUDIT_MB file (default 1024),
#   - `put -r` and `get -r` of BENCH_AUDIT_SMALL_COUNT files of 4-64 KiB
#     (default 2000): one write or read record per file.
# Prints a markdown table: median and min-max seconds per row, and the
# on/off ratio of the medians. Judge by min-max overlap, as
# docs/PERFORMANCE.md does. BENCH_RUNS (default 3) runs per cell.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=${BENCH_RUNS:-3} mb=${BENCH_AUDIT_MB:-1024} count=${BENCH_AUDIT_SMALL_COUNT:-2000}
tmp=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/securefsd-bench-audit.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
log() { printf 'bench-audit: %s\n' "$*" >&2; }

go build -o "$tmp/securefsd" "$repo/cmd/securefsd"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
declare -A port
for mode in on off; do
	args=()
	[[ $mode == off ]] && args=(--audit=false)
	"$tmp/securefsd" --data-dir "$tmp/data-$mode" serve --sftp-addr 127.0.0.1:0 --dav-addr 127.0.0.1:0 "${args[@]}" >"$tmp/server-$mode.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do
		grep -q '^ready' "$tmp/server-$mode.log" && break
		sleep 0.1
	done
	port[$mode]=$(sed -n 's/^listening sftp 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/server-$mode.log" | head -1)
	[[ -n ${port[$mode]} ]] || { cat "$tmp/server-$mode.log" >&2; exit 1; }
	printf 'pw-%s-Perf-Run\n' "$RANDOM$RANDOM" |
		"$tmp/securefsd" --data-dir "$tmp/data-$mode" user add bench --password-stdin --key "$tmp/key.pub" >/dev/null
done
[[ -d $tmp/data-on/audit ]] || { log "the trail is not on in the 'on' server"; exit 1; }

sftp_batch() { # $1 mode; batch lines on stdin
	sftp -q -b - -F /dev/null -P "${port[$1]}" -i "$tmp/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR bench@127.0.0.1 >/dev/null
}
timed() { # $1 mode; seconds a batch (stdin) takes
	local t0 t1
	t0=$(date +%s.%N)
	sftp_batch "$1"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

log "making a ${mb} MiB file and ${count} small files"
head -c "$((mb << 20))" /dev/urandom >"$tmp/big"
mkdir "$tmp/small"
for i in $(seq "$count"); do
	head -c "$(((4 + RANDOM % 61) << 10))" /dev/urandom >"$tmp/small/f$i"
done

declare -A samples
for run in $(seq "$runs"); do
	for mode in on off; do
		samples[upload-$mode]+="$(echo "put $tmp/big /big" | timed "$mode") "
		samples[download-$mode]+="$(echo "get /big $tmp/back" | timed "$mode") "
		cmp -s "$tmp/big" "$tmp/back" || { log "download differs"; exit 1; }
		rm -rf "$tmp/back-small"
		samples[smallup-$mode]+="$(printf 'put -r %s /small-%s\n' "$tmp/small" "$run" | timed "$mode") "
		samples[smalldown-$mode]+="$(printf 'get -r /small-%s %s\n' "$run" "$tmp/back-small" | timed "$mode") "
		diff -rq "$tmp/small" "$tmp/back-small" >/dev/null || { log "small files differ"; exit 1; }
	done
	log "run $run of $runs done"
done

stats() { # samples -> "median min max"
	tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f %.3f %.3f\n", m, a[1], a[NR]}'
}
printf '| row | audit off: median s (min-max) | audit on: median s (min-max) | on/off |\n|---|---|---|---|\n'
for row in upload download smallup smalldown; do
	read -r fm fmin fmax <<<"$(stats <<<"${samples[$row-off]}")"
	read -r nm nmin nmax <<<"$(stats <<<"${samples[$row-on]}")"
	case $row in
	upload | download) label="$row ${mb} MiB (sftp)" ;;
	smallup) label="put -r ${count} files of 4-64 KiB (sftp)" ;;
	smalldown) label="get -r ${count} files of 4-64 KiB (sftp)" ;;
	esac
	printf '| %s | %s (%s-%s) | %s (%s-%s) | %.2f |\n' "$label" "$fm" "$fmin" "$fmax" "$nm" "$nmin" "$nmax" "$(echo "$nm / $fm" | bc -l)"
done
records=$("$tmp/securefsd" --data-dir "$tmp/data-on" audit query --op write,read --user bench --json 2>/dev/null | wc -l) || records=?
log "the trail of the 'on' server holds $records read/write records of bench"
