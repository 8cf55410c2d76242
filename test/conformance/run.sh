#!/usr/bin/env bash
# Runs the official OCI distribution-spec conformance suite against freshly started `tether serve`
# processes (fs + SQLite, fresh data dir, free loopback port each):
#   open registry   v2 runner with OCI_VERSION=1.1 (every API and data switch at its default) and
#                   OCI_VERSION=dev (also upload cancel, required digest headers, ?tag= pushes), and
#                   the legacy-variable mode (all four categories, OCI_AUTOMATIC_CROSSMOUNT=1)
#   auth basic      the same three runs with OCI_USERNAME/OCI_PASSWORD against HTTP Basic
#   auth token      the same three runs against the Docker token protocol (built-in token endpoint)
#   TLS             the two v2 runs over HTTPS (HTTP/2 offered by ALPN), the certificate trusted
#                   through SSL_CERT_FILE
# Fails on any Fail, Error or Skip (TETHER_CONFORMANCE_ALLOW_SKIP=1 tolerates skips while debugging),
# on a suite that exits non-zero (a panic or Go-level failure outside the listing, a timeout), and on
# any 5xx a server logged. Tests the suite's configuration disables are reported, not failed.
# Reports go to reports/conformance/ (git-ignored).
# TETHER_CONFORMANCE_TARGET=host:port runs the open-registry runs against an already running registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
NODE="$ROOT/node_modules/.bin/node"
OUT="$ROOT/reports/conformance"
rm -rf "$OUT"
mkdir -p "$OUT"

bash scripts/ensure-tools.sh conformance openssl
BIN="$ROOT/.tools/bin"

SERVERS=()
TEMP="$(mktemp -d -t tether-conformance-XXXXXX)"
cleanup() {
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$TEMP"
}
trap cleanup EXIT

# start_server NAME [--config FILE]: a fresh `tether serve` with its own data dir; sets TARGET.
start_server() {
  local name="$1"; shift
  local log="$OUT/server-$name.log"
  "$NODE" src/cli/main.ts serve --listen 127.0.0.1:0 --data "$TEMP/$name" "$@" > "$log" 2>&1 &
  local pid=$!
  SERVERS+=("$pid")
  TARGET=""
  for _ in $(seq 1 150); do
    TARGET="$(grep -o 'tether listening on https\?://[^"]*' "$log" 2>/dev/null | head -1 | sed 's#.*://##' || true)"
    [ -n "$TARGET" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "conformance: tether ($name) exited" >&2; exit 1; }
    sleep 0.2
  done
  [ -n "$TARGET" ] || { cat "$log"; echo "conformance: tether ($name) did not start" >&2; exit 1; }
  echo "conformance: $name registry at $TARGET"
}

TLS=disabled
ALLOW_SKIP=()
[ "${TETHER_CONFORMANCE_ALLOW_SKIP:-}" = 1 ] && ALLOW_SKIP=(--allow-skip)
status=0

# run_v2 NAME OCI_VERSION [VAR=value...]: the v2 runner, extra variables (credentials) appended.
run_v2() {
  local name="$1" version="$2" rc=0; shift 2
  local dir="$OUT/v2-$name"
  mkdir -p "$dir"
  (cd "$dir" && env OCI_REGISTRY="$TARGET" OCI_TLS="$TLS" OCI_VERSION="$version" \
      OCI_REPO1="conformance/v2-$name-a" OCI_REPO2="conformance/v2-$name-b" \
      OCI_RESULTS_DIR="$dir" OCI_LOG=warn "$@" timeout 900 "$BIN/conformance" > "$dir/suite.log" 2>&1) || rc=$?
  summarise "conformance v2 $name" "$dir"
  exited "conformance v2 $name" "$dir" "$rc"
}

