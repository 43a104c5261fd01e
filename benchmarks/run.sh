#!/usr/bin/env bash
# Builds the Release benchmarks and runs them all, each family next to its raw
# thread_local baseline in the same process, then writes docs/benchmarks.md's
# tables and chart:
#   benchmarks/run.sh             full run (repetitions: 5)
#   REPS=3 benchmarks/run.sh      fewer repetitions
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
apt_missing=()
command -v valgrind >/dev/null || apt_missing+=(valgrind)
if ((${#apt_missing[@]})); then apt-get install -y -qq "${apt_missing[@]}"; fi
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc 2>/dev/null || echo 2)"
out=build/release/bench-results
mkdir -p "$out"
reps=${REPS:-5}
common=(--benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true --benchmark_min_time=0.2)
bin=build/release/benchmarks
"$bin/ctxvars_bench_core" "${common[@]}" --benchmark_out="$out/core.json" --benchmark_out_format=json
"$bin/ctxvars_bench_coro" "${common[@]}" --benchmark_out="$out/coro.json" --benchmark_out_format=json
if [ -x "$bin/ctxvars_bench_cpython" ]; then
  "$bin/ctxvars_bench_cpython" "${common[@]}" --benchmark_out="$out/cpython.json" --benchmark_out_format=json
fi
# Instruction counts (callgrind): per-op = (run with N - run with 0) / N.
probe="$bin/ctxvars_callgrind_probe"
: > "$out/callgrind.txt"
for spec in "tl 8" "get 8" "get 100000" "get_default 8" "set_reset 8" "set_reset 1000" "set_reset_base 8" "copy 8" "run 8" "request 8" "request 1000" "request 100000" "set_after_copy 8" "set_after_copy 1000" "set_after_copy 100000" "bare_resume 1" "task_resume 1"; do
  set -- $spec
  ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$probe" "$1" "$2" "$3" 2>&1 |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
  }
  base=$(ir "$1" "$2" 0)
  full=$(ir "$1" "$2" 20000)
  echo "$1 $2 $(( (full - base) / 20000 ))" >> "$out/callgrind.txt"
done

# Shared-library build: get() from the executable vs from another shared library.
cmake -S . -B build/release-shared -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DCTXVARS_BUILD_TESTS=OFF -DCTXVARS_BUILD_EXAMPLES=OFF -DCTXVARS_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/release-shared --target ctxvars_bench_tls -j "$(nproc 2>/dev/null || echo 2)"
build/release-shared/benchmarks/ctxvars_bench_tls "${common[@]}" --benchmark_out="$out/tls.json" --benchmark_out_format=json
/usr/bin/python3 benchmarks/report.py "$out" docs/benchmarks-results.md docs/benchmarks-chart.svg
echo "wrote docs/benchmarks-results.md and docs/benchmarks-chart.svg"
