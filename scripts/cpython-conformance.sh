#!/usr/bin/env bash
# Runs CPython's own Lib/test/test_context.py against the ctxvars module, and its
# asyncio tests that involve contextvars (python/run_asyncio_tests.py).
#   scripts/cpython-conformance.sh                        install what is missing, build, run both
#   scripts/cpython-conformance.sh --no-build DIR [WHICH]  run against the module in DIR (ctest);
#                                                          WHICH: context (default), asyncio or all
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3.11
if [ "${1:-}" = "--no-build" ]; then
  moddir=$2
  which=${3:-context}
else
  which=all
  scripts/install-deps.sh
  cmake --preset dev -DCTXVARS_WITH_PYTHON=ON >/dev/null
  cmake --build --preset dev --target ctxvars_python -j "$(nproc 2>/dev/null || echo 2)"
  moddir=build/dev/python
fi
src=/usr/lib/python3.11/test/test_context.py
if [ ! -f "$src" ]; then
  echo "missing $src (Debian package libpython3.11-testsuite)" >&2
  exit 1
fi
status=0
if [ "$which" != asyncio ]; then
  PYTHONPATH="$moddir" "$PY" "$(pwd)/python/run_test_context.py" "$src" || status=1
fi
if [ "$which" != context ]; then
  PYTHONPATH="$moddir" "$PY" "$(pwd)/python/run_asyncio_tests.py" /usr/lib/python3.11/test/test_asyncio || status=1
fi
exit $status
