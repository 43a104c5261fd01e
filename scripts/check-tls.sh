#!/usr/bin/env bash
# Every access to the per-thread state goes through detail::this_thread_state()
# (include/ctxvars/detail/thread_state.hpp explains the g++ -O2 UBSan
# miscompile that naming `tls` directly runs into). Fails, naming the lines,
# if library, Python, example or benchmark code names `tls` itself; only its
# declaration, its definition and this_thread_state() may.
set -euo pipefail
cd "$(dirname "$0")/.."
hits=$(grep -rnE '(^|[^_[:alnum:]])tls([^_[:alnum:]]|$)' include src python examples benchmarks \
         --include='*.hpp' --include='*.cpp' --include='*.h' |
       grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' |
       grep -vE 'thread_state\.hpp:[0-9]+:(extern constinit thread_local thread_state tls;|  thread_state\* p = &tls;|  return tls;)' |
       grep -vE 'src/ctxvars\.cpp:[0-9]+:constinit thread_local thread_state tls\{\};' |
       grep -vE '//.*\btls\b' || true)
if [ -n "$hits" ]; then
  echo "check-tls: name the per-thread state through detail::this_thread_state(), not tls:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "check-tls: ok"
