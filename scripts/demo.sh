#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main demo;
# `scripts/demo.sh services` runs the two-service demo instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset dev >/dev/null
if [[ "${1:-}" == services ]]; then
  # Two services as two processes on 127.0.0.1 (examples/services.cpp):
  #   scripts/demo.sh services [--clients N] [--requests N]
  shift
  cmake --build --preset dev -j "$(nproc 2>/dev/null || echo 2)" --target ctxvars_services
  exec build/dev/examples/ctxvars_services demo "$@"
fi
cmake --build --preset dev -j "$(nproc 2>/dev/null || echo 2)" --target ctxvars_demo
exec build/dev/examples/ctxvars_demo "$@"
