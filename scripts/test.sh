#!/usr/bin/env bash
# The test command: installs what is missing, builds with g++ 12 and clang++ 14
# (warnings as errors, the Python module included), and runs every test through
# ctest — CPython's test_context.py against the module among them.
#   scripts/test.sh            both compilers
#   CTXVARS_COMPILERS=dev scripts/test.sh   g++ only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/check-tls.sh
jobs=$(nproc 2>/dev/null || echo 2)
for preset in ${CTXVARS_COMPILERS:-dev clang}; do
  echo "=== ${preset}: configure, build, test ==="
  cmake --preset "$preset" -DCTXVARS_WITH_PYTHON=ON >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset"
done
