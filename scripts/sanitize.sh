#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer+UndefinedBehaviorSanitizer
# (clang++ 14 and g++ 12 -O2, where g++'s UBSan miscompile showed) and under
# ThreadSanitizer (clang++ 14), warnings as errors — on what each can catch, to
# keep CI within its time (CMakePresets.json): no examples and no benchmarks under
# sanitizers; the Boost.Asio twins of the Asio tests under clang's ASan only;
# gRPC (whose Debian library is not sanitized; under TSan it was built, never run)
# under clang's ASan only.
#   scripts/sanitize.sh                  the three CI runs: asan tsan asan-gcc
#   scripts/sanitize.sh tsan-gcc         also available: ThreadSanitizer with g++
#   scripts/sanitize.sh asan             one of them
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$(pwd)/tests/tsan.supp}
for preset in ${@:-asan tsan asan-gcc}; do
  echo "=== ${preset}: configure, build, test ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset"
done
