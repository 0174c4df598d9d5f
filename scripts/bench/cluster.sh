#!/usr/bin/env bash
# scripts/bench/cluster.sh (run as `scripts/bench.sh cluster`): a securefsd
# cluster against the object store it writes to (issue 21, docs/CLUSTER.md,
# docs/PERFORMANCE.md "Cluster"). It starts its own cluster with
# scripts/cluster.sh (3 etcd members, Versity's S3 gateway, 3 nodes, all on
# 127.0.0.1, in a scratch directory removed at exit) and measures:
#   (a) one BENCH_CLUSTER_MB file (default 1024) uploaded through node 1 by
#       sftp and by WebDAV (curl, HTTPS), against a plain PUT of the same
#       bytes to the same gateway (`curl --aws-sigv4`, UNSIGNED-PAYLOAD);
#   (b) BENCH_CLUSTER_CLIENTS curl clients at once (default 32), each
#       uploading then downloading its own BENCH_CLUSTER_CONC_MB file
#       (default 16), all through node 1 against spread over the 3 nodes
#       (client k on node k mod 3 + 1): aggregate MB/s;
#   (c) etcd requests per file operation (upload, download, stat, list; sftp
#       in one session and WebDAV one request each), from the members'
#       gRPC counters (grpc_server_handled_total, summed over the 3 members),
#       with the idle background (leases, pins) measured and taken off.
# Prints markdown tables: medians of BENCH_RUNS (default 3) with min-max,
# and the ratios the issue asks for (a: >= 0.8x, b: >= 0.9x). Rows of one
# run alternate their cells so drift hits both alike. Bounded in time:
# every transfer has a timeout (BENCH_OP_TIMEOUT, default 300 s).
# BENCH_CLUSTER_PARTS=a,b,c picks the parts. BENCH_SECUREFSD_BIN=path runs that binary on the nodes (a before/after
# pair) instead of building ./cmd/securefsd.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=${BENCH_RUNS:-3} mb=${BENCH_CLUSTER_MB:-1024}
clients=${BENCH_CLUSTER_CLIENTS:-32} cmb=${BENCH_CLUSTER_CONC_MB:-16} nops=${BENCH_CLUSTER_OPS:-50}
optimeout=${BENCH_OP_TIMEOUT:-300} parts=,${BENCH_CLUSTER_PARTS:-a,b,c},
tmp=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/securefsd-bench-cluster.XXXXXX")
export CLUSTER_DIR=$tmp/cluster
[[ -z ${BENCH_SECUREFSD_BIN:-} ]] || export CLUSTER_SECUREFSD_BIN=$BENCH_SECUREFSD_BIN
log() { printf 'bench-cluster: %s\n' "$*" >&2; }
cleanup() {
	"$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A base port with the 50 above it free (cluster.sh's layout).
CLUSTER_PORT=$(python3 -c '
import random, socket
for _ in range(200):
    b = random.randrange(20000, 60000, 100)
    try:
        for p in range(b, b + 50):
            s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()
    except OSError:
        continue
    print(b); break')
export CLUSTER_PORT
base=$CLUSTER_PORT
log "starting the cluster (ports $base-$((base + 49)))"
"$repo/scripts/cluster.sh" up >"$tmp/up.txt"
# shellcheck disable=SC1091 # made by cluster.sh up
. "$CLUSTER_DIR/s3.env"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
bin=$CLUSTER_DIR/bin/securefsd
s3=http://127.0.0.1:$((base + 20))
ssh-keygen -q -t ed25519 -N '' -f "$tmp/key"
pw=Perf-$RANDOM$RANDOM-Cluster
printf '%s\n' "$pw" | "$bin" --data-dir "$CLUSTER_DIR/node1" user add bench --password-stdin --key "$tmp/key.pub" >/dev/null
sftp_port() { echo $((base + 30 + $1)); }
dav_url() { echo "https://127.0.0.1:$((base + 40 + $1))"; }

sftp_batch() { # node; batch lines on stdin
	timeout "$optimeout" sftp -q -b - -F /dev/null -P "$(sftp_port "$1")" -i "$tmp/key" \
		-c "${BENCH_CIPHER:-aes128-gcm@openssh.com}" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR bench@127.0.0.1 >/dev/null
}
davcurl() { # curl through a node's WebDAV, failing on a non-2xx answer
	timeout "$optimeout" curl -fsS -k --tls13-ciphers "${BENCH_TLS13_CIPHER:-TLS_AES_128_GCM_SHA256}" -u "bench:$pw" "$@"
}
s3put() { # file key: the plain PUT the issue compares with
	timeout "$optimeout" curl -fsS --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$1" -o /dev/null "$s3/sfd/$2"
}
now() { date +%s.%N; }
timed() { # command...: seconds it took (fails the script if it fails)
	local t0 t1
	t0=$(now)
	"$@"
	t1=$(now)
	echo "$t1 - $t0" | bc -l
}
stats() { # samples -> "median min max"
	tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f %.2f\n", m, a[1], a[NR]}'
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

log "making a ${mb} MiB file and ${clients} files of ${cmb} MiB"
head -c "$((mb << 20))" /dev/urandom >"$tmp/big"
mkdir "$tmp/conc" "$tmp/back"
[[ $parts == *,b,* ]] && for k in $(seq "$clients"); do head -c "$((cmb << 20))" /dev/urandom >"$tmp/conc/f$k"; done
# One request per node first: a login's password hash (Argon2) is paid once
# per node, not in the first timed row.
for i in 1 2 3; do davcurl -o /dev/null -X PROPFIND -H 'Depth: 0' "$(dav_url "$i")/"; done
load_start=$(load)

# ---------------------------------------------------------------- (a) 1 GiB upload
# CPU seconds of node 1 and of the gateway (user + system, from /proc): what
# a row costs whatever the machine's load, unlike its wall time.
ticks() { awk '{print $14 + $15}' "/proc/$(cat "$CLUSTER_DIR/pids/$1")/stat"; }
hz=$(getconf CLK_TCK)
declare -A samples cpu
cpurow() { # row command...: time it, and add node 1's and the gateway's CPU seconds to the row's
	local row=$1 n0 g0 t
	shift
	n0=$(ticks node1) g0=$(ticks s3)
	t=$("$@")
	cpu[$row-node]+="$(echo "($(ticks node1) - $n0) / $hz" | bc -l) "
	cpu[$row-gw]+="$(echo "($(ticks s3) - $g0) / $hz" | bc -l) "
	samples[$row]+="$t "
}
put_sftp() { echo "put $tmp/big /big-sftp-$1" | timed sftp_batch 1; }
for run in $(seq "$runs"); do
	[[ $parts == *,a,* ]] || break
	cpurow plain timed s3put "$tmp/big" "plain-$run"
	cpurow dav timed davcurl -o /dev/null -T "$tmp/big" "$(dav_url 1)/big-dav-$run"
	cpurow sftp put_sftp "$run"
	log "upload run $run of $runs done (load $(load))"
done
if [[ $parts == *,a,* ]]; then
	davcurl -o "$tmp/back/big" "$(dav_url 2)/big-dav-1"
	cmp -s "$tmp/big" "$tmp/back/big" || { log "the WebDAV upload read back through node 2 differs"; exit 1; }
	rm -f "$tmp/back/big"
fi

# ---------------------------------------------------------------- (b) concurrent clients
conc() { # spread(0|1) dir: every client uploads then downloads its file; seconds of the whole
	local spread=$1 dir=$2 k node pids=() rc=0 t0 t1
	davcurl -o /dev/null -X MKCOL "$(dav_url 1)/$dir/"
	t0=$(now)
	for k in $(seq "$clients"); do
		node=1
		((spread)) && node=$((k % 3 + 1))
		{ davcurl -o /dev/null -T "$tmp/conc/f$k" "$(dav_url "$node")/$dir/f$k" &&
			davcurl -o "$tmp/back/$dir-f$k" "$(dav_url "$node")/$dir/f$k"; } &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	t1=$(now)
	((rc == 0)) || { log "a client failed ($dir)"; exit 1; }
	for k in $(seq "$clients"); do
		cmp -s "$tmp/conc/f$k" "$tmp/back/$dir-f$k" || { log "$dir/f$k read back differs"; exit 1; }
	done
	rm -f "$tmp/back/$dir-"*
	echo "$t1 - $t0" | bc -l
}
for run in $(seq "$runs"); do
	[[ $parts == *,b,* ]] || break
	samples[one]+="$(conc 0 "one-$run") "
	samples[spread]+="$(conc 1 "spread-$run") "
	log "concurrency run $run of $runs done (load $(load))"
done

# ---------------------------------------------------------------- (c) etcd requests per operation
# grpc_server_handled_total of the KV and Lease unary methods (Range, Txn,
# Put, DeleteRange, LeaseGrant, LeaseRevoke), summed over the 3 members:
# every request a client sends is handled by the member it is connected to.
etcd_reqs() { # -> "all writes": writes are Txn, Put, DeleteRange, LeaseGrant, LeaseRevoke (each a Raft round and fsync)
	local i
	for i in 1 2 3; do curl -fsS "http://127.0.0.1:$((base + i))/metrics"; done |
		awk '/^grpc_server_handled_total\{/ && /grpc_type="unary"/ && /grpc_method="(Range|Txn|Put|DeleteRange|LeaseGrant|LeaseRevoke)"/ {
			s += $NF; if ($0 !~ /grpc_method="Range"/) w += $NF } END {printf "%d %d\n", s, w}'
}
declare -A ops
measure() { # name count command...: etcd requests per operation, the idle rate taken off
	local name=$1 n=$2 a0 w0 a1 w1 t0 t1
	shift 2
	read -r a0 w0 <<<"$(etcd_reqs)"
	t0=$(now)
	"$@"
	t1=$(now)
	read -r a1 w1 <<<"$(etcd_reqs)"
	ops[$name]=$(echo "($a1 - $a0 - $idle_rate * ($t1 - $t0)) / $n" | bc -l)
	ops[$name-w]=$(echo "($w1 - $w0 - $idle_wrate * ($t1 - $t0)) / $n" | bc -l)
}
[[ $parts == *,c,* ]] && {
head -c 65536 /dev/urandom >"$tmp/small"
davcurl -o /dev/null -X MKCOL "$(dav_url 1)/ops-dav/"
davcurl -o /dev/null -X MKCOL "$(dav_url 1)/ops-sftp/"
sleep 6 # past a pin refresh, so the idle window below is typical
read -r a0 w0 <<<"$(etcd_reqs)"
t0=$(now)
sleep 20
read -r a1 w1 <<<"$(etcd_reqs)"
idle_rate=$(echo "($a1 - $a0) / ($(now) - $t0)" | bc -l)
idle_wrate=$(echo "($w1 - $w0) / ($(now) - $t0)" | bc -l)
# sftp: one session per batch (its login counted once, spread over n operations)
sftp_ops() { # verb
	local k
	case $1 in
	put) for k in $(seq "$nops"); do echo "put $tmp/small /ops-sftp/f$k"; done ;;
	get) for k in $(seq "$nops"); do echo "get /ops-sftp/f$k $tmp/back/s"; done ;;
	stat) for k in $(seq "$nops"); do echo "ls -l /ops-sftp/f$k"; done ;;
	list) for k in $(seq "$nops"); do echo "ls -l /ops-sftp"; done ;;
	esac | sftp_batch 1
}
connect_only() { echo pwd | sftp_batch 1; }
measure sftp-connect 1 connect_only
for verb in put get stat list; do measure "sftp-$verb" "$nops" sftp_ops "$verb"; done
# WebDAV: one curl per request, each authenticated (as a client without cookies does)
dav_ops() { # verb
	local k
	for k in $(seq "$nops"); do
		case $1 in
		put) davcurl -o /dev/null -T "$tmp/small" "$(dav_url 1)/ops-dav/f$k" ;;
		get) davcurl -o /dev/null "$(dav_url 1)/ops-dav/f$k" ;;
		stat) davcurl -o /dev/null -X PROPFIND -H 'Depth: 0' "$(dav_url 1)/ops-dav/f$k" ;;
		list) davcurl -o /dev/null -X PROPFIND -H 'Depth: 1' "$(dav_url 1)/ops-dav/" ;;
		esac
	done
}
for verb in put get stat list; do measure "dav-$verb" "$nops" dav_ops "$verb"; done
}
load_end=$(load)

