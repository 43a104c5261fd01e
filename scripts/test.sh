#!/usr/bin/env bash
# The test command: installs what is missing, builds with g++ 12 (warnings as
# errors, the Python module included) and runs every test through ctest —
# CPython's test_context.py against the module among them. clang++ 14 builds and
# runs the same suite under its sanitizers (scripts/sanitize.sh: ASan+UBSan with
# every integration, TSan), so a plain clang build is not repeated here.
#   scripts/test.sh                                 g++ (what CI runs)
#   CTXVARS_COMPILERS="dev clang" scripts/test.sh   also a plain clang++ 14 build
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/check-tls.sh
jobs=$(nproc 2>/dev/null || echo 2)
for preset in ${CTXVARS_COMPILERS:-dev}; do
  echo "=== ${preset}: configure, build, test ==="
  # The Python module (built for Debian's python3.11 with g++, as pip builds it) in the
  # g++ build only (with CTXVARS_COMPILERS="dev clang", the clang build covers the C++ side).
  python=OFF
  [ "$preset" = dev ] && python=ON
  cmake --preset "$preset" -DCTXVARS_WITH_PYTHON=$python >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset"
done