# run_legacy NAME [VAR=value...]: the suite driven by the legacy variables, all four categories.
run_legacy() {
  local name="$1" rc=0; shift
  local dir="$OUT/legacy-$name"
  mkdir -p "$dir"
  (cd "$dir" && env OCI_ROOT_URL="http://$TARGET" OCI_NAMESPACE="conformance/legacy-$name-a" \
      OCI_CROSSMOUNT_NAMESPACE="conformance/legacy-$name-b" OCI_TEST_PULL=1 OCI_TEST_PUSH=1 \
      OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 OCI_AUTOMATIC_CROSSMOUNT=1 \
      OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_DEBUG=0 OCI_RESULTS_DIR="$dir" "$@" \
      timeout 900 "$BIN/conformance-legacy.test" -test.v -test.timeout 0 > "$dir/suite.log" 2>&1) || rc=$?
  summarise "conformance legacy-env $name" "$dir"
  exited "conformance legacy-env $name" "$dir" "$rc"
}

# exited LABEL DIR STATUS: the suite's own exit status must be 0 too, whatever its listing said.
exited() {
  local label="$1" dir="$2" rc="$3"
  [ "$rc" = 0 ] && return 0
  local why=""
  [ "$rc" = 124 ] && why=" (killed by timeout 900)"
  echo "$label: the suite exited with status $rc$why"
  tail -15 "$dir/suite.log"
  status=1
}

summarise() {
  local label="$1" dir="$2"
  if [ ! -s "$dir/suite.log" ]; then
    echo "$label: the suite produced no output"
    tail -30 "$dir/suite.log"
    status=1
    return
  fi
  if ! "$NODE" scripts/conformance-summary.ts "$label" "$dir/suite.log" "${ALLOW_SKIP[@]}"; then
    status=1
    echo "  (full log: $dir/suite.log)"
  fi
}

if [ -n "${TETHER_CONFORMANCE_TARGET:-}" ]; then
  TARGET="$TETHER_CONFORMANCE_TARGET"
  run_v2 1.1 1.1
  run_v2 dev dev
  run_legacy open
  exit "$status"
fi

# 1. Open registry (the embedded default).
start_server open
run_v2 1.1 1.1
run_v2 dev dev
run_legacy open

# 2. and 3. With authentication: a user made by `tether user`, granted everything by an access rule.
printf 'conformance-password\n' | "$NODE" src/cli/main.ts user add conformer --htpasswd "$TEMP/htpasswd" --password-stdin
for mode in basic token; do
  cat > "$TEMP/$mode.yaml" <<YAML
auth:
  mode: $mode
  htpasswd: $TEMP/htpasswd
  access:
    - repositories: "**"
      users: [conformer]
      actions: ["*"]
YAML
  start_server "$mode" --config "$TEMP/$mode.yaml"
  CREDENTIALS=(OCI_USERNAME=conformer OCI_PASSWORD=conformance-password)
  run_v2 "1.1-$mode" 1.1 "${CREDENTIALS[@]}"
  run_v2 "dev-$mode" dev "${CREDENTIALS[@]}"
  run_legacy "$mode" "${CREDENTIALS[@]}"
done

# 4. Over TLS: Node's HTTP/2 server with HTTP/1.1 by ALPN, a code path of its own (request bodies end
# with a DATA frame's flag, not a Content-Length).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$TEMP/tls.key" -out "$TEMP/tls.crt" 2> /dev/null
printf 'tls:\n  cert: %s\n  key: %s\n' "$TEMP/tls.crt" "$TEMP/tls.key" > "$TEMP/tls.yaml"
start_server tls --config "$TEMP/tls.yaml"
TLS=enabled
run_v2 1.1-tls 1.1 SSL_CERT_FILE="$TEMP/tls.crt"
run_v2 dev-tls dev SSL_CERT_FILE="$TEMP/tls.crt"

# Client mistakes must never be 5xx: any server error during the suites fails the run.
if cat "$OUT"/server-*.log | grep -E '"status":5[0-9]{2}' > "$OUT/server-errors.log"; then
  echo "conformance: the server answered 5xx:"
  head -20 "$OUT/server-errors.log"
  status=1
fi
exit "$status"
