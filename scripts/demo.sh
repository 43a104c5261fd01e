#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset dev >/dev/null
cmake --build --preset dev -j "$(nproc 2>/dev/null || echo 2)" --target ctxvars_demo
exec build/dev/examples/ctxvars_demo "$@"
