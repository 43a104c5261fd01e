// Compiled twice: into the benchmark executable and into a shared library
// (-fPIC, so ctxvars' thread_local is reached through __tls_get_addr).
#include <ctxvars/ctxvars.hpp>

#ifndef CTXVARS_BENCH_FN
#define CTXVARS_BENCH_FN get_loop_exe
#endif

extern "C" __attribute__((visibility("default"), noinline)) long CTXVARS_BENCH_FN(ctxvars::context_var<int>& v, long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    sum += v.get();
    asm volatile("" ::: "memory");  // one real get per iteration
  }
  return sum;
}
