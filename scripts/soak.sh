#!/usr/bin/env bash
# Long reliability runs of securefsd, separate from scripts/test.sh.
#
# Usage: scripts/soak.sh            (default SOAK_SECONDS=600)
#        SOAK_SECONDS=3600 SOAK_SCALE=10 scripts/soak.sh
#
# What it does, until SOAK_SECONDS have passed (it never starts a new step
# after that, and each step is bounded by go test -timeout):
#   1. builds securefsd once (without -race, like production);
#   2. loops over the heavy end-to-end suites of e2e/ with SECUREFSD_SOAK=SOAK_SCALE:
#      - TestCrashDuringUploads: SOAK_SCALE kill -9 / restart cycles on the same
#        data, each at a random point, checking every acknowledged upload;
#      - TestLoad: 64 SFTP+WebDAV sessions, SOAK_SCALE times more operations;
#      - TestKeyRotateWhileServing: 3*SOAK_SCALE rotations under client traffic;
#      - TestTamper*, TestDiskFull, TestHostile*, TestIsolation, TestLoginFlood:
#        as in CI, repeated (random data and timing each run);
#   3. then runs every Go fuzz target for FUZZTIME each (default 60s).
# Every run's output goes to SOAK_LOG (default /tmp/securefsd-soak.log); the
# script stops at the first failure and prints the failing run.
#
# Needs what scripts/test.sh needs (it installs the packages), and root for
# the disk-full test's tmpfs mount.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_SCALE=${SOAK_SCALE:-5}
FUZZTIME=${FUZZTIME:-60s}
SOAK_LOG=${SOAK_LOG:-/tmp/securefsd-soak.log}

start=$(date +%s)
left() { echo $(( SOAK_SECONDS - ($(date +%s) - start) )); }

bin=$(mktemp -d)/securefsd
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/securefsd
export SECUREFSD_BIN=$bin SECUREFSD_SOAK=$SOAK_SCALE
: >"$SOAK_LOG"

suites=(
  'TestCrashDuringUploads|TestCrashDuringScpOverwrites|TestCrashDuringRandomWrites'
  'TestLoad'
  'TestTamper|TestTamperLegacySCP|TestTamperMetadata|TestTamperRollback|TestTamperSwapWholeFiles'
  'TestDiskFull'
  'TestKeyRotateWhileServing'
  'TestLoginFlood'
  'TestHostilePaths|TestHostileSFTPPackets|TestHostileWebDAVBodies|TestHeaderInjection'
  'TestIsolation'
)

round=0
while [ "$(left)" -gt 0 ]; do
  round=$((round + 1))
  for s in "${suites[@]}"; do
    [ "$(left)" -gt 0 ] || break
    printf 'round %d: %s (%ds left)\n' "$round" "$s" "$(left)"
    if ! go test -count=1 -timeout 30m -run "^(${s})\$" -v ./e2e >>"$SOAK_LOG" 2>&1; then
      echo "FAILED: $s (round $round); see $SOAK_LOG"
      grep -E -- '^(---|===|\s+\S+_test.go:)' "$SOAK_LOG" | tail -40
      exit 1
    fi
  done
done

echo "fuzzing (${FUZZTIME} per target)"
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "-- $pkg $target"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >>"$SOAK_LOG" 2>&1 || {
      echo "FAILED: fuzz $pkg $target; see $SOAK_LOG"; tail -30 "$SOAK_LOG"; exit 1; }
  done
done

echo "soak passed: $round rounds in $(( $(date +%s) - start ))s (log: $SOAK_LOG)"
