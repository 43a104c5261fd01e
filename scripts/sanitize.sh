#!/usr/bin/env bash
# Runs the whole test suite under AddressSanitizer+UndefinedBehaviorSanitizer
# and under ThreadSanitizer, with clang++ 14 and with g++ 12, warnings as errors.
#   scripts/sanitize.sh          all four: asan tsan asan-gcc tsan-gcc
#   scripts/sanitize.sh asan     one of them
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$(pwd)/tests/tsan.supp}
for preset in ${@:-asan tsan asan-gcc tsan-gcc}; do
  echo "=== ${preset}: configure, build, test ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset"
done
