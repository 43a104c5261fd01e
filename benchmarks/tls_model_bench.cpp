// The cost of get() from code in a shared library (global-dynamic TLS: each
// access calls __tls_get_addr) versus from the executable (a %fs-relative load).
#include <benchmark/benchmark.h>

#include "baseline.hpp"

#include <ctxvars/ctxvars.hpp>

extern "C" long get_loop_exe(ctxvars::context_var<int>& v, long n);
extern "C" long get_loop_so(ctxvars::context_var<int>& v, long n);

namespace {
using ctxvars_bench::BM_ThreadLocal_Read;
BENCHMARK(BM_ThreadLocal_Read);

ctxvars::context_var<int> v("v", 0);
void BM_Get_FromExecutable(benchmark::State& state) {
  ctxvars::context().run([&] {
    (void)v.set(1);
    for (auto _ : state) benchmark::DoNotOptimize(get_loop_exe(v, 1000));
  });
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_Get_FromExecutable);
void BM_Get_FromSharedLibrary(benchmark::State& state) {
  ctxvars::context().run([&] {
    (void)v.set(1);
    for (auto _ : state) benchmark::DoNotOptimize(get_loop_so(v, 1000));
  });
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_Get_FromSharedLibrary);
}  // namespace

BENCHMARK_MAIN();
