#!/usr/bin/env bash
# Installs the peer registries (Distribution v3 and zot, from the Go module proxy, into .tools/bin) and
# runs bench/peers.ts. A peer that cannot be installed is reported and left out of the table.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p reports
bash scripts/ensure-tools.sh distribution-v3 || echo "bench: Distribution v3 could not be installed" >&2
bash scripts/ensure-tools.sh zot || echo "bench: zot could not be installed (its error is above)" >&2
node_modules/.bin/tsc -p tsconfig.build.json
exec node_modules/.bin/node bench/peers.ts "$@"
