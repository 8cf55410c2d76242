#!/usr/bin/env bash
# Interop tests with real clients nobody here wrote. Installs what they drive (scripts/ensure-tools.sh),
# then runs test/interop/*.test.ts with node's test runner.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash scripts/ensure-tools.sh skopeo distribution oras regctl crane notation
export PATH="$ROOT/.tools/bin:$PATH"
exec node_modules/.bin/node --test --test-concurrency=2 test/interop/*.test.ts