# ---------------------------------------------------------------- report
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
printf '\nMachine: %s cores, load average %s at the start, %s at the end; runs: %s.\n\n' "$(nproc)" "$load_start" "$load_end" "$runs"
[[ $parts == *,a,* ]] && {
printf '| (a) upload of %s MiB | median s (min-max) | MB/s | vs. plain PUT | CPU s: node 1, gateway (medians) |\n|---|---|---|---|---|\n' "$mb"
read -r pm pmin pmax <<<"$(stats <<<"${samples[plain]}")"
for row in plain dav sftp; do
	read -r m lo hi <<<"$(stats <<<"${samples[$row]}")"
	case $row in
	plain) label="plain PUT to the gateway (curl --aws-sigv4, UNSIGNED-PAYLOAD)" ;;
	dav) label="WebDAV PUT through node 1 (curl, HTTPS)" ;;
	sftp) label="sftp put through node 1 (OpenSSH)" ;;
	esac
	read -r cn _ <<<"$(stats <<<"${cpu[$row-node]}")"
	read -r cg _ <<<"$(stats <<<"${cpu[$row-gw]}")"
	printf '| %s | %s (%s-%s) | %.0f | %sx | %s, %s |\n' "$label" "$m" "$lo" "$hi" "$(echo "$mb * 1.048576 / $m" | bc -l)" "$(ratio "$pm" "$m")" "$cn" "$cg"
