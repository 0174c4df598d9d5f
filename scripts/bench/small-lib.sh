# scripts/bench/small-lib.sh, sourced by the small-file scripts
# (small-alternate.sh, upload-syscalls.sh, download-switches.sh): the files
# they move, a securefsd on a fresh data directory with user "bench"
# logging in by key, and an sftp batch against it.

# small_files DIR KEY: 500 files of 4-64 KiB in DIR, the same bytes every
# time (seed 1), and an SSH key pair KEY, KEY.pub.
small_files() {
	ssh-keygen -q -t ed25519 -N '' -f "$2"
	mkdir -p "$1"
	python3 - "$1" <<'P'
import os, random, sys
random.seed(1)
for i in range(500):
    with open(f"{sys.argv[1]}/f{i:05d}", "wb") as f:
        f.write(os.urandom(random.randint(4096, 65536)))
P
}

# small_serve BIN DATADIR KEY [serve args...]: starts BIN serve on DATADIR
# (its log in DATADIR.log), adds user bench with KEY.pub, and sets
# small_pid and small_port.
small_serve() {
	local bin=$1 dd=$2 key=$3 addr=""
	shift 3
	"$bin" --data-dir "$dd" serve --sftp-addr 127.0.0.1:0 --dav-addr 127.0.0.1:0 "$@" >"$dd.log" 2>&1 &
	small_pid=$!
	for _ in $(seq 100); do
		addr=$(sed -n 's/^listening sftp \([0-9.]*:[0-9]*\).*/\1/p' "$dd.log" | head -1)
		[[ -n $addr ]] && break
		sleep 0.1
	done
	[[ -n $addr ]] || { cat "$dd.log" >&2; exit 1; }
	small_port=${addr##*:}
	echo 'Qz-pw-smallfiles-987!' | "$bin" --data-dir "$dd" user add bench --password-stdin --key "$key.pub" >/dev/null
}

# small_sftp KEY: an sftp batch from stdin against the server small_serve
# started, with the bench's cipher.
small_sftp() {
	sftp -q -b - -i "$1" -P "$small_port" -c "${BENCH_CIPHER:-aes128-gcm@openssh.com}" \
		-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null bench@127.0.0.1 >/dev/null
}

# small_uploaded TMP BIN [serve args...]: the files and key in TMP, BIN
# serving TMP/data, and the files uploaded once into w/r0 (warm-up, or what
# a download reads).
small_uploaded() {
	local tmp=$1 bin=$2
	shift 2
	small_files "$tmp/files" "$tmp/key"
	small_serve "$bin" "$tmp/data" "$tmp/key" "$@"
	echo "mkdir w" | small_sftp "$tmp/key"
	echo "put -r $tmp/files w/r0" | small_sftp "$tmp/key"
}

# small_session BIN [serve args...]: small_uploaded in a new temporary
# directory, small_tmp, which is removed (and the server stopped) when the
# script exits; sets small_pid and small_port as small_serve does.
small_session() {
	small_tmp=$(mktemp -d)
	trap 'kill "${small_pid:-}" 2>/dev/null || true; rm -rf "$small_tmp"' EXIT
	small_uploaded "$small_tmp" "$@"
}
