#!/usr/bin/env bash
# scripts/bench.sh: benchmark securefsd side by side with the servers a user
# would run instead, on this machine, in one run (issue 7, docs/PERFORMANCE.md).
#
# Peers (all on 127.0.0.1, spare ports, own temporary config and data):
#   SFTP:   OpenSSH sshd + internal-sftp, `rclone serve sftp`
#   WebDAV: nginx (nginx-extras: dav + dav_ext), `rclone serve webdav`,
#           each over HTTPS (self-signed cert) and over plain HTTP
#   securefsd (encrypting, as shipped): one instance with HTTPS WebDAV,
#           one with --insecure-http
# Everything lives under one mktemp directory (so every data file is on the
# same filesystem) that is removed at exit; every process started here is
# stopped at exit. Results: bench-results/<UTC timestamp>/{results.json,table.md}.
#
# Usage: scripts/bench.sh            (full run; about 15 minutes on 2 cores)
#        BENCH_BIG_MB=64 BENCH_RUNS=1 scripts/bench.sh    (quick smoke run)
#        scripts/bench.sh shared     (a shared folder against a home: 1 GiB up/down
#                                     and a listing, scripts/bench/shared.sh)
#        scripts/bench.sh audit      (the audit trail on against off: 1 GiB and
#                                     2,000 small files up/down, scripts/bench/audit.sh)
#        scripts/bench.sh cluster    (3 nodes on etcd and Versity's S3 gateway: 1 GiB upload
#                                     through a node vs a plain S3 PUT, 32 clients on one node vs
#                                     spread over 3, etcd requests per operation; scripts/bench/cluster.sh)
#        scripts/bench.sh micro      (Go micro-benchmarks, benchstat format;
#                                     BENCH_MICRO_COUNT=6 BENCH_MICRO_BENCHTIME=1s
#                                     BENCH_MICRO_RUN=. BENCH_MICRO_PKGS="./internal/...")
# Knobs (environment):
#   BENCH_RUNS=3            runs per cell (median, min-max reported)
#   BENCH_WARMUP=1          unmeasured runs before them in the small and randio workloads
#                           (docs/PERFORMANCE.md, "Warm-up runs")
#   BENCH_WORKLOADS=big,small,conc,randio,list,rss,link   subset to run (link: a share-link
#                           download vs a WebDAV GET of the same file, same securefsd)
#   BENCH_SERVERS=openssh,rclone,nginx,securefsd     subset of servers
#   BENCH_BIG_MB=1024       workload 1 file size
#   BENCH_HUGE_MB=4096      workload 6 (RSS vs file size) upload size; 0 skips it
#   BENCH_SMALL_COUNT=2000 BENCH_SMALL_MIN_KB=4 BENCH_SMALL_MAX_KB=64
#   BENCH_CONC_MB=64 BENCH_CONC_CLIENTS="1 8 32"
#   BENCH_RANDIO_MB=256 BENCH_RANDIO_SECS=3 BENCH_RANDIO_BS=4096
#   BENCH_LIST_COUNT=10000
#   BENCH_CIPHER=aes128-gcm@openssh.com BENCH_KEX=curve25519-sha256   SSH algorithms of every SFTP client
#   BENCH_RSS_RUNS=1        runs of workload 6
#   BENCH_TLS13_CIPHER=TLS_AES_128_GCM_SHA256   TLS 1.3 suite for every curl
#   BENCH_RESULTS=<repo>/bench-results
#   BENCH_TMPDIR=${TMPDIR:-/tmp}   parent of the scratch directory
#   BENCH_KEEP_TMP=1        keep the scratch directory (debugging)
#   BENCH_SECUREFSD_BIN=path   use this binary instead of building ./cmd/securefsd
#   BENCH_SECUREFSD_ARGS="..." extra arguments for `securefsd serve`
#   BENCH_PPROF=1           also collect pprof CPU and allocs profiles of securefsd
#                           (one extra, unmeasured run per workload; --pprof-addr)
#   BENCH_RCLONE_COPY=1     add `rclone copy` rows to the small-files workload
#   BENCH_SERVER_CPUS=1 BENCH_CLIENT_CPUS=0   pin every server (taskset -c) to these CPUs and
#                           every client to those, as if they ran on different machines;
#                           Go servers keep GOMAXPROCS=$(nproc), their setting unpinned.
#                           Unset (the default): all share every CPU.
#   BENCH_OP_TIMEOUT=900 BENCH_LIST_TIMEOUT=120 BENCH_LIST_SETUP_TIMEOUT=300   seconds
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- micro-benchmarks
# `scripts/bench.sh micro`: the Go micro-benchmarks of the hot paths, in
# benchstat format (compare two runs with `benchstat old.txt new.txt`).
if [[ ${1:-} == micro ]]; then
	out=${BENCH_RESULTS:-$repo/bench-results}/micro-$(date -u +%Y%m%dT%H%M%SZ).txt
	mkdir -p "$(dirname "$out")"
	[[ -f $(dirname "$out")/.gitignore ]] || printf '*\n' >"$(dirname "$out")/.gitignore"
	# shellcheck disable=SC2086 # the package list is a word list
	go test -run '^$' -bench "${BENCH_MICRO_RUN:-.}" -benchmem -count "${BENCH_MICRO_COUNT:-6}" \
		-benchtime "${BENCH_MICRO_BENCHTIME:-1s}" \
		${BENCH_MICRO_PKGS:-./internal/envelope ./internal/vfs ./internal/sftpd ./internal/davd} | tee "$out"
	log "wrote $out"
	exit 0
