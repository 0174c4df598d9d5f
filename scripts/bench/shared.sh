#!/usr/bin/env bash
# scripts/bench/shared.sh (run as `scripts/bench.sh shared`): does a shared
# folder cost the same as a home (issue 16)? One securefsd, one user with
# all rights on folder "bench"; OpenSSH sftp measures, alternating home and
# folder in every run so drift hits both alike:
#   - upload and download of one BENCH_SHARED_MB file (default 1024),
#   - `ls -l` of a directory of BENCH_SHARED_LIST_COUNT files (default 2000).
# Prints a markdown table: median and min-max seconds per row, and the
# folder/home ratio of the medians. Judge by min-max overlap, as
# docs/PERFORMANCE.md does. BENCH_RUNS (default 3) runs per cell.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=${BENCH_RUNS:-3} mb=${BENCH_SHARED_MB:-1024} count=${BENCH_SHARED_LIST_COUNT:-2000}
tmp=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/securefsd-bench-shared.XXXXXX")
pid=""
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
log() { printf 'bench-shared: %s\n' "$*" >&2; }

go build -o "$tmp/securefsd" "$repo/cmd/securefsd"
sfd() { "$tmp/securefsd" --data-dir "$tmp/data" "$@"; }
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
"$tmp/securefsd" --data-dir "$tmp/data" serve --sftp-addr 127.0.0.1:0 --dav-addr 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
	grep -q '^ready' "$tmp/server.log" && break
	sleep 0.1
done
port=$(sed -n 's/^listening sftp 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -1)
[[ -n $port ]] || { cat "$tmp/server.log" >&2; exit 1; }
printf 'pw-%s-Perf-Run\n' "$RANDOM$RANDOM" | sfd user add bench --password-stdin --key "$tmp/key.pub" >/dev/null
sfd folder add bench >/dev/null
sfd folder grant bench bench --perms all >/dev/null

sftp_batch() { # batch lines on stdin
	sftp -q -b - -F /dev/null -P "$port" -i "$tmp/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR bench@127.0.0.1 >/dev/null
}
timed() { # seconds a batch (stdin) takes
	local t0 t1
	t0=$(date +%s.%N)
	sftp_batch
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

log "making a ${mb} MiB file and ${count} small files"
head -c "$((mb << 20))" /dev/urandom >"$tmp/big"
head -c 100 /dev/urandom >"$tmp/small"
for dir in /list /Shared/bench/list; do
	{ echo "mkdir $dir"; for i in $(seq "$count"); do echo "put $tmp/small $dir/f$i"; done; } | sftp_batch
done

declare -A samples
for run in $(seq "$runs"); do
	for where in home folder; do
		base=/; [[ $where == folder ]] && base=/Shared/bench/
		samples[upload-$where]+="$(echo "put $tmp/big ${base}big" | timed) "
		samples[download-$where]+="$(echo "get ${base}big $tmp/back" | timed) "
		cmp -s "$tmp/big" "$tmp/back" || { log "download differs"; exit 1; }
		samples[list-$where]+="$(echo "ls -l ${base}list" | timed) "
	done
	log "run $run of $runs done"
done

stats() { # samples -> "median min max"
	tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f %.3f %.3f\n", m, a[1], a[NR]}'
}
printf '| row | home: median s (min-max) | folder: median s (min-max) | folder/home |\n|---|---|---|---|\n'
for row in upload download list; do
	read -r hm hmin hmax <<<"$(stats <<<"${samples[$row-home]}")"
	read -r fm fmin fmax <<<"$(stats <<<"${samples[$row-folder]}")"
	label=$row
	case $row in upload | download) label="$row ${mb} MiB (sftp)" ;; list) label="ls -l of ${count} files (sftp)" ;; esac
	printf '| %s | %s (%s-%s) | %s (%s-%s) | %.2f |\n' "$label" "$hm" "$hmin" "$hmax" "$fm" "$fmin" "$fmax" "$(echo "$fm / $hm" | bc -l)"
done
