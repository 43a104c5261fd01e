// get/set with the debug checks compiled out (ctxvars_bench_debug_off) and in
// (ctxvars_bench_debug_on, CTXVARS_DEBUG_CHECKS=1): the same code, each binary
// with the raw thread_local baseline in its own run.
#include "baseline.hpp"

#include <ctxvars/debug.hpp>
#include <ctxvars/thread_pool.hpp>

#include <type_traits>

// Off, set() keeps SPEC's signature (taking its address still works).
static_assert(ctxvars::debug::enabled ||
              std::is_same_v<decltype(&ctxvars::context_var<int>::set),
                             ctxvars::token<int> (ctxvars::context_var<int>::*)(int)>);

namespace {

using ctxvars_bench::BM_ThreadLocal_Read;
using ctxvars_bench::vars;
using ctxvars_bench::with_vars;

BENCHMARK(BM_ThreadLocal_Read);

// A hit in a context of 8 variables.
void BM_Debug_Get(benchmark::State& state) {
  with_vars(8, [&] {
    auto& v = *vars()[3];
    for (auto _ : state) benchmark::DoNotOptimize(v.get());
  });
}
BENCHMARK(BM_Debug_Get);

// set+reset in an entered context (a task's, a request's): the usual case.
void BM_Debug_SetReset(benchmark::State& state) {
  with_vars(8, [&] {
    auto& v = *vars()[3];
    for (auto _ : state) {
      auto t = v.set(7);
      v.reset(t);
    }
  });
}
BENCHMARK(BM_Debug_SetReset);

// set+reset in the thread's own base context, outside any job: the check asks
// whether the thread runs a job (and the registered event-loop probes).
void BM_Debug_SetResetBase(benchmark::State& state) {
  auto& v = *vars()[5];
  for (auto _ : state) {
    auto t = v.set(7);
    v.reset(t);
  }
}
BENCHMARK(BM_Debug_SetResetBase);

// The same inside a job of a loop: with the checks on, every set is a leak,
// reported once; the rest skip the report through a per-thread last-site check.
void BM_Debug_SetResetBaseInJob(benchmark::State& state) {
  ctxvars::debug::set_leak_handler([](const ctxvars::debug::leak_report&) {});
  ctxvars::debug::job_scope job("benchmark job");
  auto& v = *vars()[6];
  for (auto _ : state) {
    auto t = v.set(7);
    v.reset(t);
  }
}
BENCHMARK(BM_Debug_SetResetBaseInJob);

}  // namespace

BENCHMARK_MAIN();
