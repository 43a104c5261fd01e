#!/usr/bin/env bash
# The test command: installs what is missing, builds with g++ 12 and clang++ 14
# (warnings as errors; the Python module with g++), and runs every test through
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
  # The Python module (built for Debian's python3.11 with g++, as pip builds it) in the
  # g++ build only: the clang build covers the C++ library, tests and examples.
  python=OFF
  [ "$preset" = dev ] && python=ON
  cmake --preset "$preset" -DCTXVARS_WITH_PYTHON=$python >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset"
done
