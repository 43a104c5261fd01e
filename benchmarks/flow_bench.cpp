// Flow policies (issue 20 §2): fork_context() beside copy_context(), each next
// to a raw thread_local read measured in the same run.
// Names: BM_<Op>/<plain variables in the context>[/<policy-bearing variables>].
#include <benchmark/benchmark.h>

#include <ctxvars/ctxvars.hpp>

#include <memory>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "baseline.hpp"

namespace {

using ctxvars_bench::BM_ThreadLocal_Read;
BENCHMARK(BM_ThreadLocal_Read);

using ctxvars_bench::with_vars;

void report_allocs(benchmark::State& state, std::size_t before_count) {
  state.counters["allocs/op"] =
      static_cast<double>(ctxvars_bench::allocations() - before_count) / static_cast<double>(state.iterations());
}

// The plain snapshot: what every fork cost before flow policies.
void BM_CopyContext(benchmark::State& state) {
  with_vars(static_cast<int>(state.range(0)), [&] {
    const auto a = ctxvars_bench::allocations();
    for (auto _ : state) benchmark::DoNotOptimize(ctxvars::copy_context());
    report_allocs(state, a);
  });
}
BENCHMARK(BM_CopyContext)->Arg(8)->Arg(1000);

// A fork of a context without policy-bearing entries: must cost a copy.
void BM_ForkContext_NoPolicy(benchmark::State& state) {
  with_vars(static_cast<int>(state.range(0)), [&] {
    const auto a = ctxvars_bench::allocations();
    for (auto _ : state) benchmark::DoNotOptimize(ctxvars::fork_context());
    report_allocs(state, a);
  });
}
BENCHMARK(BM_ForkContext_NoPolicy)->Arg(8)->Arg(1000);

std::vector<std::unique_ptr<ctxvars::context_var<int>>>& isolated() {
  static auto* v = [] {
    auto* p = new std::vector<std::unique_ptr<ctxvars::context_var<int>>>;
    for (int i = 0; i < 16; ++i)
      p->push_back(std::make_unique<ctxvars::context_var<int>>("iso" + std::to_string(i), 0, ctxvars::flow::isolate));
    return p;
  }();
  return *v;
}
std::vector<std::unique_ptr<ctxvars::context_var<int>>>& mapped() {
  static auto* v = [] {
    auto* p = new std::vector<std::unique_ptr<ctxvars::context_var<int>>>;
    for (int i = 0; i < 16; ++i)
      p->push_back(std::make_unique<ctxvars::context_var<int>>(
          "map" + std::to_string(i), 0, ctxvars::on_fork([](const int& x) { return x + 1; })));
    return p;
  }();
  return *v;
}

// n plain variables and k policy-bearing ones: O(k), independent of n.
template <bool Isolate>
void fork_with_policies(benchmark::State& state) {
  const int k = static_cast<int>(state.range(1));
  auto& vs = Isolate ? isolated() : mapped();
  with_vars(static_cast<int>(state.range(0)), [&] {
    for (int i = 0; i < k; ++i) (void)vs[static_cast<std::size_t>(i)]->set(i);
    const auto a = ctxvars_bench::allocations();
    for (auto _ : state) benchmark::DoNotOptimize(ctxvars::fork_context());
    report_allocs(state, a);
  });
}
void BM_ForkContext_Isolate(benchmark::State& state) { fork_with_policies<true>(state); }
void BM_ForkContext_OnFork(benchmark::State& state) { fork_with_policies<false>(state); }
BENCHMARK(BM_ForkContext_Isolate)->Args({8, 1})->Args({1000, 1})->Args({1000, 4})->Args({1000, 8})->Args({8, 16})->Args({1000, 16});
BENCHMARK(BM_ForkContext_OnFork)->Args({8, 1})->Args({1000, 1})->Args({1000, 4})->Args({1000, 8})->Args({8, 16})->Args({1000, 16});

// The set path's extra test (is this box policy-bearing?), and a set of a
// policy-bearing variable (its id is already listed after the first).
void BM_ContextVar_SetReset_Plain(benchmark::State& state) {
  with_vars(8, [&] {
    auto& v = *ctxvars_bench::vars()[7];
    for (auto _ : state) {
      auto t = v.set(7);
      v.reset(t);
    }
  });
}
BENCHMARK(BM_ContextVar_SetReset_Plain);
void BM_ContextVar_SetReset_Isolated(benchmark::State& state) {
  with_vars(8, [&] {
    auto& v = *isolated()[0];
    (void)v.set(1);
    for (auto _ : state) {
      auto t = v.set(7);
      v.reset(t);
    }
  });
}
BENCHMARK(BM_ContextVar_SetReset_Isolated);

}  // namespace

BENCHMARK_MAIN();
