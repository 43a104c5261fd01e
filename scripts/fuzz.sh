#!/usr/bin/env bash
# A bounded libFuzzer session on the trie (clang++ 14, ASan+UBSan):
#   scripts/fuzz.sh [seconds]     default 60
# New interesting inputs go to build/fuzz/corpus (copy good ones into
# tests/fuzz/corpus/hamt to keep them); a crash is saved in tests/fuzz/crashes,
# which ctest replays from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
secs=${1:-60}
out=build/fuzz
mkdir -p "$out/corpus"
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Iinclude tests/fuzz/hamt_fuzz.cpp -o "$out/hamt_fuzz"
"$out/hamt_fuzz" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
  -artifact_prefix=tests/fuzz/crashes/ "$out/corpus" tests/fuzz/corpus/hamt 2>&1 | tail -25

# The header and snapshot parsers (propagation.hpp, snapshot.hpp), same budget.
mkdir -p "$out/corpus-propagation"
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Iinclude tests/fuzz/propagation_fuzz.cpp src/ctxvars.cpp src/watch.cpp -o "$out/propagation_fuzz"
"$out/propagation_fuzz" -max_total_time="$secs" -max_len=9000 -print_final_stats=1 \
  -artifact_prefix=tests/fuzz/crashes/propagation/ "$out/corpus-propagation" tests/fuzz/corpus/propagation 2>&1 | tail -25
