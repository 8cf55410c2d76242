#!/usr/bin/env bash
# Runs the official OCI distribution-spec conformance suite against a freshly started `tether serve`
# (fs + SQLite, fresh data dir, free loopback port), three ways:
#   v2 (1.1)   OCI_VERSION=1.1, every API and data switch at its default (referrers, sha512, …)
#   v2 (dev)   OCI_VERSION=dev: also upload cancel, required digest headers, ?tag= pushes
#   legacy     the same suite driven by the legacy OCI_* variables (all four categories,
#              OCI_AUTOMATIC_CROSSMOUNT=1), as `go test -c` builds run it
# One server serves all three in distinct repositories, so the later runs also meet accumulated state.
# Fails on any Fail, Error or Skip (TETHER_CONFORMANCE_ALLOW_SKIP=1 tolerates skips while debugging),
# and on any 5xx the server logged. Reports go to reports/conformance/ (git-ignored).
# TETHER_CONFORMANCE_TARGET=host:port runs against an already running registry instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
NODE="$ROOT/node_modules/.bin/node"
OUT="$ROOT/reports/conformance"
rm -rf "$OUT"
mkdir -p "$OUT"

bash scripts/ensure-tools.sh conformance
BIN="$ROOT/.tools/bin"

SERVER_PID=""
DATA=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$DATA" ]; then rm -rf "$DATA"; fi
}
trap cleanup EXIT

if [ -n "${TETHER_CONFORMANCE_TARGET:-}" ]; then
  TARGET="$TETHER_CONFORMANCE_TARGET"
else
  DATA="$(mktemp -d -t tether-conformance-XXXXXX)"
  "$NODE" src/cli/main.ts serve --listen 127.0.0.1:0 --data "$DATA" > "$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    TARGET="$(grep -o 'tether listening on http://[^"]*' "$OUT/server.log" 2>/dev/null | head -1 | sed 's#.*http://##' || true)"
    [ -n "$TARGET" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log"; echo "conformance: tether exited" >&2; exit 1; }
    sleep 0.2
  done
  [ -n "$TARGET" ] || { cat "$OUT/server.log"; echo "conformance: tether did not start" >&2; exit 1; }
fi
echo "conformance: registry at $TARGET"

ALLOW_SKIP=()
[ "${TETHER_CONFORMANCE_ALLOW_SKIP:-}" = 1 ] && ALLOW_SKIP=(--allow-skip)
status=0

run_v2() {
  local name="$1" version="$2"
  local dir="$OUT/v2-$name"
  mkdir -p "$dir"
  (cd "$dir" && env OCI_REGISTRY="$TARGET" OCI_TLS=disabled OCI_VERSION="$version" \
      OCI_REPO1="conformance/v2-$name-a" OCI_REPO2="conformance/v2-$name-b" \
      OCI_RESULTS_DIR="$dir" OCI_LOG=warn timeout 900 "$BIN/conformance" > "$dir/suite.log" 2>&1) || true
  summarise "conformance v2 ($version)" "$dir"
}

run_legacy() {
  local dir="$OUT/legacy"
  mkdir -p "$dir"
  (cd "$dir" && env OCI_ROOT_URL="http://$TARGET" OCI_NAMESPACE=conformance/legacy-a \
      OCI_CROSSMOUNT_NAMESPACE=conformance/legacy-b OCI_TEST_PULL=1 OCI_TEST_PUSH=1 \
      OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 OCI_AUTOMATIC_CROSSMOUNT=1 \
      OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_DEBUG=0 OCI_RESULTS_DIR="$dir" \
      timeout 900 "$BIN/conformance-legacy.test" -test.v -test.timeout 0 > "$dir/suite.log" 2>&1) || true
  summarise "conformance legacy-env" "$dir"
}

summarise() {
  local label="$1" dir="$2"
  if [ ! -s "$dir/junit.xml" ]; then
    echo "$label: no junit.xml produced; suite log tail:"
    tail -30 "$dir/suite.log"
    status=1
    return
  fi
  if ! "$NODE" scripts/junit-summary.ts "$label" "$dir/junit.xml" "${ALLOW_SKIP[@]}"; then
    status=1
    echo "  (full log: $dir/suite.log)"
  fi
}

run_v2 1.1 1.1
run_v2 dev dev
run_legacy

if [ -n "$SERVER_PID" ]; then
  # Client mistakes must never be 5xx: any server error during the suites fails the run.
  if grep -E '"status":5[0-9]{2}' "$OUT/server.log" > "$OUT/server-errors.log"; then
    echo "conformance: the server answered 5xx:"
    head -20 "$OUT/server-errors.log"
    status=1
  fi
fi
exit "$status"
