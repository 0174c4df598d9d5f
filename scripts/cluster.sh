#!/usr/bin/env bash
# A local securefsd cluster for trying it by hand (issue 21, docs/CLUSTER.md):
# 3 etcd members (Debian's etcd-server), Versity's S3 gateway over a local
# directory, and 3 securefsd nodes sharing both, all on 127.0.0.1.
#
#   scripts/cluster.sh up     start it (in $CLUSTER_DIR, default /tmp/securefsd-cluster)
#   scripts/cluster.sh down   stop what `up` started (by the pids it recorded) and remove the directory
#
# Ports start at $CLUSTER_PORT (default 24000): etcd clients +1..+3, peers +11..+13,
# S3 +20, node i's SFTP +30+i and WebDAV (HTTPS) +40+i. CLUSTER_SECUREFSD_BIN=path
# runs that binary instead of building ./cmd/securefsd; CLUSTER_NODE_ARGS="..." are
# more arguments of every node's serve. Not for production: the keys
# live in the data directories and etcd runs without TLS.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CLUSTER_DIR:-/tmp/securefsd-cluster}
base=${CLUSTER_PORT:-24000}

die() { echo "cluster.sh: $*" >&2; exit 1; }

# wait_for FILE PATTERN: until a line matches (a process's ready line), 60 s at most.
wait_for() {
  for _ in $(seq 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "no '$2' in $1 after 60 s:
$(tail -20 "$1")"
}

down() {
  [ -d "$dir" ] || { echo "nothing to stop in $dir"; return 0; }
  for f in "$dir"/pids/*; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
  done
  for f in "$dir"/pids/*; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "stopped; removed $dir"
}

up() {
  [ -e "$dir/pids" ] && die "$dir holds a running cluster: scripts/cluster.sh down first"
  command -v etcd >/dev/null || die "needs etcd (Debian: apt-get install etcd-server)"
  command -v curl >/dev/null || die "needs curl"
  mkdir -p "$dir"/{bin,pids,logs,s3/sfd}
  chmod 700 "$dir"
  echo "building securefsd and Versity's S3 gateway..."
  if [ -n "${CLUSTER_SECUREFSD_BIN:-}" ]; then
    install -m 755 "$CLUSTER_SECUREFSD_BIN" "$dir/bin/securefsd"
  else
    go build -o "$dir/bin/securefsd" ./cmd/securefsd
  fi
  gw=$(go tool -n github.com/versity/versitygw/cmd/versitygw | tail -1)

  initial="" endpoints=""
  for i in 1 2 3; do
    initial+="${initial:+,}m$i=http://127.0.0.1:$((base + 10 + i))"
    endpoints+="${endpoints:+,}http://127.0.0.1:$((base + i))"
  done
  for i in 1 2 3; do
    c=http://127.0.0.1:$((base + i)) p=http://127.0.0.1:$((base + 10 + i))
    etcd --name "m$i" --data-dir "$dir/etcd$i" --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" --initial-cluster "$initial" \
      --initial-cluster-state new --initial-cluster-token securefsd-local --max-txn-ops 1024 \
      --logger zap --log-level warn >"$dir/logs/etcd$i.log" 2>&1 &
    echo $! >"$dir/pids/etcd$i"
  done
  for i in 1 2 3; do
    for _ in $(seq 600); do
      curl -fsS "http://127.0.0.1:$((base + i))/health" 2>/dev/null | grep -q '"health":"true"' && break
      sleep 0.1
    done
  done

  # The gateway's root key pair, and the nodes' credentials (AWS variables).
  export AWS_ACCESS_KEY_ID="root$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export AWS_SECRET_ACCESS_KEY="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$dir/s3.env"
  chmod 600 "$dir/s3.env"
  ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    "$gw" --port "127.0.0.1:$((base + 20))" --quiet posix "$dir/s3" >"$dir/logs/s3.log" 2>&1 &
  echo $! >"$dir/pids/s3"
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$((base + 20))/" && break; sleep 0.1; done

  for i in 1 2 3; do
    data=$dir/node$i
    if [ "$i" -gt 1 ]; then
      # Every node holds the first node's keyring, index key and users key before its first start.
      mkdir -m 700 -p "$data"
      install -m 600 "$dir/node1/keyring" "$dir/node1/index.key" "$dir/node1/users.key" "$data/"
    fi
    "$dir/bin/securefsd" --data-dir "$data" serve \
      --sftp-addr "127.0.0.1:$((base + 30 + i))" --dav-addr "127.0.0.1:$((base + 40 + i))" \
      --store s3://sfd/blobs --s3-endpoint "http://127.0.0.1:$((base + 20))" \
      --etcd-endpoints "$endpoints" --etcd-max-txn-ops 1024 --node-name "node$i" ${CLUSTER_NODE_ARGS:-} >"$dir/logs/node$i.out" 2>"$dir/logs/node$i.log" &
    echo $! >"$dir/pids/node$i"
    wait_for "$dir/logs/node$i.out" '^ready$'
  done

  # One user, made once through node 1's admin socket: the users database
  # is etcd's, so every node knows it.
  pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$pass" | "$dir/bin/securefsd" --data-dir "$dir/node1" user add demo --password-stdin >/dev/null

  cat <<EOT

securefsd cluster up in $dir
  etcd:      $endpoints
  S3:        http://127.0.0.1:$((base + 20)) (bucket sfd, prefix blobs; credentials in $dir/s3.env)
  user:      demo, password $pass (every node: users, bans, WebDAV locks and browser sessions are in etcd)
EOT
  for i in 1 2 3; do
    echo "  node $i:    sftp -P $((base + 30 + i)) demo@127.0.0.1    curl -k -u demo:$pass https://127.0.0.1:$((base + 40 + i))/"
  done
  cat <<EOT
  logs:      $dir/logs/
Upload through one node, read through another. Stop everything with: scripts/cluster.sh down
EOT
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: scripts/cluster.sh up|down" >&2; exit 2 ;;
esac
