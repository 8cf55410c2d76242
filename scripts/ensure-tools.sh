#!/usr/bin/env bash
# Installs the external tools the tests drive into the git-ignored .tools/ folder, reusing what is
# already there. Usage: scripts/ensure-tools.sh GROUP...
#   conformance  the official OCI distribution-spec conformance suite (Go module proxy), built twice:
#                .tools/bin/conformance (go build, v2 runner) and .tools/bin/conformance-legacy.test
#                (go test -c: the same suite driven by the legacy OCI_* variables)
#   oras regctl crane notation   real OCI clients, built from the Go module proxy into .tools/bin
#   distribution-v3 zot          peer registries for bench/peers (zot: the proxy refuses it, 403)
#   distribution Debian's docker-registry 2.8 (a registry without the referrers API)
#   skopeo       Debian's skopeo (apt-get, when running as root)
#   openssl      the openssl CLI (the TLS integration test makes certificates with it)
#   strace       Debian's strace (the blob store durability test reads which syncs ran before an ack)
#   userns       unshare (Debian's util-linux), checked to mount a tmpfs in a new user namespace as the
#                full-disk test does; fails when the kernel or a container's seccomp profile refuses it
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

# go_tool NAME MODULE VERSION PACKAGE: build a Go command into .tools/bin unless that version is there.
# Built from the downloaded module (not `go install mod@version`): the proxy refuses the version lists
# `go install` reads for deprecation notices of some modules (notation).
go_tool() {
  local name="$1" module="$2" version="$3" package="$4"
  stamp_ok "$name" "$module@$version" && return 0
  need_go "$name"
  echo "ensure-tools: building $name ($module@$version)" >&2
  local json dir work
  # On failure `go mod download -json` puts the reason in the JSON's "Error" field, not on stderr.
  json="$(go mod download -json "$module@$version" 2>&1)" || true
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [ -z "$dir" ]; then
    echo "ensure-tools: cannot download $module@$version:" >&2
    printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)"$/  \1/p' >&2
    exit 1
  fi
  work="$(mktemp -d)"
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  (cd "$work" && go build -trimpath -o "$BIN/$name" "./$package")
  rm -rf "$work"
  stamp "$name" "$module@$version"
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

# The full-disk test gives the server a small tmpfs of its own with `unshare -rm`: no root needed, but the
# kernel must allow user namespaces (a container's default seccomp profile refuses them).
ensure_userns() {
  ensure_apt unshare util-linux
  if ! unshare -rm sh -c 'mount -t tmpfs -o size=1m tmpfs /mnt' 2>/dev/null; then
    echo "ensure-tools: 'unshare -rm' cannot mount a tmpfs in a new user namespace here (kernel sysctls" \
      "user.max_user_namespaces / kernel.unprivileged_userns_clone, or the container's seccomp/AppArmor" \
      "profile); test/integration/storage-full.test.ts needs it" >&2
    exit 1
  fi
}

for group in "$@"; do
  case "$group" in
    conformance) ensure_conformance ;;
    skopeo) ensure_apt skopeo skopeo ;;
    openssl) ensure_apt openssl openssl ;;
    strace) ensure_apt strace strace ;;
    userns) ensure_userns ;;
    distribution) ensure_apt docker-registry docker-registry ;;
    oras) go_tool oras oras.land/oras v1.3.3 cmd/oras ;;
    regctl) go_tool regctl github.com/regclient/regclient v0.11.5 cmd/regctl ;;
    crane) go_tool crane github.com/google/go-containerregistry v0.21.9 cmd/crane ;;
    notation) go_tool notation github.com/notaryproject/notation v1.3.2 cmd/notation ;;
    distribution-v3) go_tool registry-v3 github.com/distribution/distribution/v3 v3.1.1 cmd/registry ;;
    zot) go_tool zot zotregistry.dev/zot/v2 v2.1.20 cmd/zot ;;
    *) echo "ensure-tools: unknown group '$group'" >&2; exit 2 ;;
  esac
done
