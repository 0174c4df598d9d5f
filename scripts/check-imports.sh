#!/usr/bin/env bash
# Enforces the package boundaries of docs/ARCHITECTURE.md:
#   - sftpd, davd, webui and users never import envelope directly (they go through vfs);
#   - only users and index (storage v2's namespace index) import bbolt;
#   - blob (storage v2's blobs), backup and atomicfile import nothing of ours; index (v2's index) only
#     atomicfile (and of others' bbolt, x/crypto, x/sys/unix for the log's writev, and the etcd client, its cluster engine); content (v2 file
#     content as segment blobs) only envelope and blob; namespace (v2 names on the index) only
#     index, content and blob; nsfs (v2's file system) only namespace, content, blob (its ids) and envelope (the keyrings a rotation hands over); s3blob (v2 blobs in
#     an S3-compatible store, issue 21) only blob, content and minio-go, and only s3blob imports minio-go;
#     cluster (a node's lease and pin in etcd, issue 21) imports nothing of ours, only the etcd client;
#     etcdsess (a cluster's browser sessions and live-session registry) only etcdseal of ours, the etcd client and x/crypto; etcdseal nothing of ours;
#   - envelope depends on nothing outside the standard library but golang.org/x/crypto and
#     golang.org/x/sys/cpu (not even indirectly);
#   - keyfile imports only the standard library, envelope and atomicfile;
#   - envelope and vfs depend on no protocol, user, account or admin package (not even indirectly);
#   - perm, the one permission type of users and vfs, imports nothing of ours;
#   - httpx, the HTTP rules davd and webui share, imports nothing of ours;
#   - testutil (and its subpackages) is imported only by tests: no other package depends on it,
#     and testutil itself imports nothing of ours (so every package's tests may use it);
#   - shares imports only users and perm of ours; no protocol, vfs or users imports shares;
#   - pwpolicy imports nothing of ours;
#   - admin (used by webui's admin and sign-up pages) imports no protocol or webui;
#   - audit (the audit trail) imports only envelope and keyfile of ours (for its key file): no protocol, vfs,
#     users, account, admin or shares, not even indirectly, so every layer may record into it.
#   - only users and webui import the TOTP library github.com/pquerna/otp.
#   - obs (metrics, health) imports nothing of ours, and only cmd/securefsd imports obs, the
#     Prometheus client or go-systemd: the other packages take a recorder interface they define.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
direct() { go list -f '{{join .Imports "\n"}}' "$mod/$1"; }
deps() { go list -deps "$mod/$1"; }
check() { # how package forbidden
  if $1 "$2" | grep -qx "$3"; then echo "import rule broken: $2 must not import $3"; fail=1; fi
}
for p in internal/sftpd internal/davd internal/webui internal/users internal/account; do check direct "$p" "$mod/internal/envelope"; done
for p in $(go list ./... | sed "s#^$mod/##" | grep -v '^internal/users$' | grep -v '^internal/index$' | grep -v '^e2e$'); do
  [ "$p" = "$mod" ] && continue
  check direct "$p" "go.etcd.io/bbolt"
done
for p in internal/envelope internal/vfs; do
  for q in sftpd davd webui users account admin; do check deps "$p" "$mod/internal/$q"; done
  check deps "$p" "github.com/pkg/sftp"
  check deps "$p" "golang.org/x/net/webdav"
