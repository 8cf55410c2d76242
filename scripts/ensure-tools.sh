#!/usr/bin/env bash
# Installs the external tools the tests drive into the git-ignored .tools/ folder, reusing what is
# already there. Usage: scripts/ensure-tools.sh GROUP...
#   conformance  the official OCI distribution-spec conformance suite (Go module proxy), built twice:
#                .tools/bin/conformance (go build, v2 runner) and .tools/bin/conformance-legacy.test
#                (go test -c: the same suite driven by the legacy OCI_* variables)
#   skopeo       Debian's skopeo (apt-get, when running as root)
# Go builds never touch $HOME: GOPATH, module and build caches live under .tools/go.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOPATH="$TOOLS/go" GOMODCACHE="$TOOLS/go/mod" GOCACHE="$TOOLS/go/cache"

# The module proxy serves only this version of the conformance module (main, 2026-08-31): the v1.1.1
# and other pseudo-versions answer 403 "not available". See docs/conformance.md.
CONFORMANCE_MODULE=github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111

stamp_ok() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$BIN/.$1.version"; }

need_go() {
  command -v go >/dev/null 2>&1 || { echo "ensure-tools: Go (>= 1.24) is required on PATH to build $1" >&2; exit 1; }
}

ensure_conformance() {
  if ! stamp_ok conformance "$CONFORMANCE_VERSION"; then
    need_go conformance
    echo "ensure-tools: building conformance $CONFORMANCE_VERSION" >&2
    GOBIN="$BIN" go install "$CONFORMANCE_MODULE@$CONFORMANCE_VERSION"
    stamp conformance "$CONFORMANCE_VERSION"
  fi
  if ! stamp_ok conformance-legacy.test "$CONFORMANCE_VERSION"; then
    need_go conformance-legacy.test
    echo "ensure-tools: building conformance-legacy.test $CONFORMANCE_VERSION" >&2
    go mod download "$CONFORMANCE_MODULE@$CONFORMANCE_VERSION"
    local work
    work="$(mktemp -d)"
    cp -r "$GOMODCACHE/$CONFORMANCE_MODULE@$CONFORMANCE_VERSION/." "$work/"
    chmod -R u+w "$work"
    (cd "$work" && go test -c -o "$BIN/conformance-legacy.test" .)
    rm -rf "$work"
    stamp conformance-legacy.test "$CONFORMANCE_VERSION"
  fi
}

ensure_apt() {
  local command="$1" package="$2"
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-tools: $command is missing; install the Debian package: sudo apt-get install -y $package" >&2
    exit 1
  fi
  echo "ensure-tools: apt-get install $package" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
}

for group in "$@"; do
  case "$group" in
    conformance) ensure_conformance ;;
    skopeo) ensure_apt skopeo skopeo ;;
    *) echo "ensure-tools: unknown group '$group'" >&2; exit 2 ;;
  esac
done
