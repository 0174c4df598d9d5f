#!/usr/bin/env bash
# Enforces the package boundaries of docs/ARCHITECTURE.md: protocol packages
# and users never import envelope; only users imports bbolt; envelope and vfs
# import no protocol package.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
deny() { # package, forbidden import (prefix)
  local pkg=$1 bad=$2
  if go list -deps "$mod/$pkg" 2>/dev/null | grep -q "^$bad"; then
    echo "import rule broken: $pkg must not depend on $bad"; fail=1
  fi
}
for p in internal/sftpd internal/davd internal/webui internal/users; do deny "$p" "$mod/internal/envelope"; done
for p in internal/envelope internal/vfs internal/sftpd internal/davd internal/webui internal/admin; do deny "$p" "go.etcd.io/bbolt"; done
for p in internal/envelope internal/vfs; do
  for q in sftpd davd webui users admin; do deny "$p" "$mod/internal/$q"; done
  deny "$p" "github.com/pkg/sftp"; deny "$p" "golang.org/x/net/webdav"
done
deny internal/envelope "$mod/internal/vfs"
deny internal/users "$mod/internal/vfs"
exit $fail