done
check deps internal/envelope "$mod/internal/vfs"
# allowed: what may appear among a package's non-standard dependencies (a regexp on import paths).
only() { # how package allowed
  local bad
  bad=$($1 "$2" | grep -vx "$3" || true)
  if [ -n "$bad" ]; then echo "import rule broken: $2 may not depend on:"; echo "$bad" | sed 's/^/  /'; fail=1; fi
}
nonstd() { go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$mod/$1"; }
directNonstd() { go list -f '{{range .Imports}}{{.}}{{"\n"}}{{end}}' "$mod/$1" | grep '\.' || true; }
only nonstd internal/envelope "$mod/internal/envelope\|golang\.org/x/crypto/.*\|golang\.org/x/sys/cpu"
only directNonstd internal/keyfile "$mod/internal/envelope\|$mod/internal/atomicfile"
only directNonstd internal/index "$mod/internal/atomicfile\|go\.etcd\.io/bbolt.*\|go\.etcd\.io/etcd/client/v3\|go\.etcd\.io/etcd/api/v3/v3rpc/rpctypes\|golang\.org/x/crypto/.*\|golang\.org/x/sys/unix"
only directNonstd internal/content "$mod/internal/envelope\|$mod/internal/blob"
only directNonstd internal/namespace "$mod/internal/index\|$mod/internal/content\|$mod/internal/blob"
only directNonstd internal/nsfs "$mod/internal/namespace\|$mod/internal/content\|$mod/internal/blob\|$mod/internal/envelope"
only directNonstd internal/cluster "go\.etcd\.io/etcd/client/v3"
only directNonstd internal/etcdsess "$mod/internal/etcdseal\|go\.etcd\.io/etcd/client/v3\|go\.etcd\.io/etcd/api/v3/v3rpc/rpctypes\|golang\.org/x/crypto/.*"
only directNonstd internal/etcdseal "golang\.org/x/crypto/.*"
only directNonstd internal/s3blob "$mod/internal/blob\|$mod/internal/content\|github\.com/minio/minio-go/v7\(/.*\)\{0,1\}"
for p in $(go list ./... | sed "s#^$mod/##" | grep -v '^internal/s3blob$'); do
  [ "$p" = "$mod" ] && continue
  if direct "$p" | grep -q '^github\.com/minio/minio-go'; then echo "import rule broken: $p must not import minio-go (internal/s3blob is the object store's one client)"; fail=1; fi
done
for q in vfs sftpd davd webui users admin; do check deps internal/keyfile "$mod/internal/$q"; done
for leaf in perm httpx pwpolicy blob backup atomicfile; do
  if deps internal/$leaf | grep -v -x "$mod/internal/$leaf" | grep -q "^$mod/"; then echo "import rule broken: internal/$leaf must not import our packages"; fail=1; fi
done
for p in $(go list ./... | sed "s#^$mod/\{0,1\}##" | grep -v '^internal/testutil'); do
  bad=$(go list -deps "$mod${p:+/$p}" | grep "^$mod/internal/testutil" || true)
  if [ -n "$bad" ]; then echo "import rule broken: ${p:-$mod} (non-test code) must not import $bad"; fail=1; fi
done
if deps internal/testutil | grep -v -x "$mod/internal/testutil" | grep -q "^$mod/"; then echo "import rule broken: internal/testutil must not import our packages"; fail=1; fi
# shares keeps link policies: of ours it uses users and perm only (the bytes are
# served by webui through vfs), and the protocols never learn about tokens.
if direct internal/shares | grep "^$mod/" | grep -vx "$mod/internal/users\|$mod/internal/perm" | grep -q .; then
  echo "import rule broken: internal/shares may import only internal/users and internal/perm of ours"; fail=1
fi
for q in sftpd davd vfs envelope users; do check deps "internal/$q" "$mod/internal/shares"; done
# webui's admin and sign-up pages call admin's operations; admin never reaches back up.
for q in webui davd sftpd; do check deps internal/admin "$mod/internal/$q"; done
only directNonstd internal/audit "$mod/internal/envelope\|$mod/internal/keyfile\|golang\.org/x/crypto/.*"
for q in vfs sftpd davd webui users account admin shares; do check deps internal/audit "$mod/internal/$q"; done
# Two-factor login: TOTP (github.com/pquerna/otp) is users' (codes, secrets) and webui's (the
# enrolment's QR code) only; the protocols see app passwords through users.DB.AuthLogin.
for p in $(go list ./... | sed "s#^$mod/##" | grep -v '^internal/users$\|^internal/webui$\|^e2e$'); do
  [ "$p" = "$mod" ] && continue
  if direct "$p" | grep -q '^github.com/pquerna/otp'; then echo "import rule broken: $p must not import github.com/pquerna/otp"; fail=1; fi
done
# Metrics and systemd: obs imports nothing of ours; only cmd/securefsd reaches obs, the
# Prometheus client or go-systemd (the others define a small recorder interface).
if deps internal/obs | grep -v -x "$mod/internal/obs" | grep -q "^$mod/"; then echo "import rule broken: internal/obs must not import our packages"; fail=1; fi
for p in $(go list ./... | sed "s#^$mod/\{0,1\}##" | grep -v '^internal/obs$' | grep -v '^cmd/securefsd$' | grep -v '^e2e$'); do
  all=$(go list -deps "$mod${p:+/$p}")
  bad=$(echo "$all" | grep -x "$mod/internal/obs\|github.com/prometheus/.*\|github.com/coreos/go-systemd/.*" || true)
  # The etcd client's logger (index's cluster engine) links go-systemd's journal writer; that
  # is the client's, not a way around obs, so it is allowed there and nowhere else.
  if echo "$all" | grep -qx 'go.etcd.io/etcd/client/pkg/v3/logutil'; then
    bad=$(echo "$bad" | grep -vx 'github.com/coreos/go-systemd/v22/journal' || true)
  fi
  if direct "$p" | grep -q '^github.com/coreos/go-systemd/'; then bad="$bad github.com/coreos/go-systemd (direct)"; fi
  if [ -n "$bad" ]; then echo "import rule broken: ${p:-$mod} must not depend on:"; echo "$bad" | sed 's/^/  /'; fail=1; fi
done
exit $fail
