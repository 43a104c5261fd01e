#!/usr/bin/env bash
# Runs the Python module's tests under g++ sanitizers: the module, the example
# extension and libctxvars_shared.so built with -fsanitize=..., the stock python3.11 with
# the runtime preloaded.
#   python/sanitize_module.sh [address,undefined|thread]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3.11
status=0
for san in "${@:-address,undefined thread}"; do
  for s in $san; do
    dir=build/py-${s//,/-}
    cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCTXVARS_WITH_PYTHON=ON -DCTXVARS_SANITIZE="$s" -DCTXVARS_BUILD_TESTS=ON \
      -DCTXVARS_BUILD_EXAMPLES=OFF -DCTXVARS_BUILD_BENCHMARKS=OFF >/dev/null
    cmake --build "$dir" --target ctxvars_python request_log bridge_ext -j "$(nproc 2>/dev/null || echo 2)"
    if [ "$s" = thread ]; then
      preload=$(g++ -print-file-name=libtsan.so)
      export TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0 suppressions=$(pwd)/python/tsan.supp"
    else
      preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
      export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1
    fi
    for t in test_module.py tests/test_bridge.py test_cross_language.py smoke_test.py run_test_context.py run_asyncio_tests.py; do
      echo "== $s: $t"
      LD_PRELOAD="$preload" PYTHONPATH="$dir/python" "$PY" "python/$t" 2>&1 | tail -1 || status=1
    done
  done
done
exit $status