done
}
[[ $parts == *,b,* ]] && {
total=$((clients * cmb * 2))
printf '\n| (b) %s clients, each %s MiB up then down (WebDAV, curl) | median s (min-max) | aggregate MB/s | spread / one |\n|---|---|---|---|\n' "$clients" "$cmb"
read -r om olo ohi <<<"$(stats <<<"${samples[one]}")"
read -r sm slo shi <<<"$(stats <<<"${samples[spread]}")"
printf '| all through node 1 | %s (%s-%s) | %.0f | 1 |\n' "$om" "$olo" "$ohi" "$(echo "$total * 1.048576 / $om" | bc -l)"
printf '| spread over nodes 1-3 | %s (%s-%s) | %.0f | %sx |\n' "$sm" "$slo" "$shi" "$(echo "$total * 1.048576 / $sm" | bc -l)" "$(ratio "$om" "$sm")"
}
[[ $parts == *,c,* ]] && {
printf '\n| (c) etcd requests per operation, all (of which writes) (%s operations each, 64 KiB files; idle background %.1f/s taken off) | sftp (one session) | WebDAV (one request each) |\n|---|---|---|\n' "$nops" "$idle_rate"
for verb in put get stat list; do
	case $verb in
	put) label="upload (new file)" ;;
	get) label="download" ;;
	stat) label="stat (sftp ls -l FILE, PROPFIND Depth 0)" ;;
	list) label="list of $nops entries (sftp ls -l DIR, PROPFIND Depth 1)" ;;
	esac
	printf '| %s | %.1f (%.1f) | %.1f (%.1f) |\n' "$label" "${ops[sftp-$verb]}" "${ops[sftp-$verb-w]}" "${ops[dav-$verb]}" "${ops[dav-$verb-w]}"
done
printf '| sftp login (connect, pwd) | %.1f (%.1f) | |\n' "${ops[sftp-connect]}" "${ops[sftp-connect-w]}"
}
exit 0