fi
# `scripts/bench.sh shared`: a shared folder against a home (issue 16), see
# scripts/bench/shared.sh.
if [[ ${1:-} == shared ]]; then
	exec "$repo/scripts/bench/shared.sh"
fi
# `scripts/bench.sh audit`: the audit trail on against off (issue 19), see
# scripts/bench/audit.sh.
if [[ ${1:-} == audit ]]; then
	exec "$repo/scripts/bench/audit.sh"
fi
# `scripts/bench.sh cluster`: a 3-node cluster against its object store
# (issue 21), see scripts/bench/cluster.sh.
if [[ ${1:-} == cluster ]]; then
	exec "$repo/scripts/bench/cluster.sh"
fi
[[ $# == 0 ]] || die "usage: scripts/bench.sh [micro|shared|audit|cluster]  (settings are environment variables, see the header)"

# ---------------------------------------------------------------- packages
need_pkgs=()
command -v sshd >/dev/null 2>&1 || [[ -x /usr/sbin/sshd ]] || need_pkgs+=(openssh-server)
command -v sftp >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v rclone >/dev/null 2>&1 || need_pkgs+=(rclone)
{ command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; } &&
	[[ -f /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ]] || need_pkgs+=(nginx-extras)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
if ((${#need_pkgs[@]})); then
	log "installing ${need_pkgs[*]}"
	sudo=""
	[[ $(id -u) == 0 ]] || sudo=sudo
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi
command -v go >/dev/null 2>&1 || die "go is needed (builds securefsd and scripts/bench/randio)"
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- scratch + cleanup
tmp=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/securefsd-bench.XXXXXX")
started=()

descendants() { # pid -> its descendants, deepest last
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		echo "$c"
		descendants "$c"
	done
}

cleanup() {
	local rc=$? p all=()
	trap - EXIT INT TERM
	for p in "${started[@]}"; do
		all+=("$p" $(descendants "$p"))
	done
	if ((${#all[@]})); then
		kill -TERM "${all[@]}" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "${all[@]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "${all[@]}" 2>/dev/null || true
		wait 2>/dev/null || true
	fi
	if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD... : run CMD in the background, output in $tmp/logs/NAME.log
start() {
	local name=$1
	shift
	if [[ -n ${BENCH_SERVER_CPUS:-} ]]; then
		set -- env GOMAXPROCS="$(nproc)" taskset -c "$BENCH_SERVER_CPUS" "$@"
	fi
	"$@" >"$tmp/logs/$name.log" 2>&1 &
	started+=($!)
	eval "pid_${name//-/_}=$!"
}

# wait_port PORT NAME PID: until something accepts on 127.0.0.1:PORT (20 s deadline)
wait_port() {
	local port=$1 name=$2 pid=$3 end=$((SECONDS + 20))
	while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || { cat "$tmp/logs/$name.log" >&2; die "$name exited"; }
		((SECONDS < end)) || { cat "$tmp/logs/$name.log" >&2; die "$name: nothing listens on port $port"; }
		sleep 0.1
	done
}

want() { # want SERVER: is it in BENCH_SERVERS?
	[[ -z ${BENCH_SERVERS:-} ]] && return 0
	[[ ,$BENCH_SERVERS, == *",$1,"* ]]
}

mkdir -p "$tmp"/{logs,data,work,ssh,tls,nginx,rclone}
pw=sekrit-$RANDOM$RANDOM$RANDOM  # not containing the user name (the password policy refuses that)
read -r p_sshd p_rsftp p_nginx_https p_nginx_http p_rdav_https p_rdav_http < <(python3 -c '
import socket
s = [socket.socket() for _ in range(6)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# ---------------------------------------------------------------- keys and certs
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$tmp/ssh/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$tmp/ssh/client_ed25519"
cp "$tmp/ssh/client_ed25519.pub" "$tmp/ssh/authorized_keys"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
	-keyout "$tmp/tls/key.pem" -out "$tmp/tls/cert.pem" 2>/dev/null
printf 'bench:%s\n' "$(openssl passwd -apr1 "$pw")" >"$tmp/nginx/htpasswd"
: >"$tmp/rclone/rclone.conf"

# ---------------------------------------------------------------- helpers
log "building scripts/bench/randio"
go build -o "$tmp/randio" ./scripts/bench/randio

servers=() # JSON objects, one per target

# ---------------------------------------------------------------- OpenSSH
if want openssh; then
	mkdir -p "$tmp/data/openssh"
	mkdir -p /run/sshd 2>/dev/null || true # sshd insists on its privilege-separation directory
	cat >"$tmp/ssh/sshd_config" <<-EOF
		Port $p_sshd
		ListenAddress 127.0.0.1
		HostKey $tmp/ssh/host_ed25519
		PidFile $tmp/ssh/sshd.pid
		AuthorizedKeysFile $tmp/ssh/authorized_keys
		PermitRootLogin prohibit-password
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		PrintMotd no
		MaxStartups 200
		MaxSessions 200
		LogLevel INFO
		Subsystem sftp internal-sftp -d $tmp/data/openssh
	EOF
	start openssh "$SSHD" -D -e -f "$tmp/ssh/sshd_config"
	wait_port "$p_sshd" openssh "$pid_openssh"
	servers+=("{\"name\":\"openssh\",\"label\":\"OpenSSH $("$SSHD" -V 2>&1 | sed -n 's/^OpenSSH_\([^ ,]*\).*/\1/p') internal-sftp\",\"proto\":\"sftp\",\"port\":$p_sshd,\"user\":\"$(id -un)\",\"pid\":$pid_openssh,\"data_dir\":\"$tmp/data/openssh\"}")
fi

# ---------------------------------------------------------------- rclone
if want rclone; then
	rver=$(rclone version 2>/dev/null | sed -n '1s/^rclone //p')
	mkdir -p "$tmp/data/rclone-sftp" "$tmp/data/rclone-webdav-https" "$tmp/data/rclone-webdav-http"
	rc=(rclone --config "$tmp/rclone/rclone.conf" --cache-dir "$tmp/rclone/cache" -q)
	start rclone-sftp "${rc[@]}" serve sftp "$tmp/data/rclone-sftp" --addr "127.0.0.1:$p_rsftp" \
		--key "$tmp/ssh/host_ed25519" --authorized-keys "$tmp/ssh/authorized_keys" --user bench --pass "$pw"
	start rclone-webdav-https "${rc[@]}" serve webdav "$tmp/data/rclone-webdav-https" --addr "127.0.0.1:$p_rdav_https" \
		--cert "$tmp/tls/cert.pem" --key "$tmp/tls/key.pem" --user bench --pass "$pw"
	start rclone-webdav-http "${rc[@]}" serve webdav "$tmp/data/rclone-webdav-http" --addr "127.0.0.1:$p_rdav_http" \
		--user bench --pass "$pw"
	wait_port "$p_rsftp" rclone-sftp "$pid_rclone_sftp"
	wait_port "$p_rdav_https" rclone-webdav-https "$pid_rclone_webdav_https"
	wait_port "$p_rdav_http" rclone-webdav-http "$pid_rclone_webdav_http"
	servers+=("{\"name\":\"rclone-sftp\",\"label\":\"rclone $rver serve sftp\",\"proto\":\"sftp\",\"port\":$p_rsftp,\"user\":\"bench\",\"pid\":$pid_rclone_sftp,\"data_dir\":\"$tmp/data/rclone-sftp\"}")
	servers+=("{\"name\":\"rclone-webdav-https\",\"label\":\"rclone $rver serve webdav\",\"proto\":\"webdav\",\"url\":\"https://127.0.0.1:$p_rdav_https/\",\"pid\":$pid_rclone_webdav_https,\"data_dir\":\"$tmp/data/rclone-webdav-https\"}")
	servers+=("{\"name\":\"rclone-webdav-http\",\"label\":\"rclone $rver serve webdav\",\"proto\":\"webdav\",\"url\":\"http://127.0.0.1:$p_rdav_http/\",\"pid\":$pid_rclone_webdav_http,\"data_dir\":\"$tmp/data/rclone-webdav-http\"}")
fi

# ---------------------------------------------------------------- nginx
if want nginx; then
	mkdir -p "$tmp/data/nginx" "$tmp/nginx/temp"
	cat >"$tmp/nginx/nginx.conf" <<-EOF
		load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;
		user $(id -un) $(id -gn);
		worker_processes auto;
		daemon off;
		master_process on;
		pid $tmp/nginx/nginx.pid;
		error_log $tmp/nginx/error.log warn;
		events { worker_connections 1024; }
		http {
		    access_log $tmp/nginx/access.log;
		    sendfile on;
		    tcp_nopush on;
		    keepalive_timeout 65;
		    types { }
		    default_type application/octet-stream;
		    client_body_temp_path $tmp/nginx/temp/body;
		    proxy_temp_path $tmp/nginx/temp/proxy;
		    fastcgi_temp_path $tmp/nginx/temp/fastcgi;
		    uwsgi_temp_path $tmp/nginx/temp/uwsgi;
		    scgi_temp_path $tmp/nginx/temp/scgi;
		    client_max_body_size 0;
		    ssl_protocols TLSv1.2 TLSv1.3;
		    ssl_certificate $tmp/tls/cert.pem;
		    ssl_certificate_key $tmp/tls/key.pem;
		    server {
		        listen 127.0.0.1:$p_nginx_https ssl;
		        listen 127.0.0.1:$p_nginx_http;
		        root $tmp/data/nginx;
		        location / {
		            auth_basic "bench";
		            auth_basic_user_file $tmp/nginx/htpasswd;
		            dav_methods PUT DELETE MKCOL COPY MOVE;
		            dav_ext_methods PROPFIND OPTIONS;
		            dav_access user:rw group:r all:r;
		            create_full_put_path on;
		            autoindex on;
		        }
		    }
		}
	EOF
	start nginx "$NGINX" -p "$tmp/nginx/" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf"
	wait_port "$p_nginx_https" nginx "$pid_nginx"
	wait_port "$p_nginx_http" nginx "$pid_nginx"
	nver=$("$NGINX" -v 2>&1 | sed -n 's/.*nginx\///p')
	servers+=("{\"name\":\"nginx-https\",\"label\":\"nginx $nver dav+dav_ext\",\"proto\":\"webdav\",\"url\":\"https://127.0.0.1:$p_nginx_https/\",\"pid\":$pid_nginx,\"data_dir\":\"$tmp/data/nginx\"}")
	servers+=("{\"name\":\"nginx-http\",\"label\":\"nginx $nver dav+dav_ext\",\"proto\":\"webdav\",\"url\":\"http://127.0.0.1:$p_nginx_http/\",\"pid\":$pid_nginx,\"data_dir\":\"$tmp/data/nginx\"}")
fi

# ---------------------------------------------------------------- securefsd
# start_securefsd NAME [--insecure-http]: start one instance on its own data
# dir, read its "listening ..." lines, add the bench user.
sfd_bin=""
pprof_flag=""
start_securefsd() {
	local name=$1 extra=() dd="$tmp/data/$1" out="$tmp/logs/$1.log" end sftp_addr="" dav_url="" pprof_addr=""
	shift
	extra=("$@")
	mkdir -p "$dd"
	if [[ -n $pprof_flag ]]; then
		pprof_addr=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		extra+=("$pprof_flag" "$pprof_addr")
	fi
	# shellcheck disable=SC2086 # BENCH_SECUREFSD_ARGS is a word list on purpose
	start "$name" "$sfd_bin" --data-dir "$dd" serve --sftp-addr 127.0.0.1:0 --dav-addr 127.0.0.1:0 \
		"${extra[@]}" ${BENCH_SECUREFSD_ARGS:-}
	local pidvar=pid_${name//-/_}
	local pid=${!pidvar}
	end=$((SECONDS + 30))
	while [[ -z $sftp_addr || -z $dav_url ]]; do
		sftp_addr=$(sed -n 's/^listening sftp \([0-9.]*:[0-9]*\).*/\1/p' "$out" | head -1)
		dav_url=$(sed -n 's/^listening webdav \(https\{0,1\}:\/\/[^ ]*\).*/\1/p' "$out" | head -1)
		kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; return 1; }
		((SECONDS < end)) || { cat "$out" >&2; log "$name: no listening lines"; return 1; }
		sleep 0.1
	done
	[[ $dav_url == */ ]] || dav_url+=/
	if ! printf '%s\n' "$pw" | "$sfd_bin" --data-dir "$dd" user add bench --password-stdin \
		--key "$tmp/ssh/client_ed25519.pub" >>"$tmp/logs/$name-useradd.log" 2>&1; then
		cat "$tmp/logs/$name-useradd.log" >&2
		log "$name: user add failed"
		return 1
	fi
	local ver
	ver=$("$sfd_bin" version 2>/dev/null | head -1 | sed 's/^securefsd[ ]*//') || true
	local label="securefsd${ver:+ $ver}"
	local scheme=${dav_url%%:*}
	if [[ $name == securefsd ]]; then
		servers+=("{\"name\":\"securefsd-sftp\",\"label\":\"$label\",\"proto\":\"sftp\",\"port\":${sftp_addr##*:},\"user\":\"bench\",\"pid\":$pid,\"subject\":true,\"pprof\":\"$pprof_addr\"}")
	fi
	servers+=("{\"name\":\"securefsd-$scheme\",\"label\":\"$label\",\"proto\":\"webdav\",\"url\":\"$dav_url\",\"pid\":$pid,\"subject\":true,\"pprof\":\"$pprof_addr\",\"bin\":\"$sfd_bin\",\"sfd_data_dir\":\"$dd\"}")
}

sfd_status=""
if want securefsd; then
	if [[ -n ${BENCH_SECUREFSD_BIN:-} ]]; then
		sfd_bin=$BENCH_SECUREFSD_BIN
	elif [[ -d cmd/securefsd ]] && compgen -G 'cmd/securefsd/*.go' >/dev/null &&
		go build -o "$tmp/securefsd" ./cmd/securefsd 2>"$tmp/logs/securefsd-build.log"; then
		sfd_bin=$tmp/securefsd
	else
		sfd_status="securefsd not built yet"
	fi
	if [[ -n $sfd_bin ]]; then
		if [[ ${BENCH_PPROF:-0} == 1 ]]; then
			# --pprof-addr is a hidden flag, so look for it in the binary, not in --help.
			if grep -q -a -- 'pprof-addr' "$sfd_bin"; then
				pprof_flag=--pprof-addr
			else
				log "BENCH_PPROF=1 but securefsd has no --pprof-addr flag; no profiles"
			fi
		fi
		if start_securefsd securefsd && start_securefsd securefsd-plain --insecure-http; then
			:
		else
			sfd_status="securefsd failed to start (see the log above)"
		fi
	fi
	if [[ -n $sfd_status ]]; then
		log "$sfd_status"
		for n in securefsd-sftp securefsd-https securefsd-http; do
			servers+=("{\"name\":\"$n\",\"label\":\"securefsd\",\"proto\":\"none\",\"subject\":true,\"unavailable\":\"$sfd_status\"}")
		done
	fi
fi

# ---------------------------------------------------------------- run
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results_root=${BENCH_RESULTS:-$repo/bench-results}
mkdir -p "$results_root/$stamp"
[[ -f $results_root/.gitignore ]] || printf '*\n' >"$results_root/.gitignore"
{
	printf '{"tmp":"%s","password":"%s","key":"%s","randio":"%s","results":"%s","rclone_conf":"%s","securefsd_build_log":"%s","servers":[' \
		"$tmp" "$pw" "$tmp/ssh/client_ed25519" "$tmp/randio" "$results_root/$stamp" "$tmp/rclone/rclone.conf" \
		"$tmp/logs/securefsd-build.log"
	(IFS=,; printf '%s' "${servers[*]}")
	printf ']}\n'
} >"$tmp/servers.json"

log "servers up; results go to $results_root/$stamp"
# In the background plus wait, so that a TERM to this script runs cleanup at
# once (bash defers traps while a foreground child runs).
client_pin=()
[[ -z ${BENCH_CLIENT_CPUS:-} ]] || client_pin=(taskset -c "$BENCH_CLIENT_CPUS")
"${client_pin[@]}" python3 "$repo/scripts/bench/run.py" "$tmp/servers.json" &
runner=$!
started+=("$runner")
wait "$runner"
