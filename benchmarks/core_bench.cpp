// Core costs, each next to a raw thread_local read measured in the same run.
// Names: BM_<Type>_<Op>/<variables in the context>.
#include <benchmark/benchmark.h>

#include <ctxvars/ctxvars.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "baseline.hpp"

namespace {

using ctxvars_bench::BM_ThreadLocal_Read;
BENCHMARK(BM_ThreadLocal_Read)->ThreadRange(1, 2);

// What one uncontended locked instruction costs on this machine (context for
// the operations that need one or two: run, copy_context, set in a shared context).
void BM_LockedIncrement(benchmark::State& state) {
  std::atomic<long> a{0};
  for (auto _ : state) a.fetch_add(1, std::memory_order_relaxed);
  benchmark::DoNotOptimize(a.load());
}
BENCHMARK(BM_LockedIncrement);

// ---- variables ---------------------------------------------------------------
using ctxvars_bench::max_vars;
using ctxvars_bench::vars;
using ctxvars_bench::with_vars;
// The measured variable is set like the others; it is the last one set.
ctxvars::context_var<int>& target(int n) { return *vars()[static_cast<std::size_t>(n - 1)]; }

void report_allocs(benchmark::State& state, std::size_t before_count, std::size_t before_bytes) {
  const double n = static_cast<double>(state.iterations());
  state.counters["allocs/op"] = static_cast<double>(ctxvars_bench::allocations() - before_count) / n;
  state.counters["bytes/op"] = static_cast<double>(ctxvars_bench::allocated_bytes() - before_bytes) / n;
}

void BM_ContextVar_GetHit(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = target(n);
    const auto a = ctxvars_bench::allocations(), b = ctxvars_bench::allocated_bytes();
    for (auto _ : state) benchmark::DoNotOptimize(v.get());
    report_allocs(state, a, b);
  });
}
BENCHMARK(BM_ContextVar_GetHit)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);
BENCHMARK(BM_ContextVar_GetHit)->Arg(8)->ThreadRange(1, 2)->Name("BM_ContextVar_GetHit_Threads");

void BM_ContextVar_GetDefault(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = *vars()[static_cast<std::size_t>(max_vars - 1)];  // never set here
    for (auto _ : state) benchmark::DoNotOptimize(v.get());
  });
}
BENCHMARK(BM_ContextVar_GetDefault)->Arg(8)->Arg(1000);

void BM_ContextVar_SetReset(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = target(n);
    const auto a = ctxvars_bench::allocations(), b = ctxvars_bench::allocated_bytes();
    for (auto _ : state) {
      auto t = v.set(7);
      v.reset(t);
    }
    report_allocs(state, a, b);
  });
}
BENCHMARK(BM_ContextVar_SetReset)->Arg(1)->Arg(8)->Arg(64)->Arg(1000)->Arg(100000);
// One shared variable, each thread in its own context.
BENCHMARK(BM_ContextVar_SetReset)->Arg(8)->ThreadRange(1, 2)->Name("BM_ContextVar_SetReset_Threads");

// A set that must path-copy because a snapshot shares the context's trie.
void BM_ContextVar_SetResetShared(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    auto& v = target(n);
    const auto a = ctxvars_bench::allocations(), b = ctxvars_bench::allocated_bytes();
    for (auto _ : state) {
      auto snap = ctxvars::copy_context();
      auto t = v.set(7);
      v.reset(t);
    }
    report_allocs(state, a, b);
  });
}
BENCHMARK(BM_ContextVar_SetResetShared)->Arg(8)->Arg(1000)->Arg(100000);

void BM_CopyContext(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  with_vars(n, [&] {
    const auto a = ctxvars_bench::allocations(), b = ctxvars_bench::allocated_bytes();
    for (auto _ : state) benchmark::DoNotOptimize(ctxvars::copy_context());
    report_allocs(state, a, b);
  });
}
BENCHMARK(BM_CopyContext)->Arg(1)->Arg(8)->Arg(1000)->Arg(100000);

void BM_Context_Run(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  ctxvars::context c;
  c.run([&] {
    for (int i = 0; i < n; ++i) (void)vars()[static_cast<std::size_t>(i)]->set(i);
  });
  const auto a = ctxvars_bench::allocations(), b = ctxvars_bench::allocated_bytes();
  for (auto _ : state) c.run([] { benchmark::ClobberMemory(); });
  report_allocs(state, a, b);
}
BENCHMARK(BM_Context_Run)->Arg(8)->Arg(100000);

// A get after the cache was invalidated by entering another context.
void BM_ContextVar_GetAfterRun(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  ctxvars::context c;
  c.run([&] {
    for (int i = 0; i < n; ++i) (void)vars()[static_cast<std::size_t>(i)]->set(i);
  });
  auto& v = target(n);
  for (auto _ : state) c.run([&] { benchmark::DoNotOptimize(v.get()); });
}
BENCHMARK(BM_ContextVar_GetAfterRun)->Arg(8)->Arg(1000)->Arg(100000);

// Large values: get() copies, peek() does not.
ctxvars::context_var<std::string> str_var("str");
ctxvars::context_var<std::shared_ptr<int>> sp_var("sp");
void BM_ContextVar_GetString(benchmark::State& state) {
  ctxvars::context().run([&] {
    (void)str_var.set(std::string(static_cast<std::size_t>(state.range(0)), 'x'));
    for (auto _ : state) benchmark::DoNotOptimize(str_var.get());
  });
}
BENCHMARK(BM_ContextVar_GetString)->Arg(8)->Arg(64)->Arg(1024);
void BM_ContextVar_PeekString(benchmark::State& state) {
  ctxvars::context().run([&] {
    (void)str_var.set(std::string(static_cast<std::size_t>(state.range(0)), 'x'));
    for (auto _ : state) benchmark::DoNotOptimize(str_var.peek()->size());
  });
}
BENCHMARK(BM_ContextVar_PeekString)->Arg(1024);
void BM_ContextVar_GetSharedPtr(benchmark::State& state) {
  ctxvars::context().run([&] {
    (void)sp_var.set(std::make_shared<int>(1));
    for (auto _ : state) benchmark::DoNotOptimize(sp_var.get());
  });
}
BENCHMARK(BM_ContextVar_GetSharedPtr);

// Memory: bytes a context holds per variable (live heap, malloc's usable
// sizes: trie nodes and value boxes).
void BM_Context_BytesPerEntry(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  double per_entry = 0;
  for (auto _ : state) {
    // Fresh variables: no recycled box shell of theirs exists yet.
    std::vector<std::unique_ptr<ctxvars::context_var<int>>> fresh;
    for (int i = 0; i < n; ++i) fresh.push_back(std::make_unique<ctxvars::context_var<int>>("f"));
    ctxvars::context c;
    // Write-log layers come from a per-thread free list: empty it so that
    // the context's layer is counted like its trie nodes.
    auto& st = ctxvars::detail::tls;
    while (void* p = st.free_layers) {
      st.free_layers = *static_cast<void**>(p);
      ::operator delete(p);
    }
    st.n_free_layers = 0;
    const long b = ctxvars_bench::live_bytes();
    c.run([&] {
      for (auto& v : fresh) (void)v->set(1);
    });
    per_entry = static_cast<double>(ctxvars_bench::live_bytes() - b) / n;
  }
  state.counters["bytes/entry"] = per_entry;
}
BENCHMARK(BM_Context_BytesPerEntry)->Arg(8)->Arg(1000)->Arg(100000)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
