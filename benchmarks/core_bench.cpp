// Core costs, each next to a raw thread_local read measured in the same run.
// Names: BM_<Type>_<Op>/<variables in the context>.
#include <benchmark/benchmark.h>

#include <ctxvars/ctxvars.hpp>
#include <ctxvars/watch.hpp>

#include <atomic>
#include <memory>
#include <optional>
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

// A bound handler moved twice (and the moved-from objects destroyed) per
// iteration, as Asio, std::function and thread pools move a handler before
// calling it. BM_Bind_MoveHandler: ctxvars::bind's object (a move hands the
// context over); BM_Bind_MoveHandler_CopyingHandle: the same layout holding a
// plain `context` member, whose move is a copy (what bind did before: a locked
// increment and decrement per move); BM_Bind_MoveHandler_Unbound: the bare
// function object.
template <class H>
void move_twice(benchmark::State& state, H h) {
  std::optional<H> a(std::move(h)), b;
  for (auto _ : state) {
    b.emplace(std::move(*a));
    a.reset();
    a.emplace(std::move(*b));
    b.reset();
    benchmark::DoNotOptimize(a);
  }
}
struct handler_fn {
  int n;
  int operator()() const { return n; }
};
struct copying_handle_bound {
  ctxvars::context snap;
  handler_fn f;
};
void BM_Bind_MoveHandler(benchmark::State& state) {
  with_vars(8, [&] { move_twice(state, ctxvars::bind(handler_fn{1})); });
}
void BM_Bind_MoveHandler_CopyingHandle(benchmark::State& state) {
  with_vars(8, [&] { move_twice(state, copying_handle_bound{ctxvars::copy_context(), handler_fn{1}}); });
}
void BM_Bind_MoveHandler_Unbound(benchmark::State& state) { move_twice(state, handler_fn{1}); }
BENCHMARK(BM_Bind_MoveHandler);
BENCHMARK(BM_Bind_MoveHandler_CopyingHandle);
BENCHMARK(BM_Bind_MoveHandler_Unbound);

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
    auto& st = ctxvars::detail::this_thread_state();
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


// ---- watchers (watch.hpp) --------------------------------------------------------
// The cost of the watcher hook when no watcher exists: the core's switch (as a
// task step or run makes it) against a copy of the same switch without the
// hook's test, in the same run. And what watchers cost once registered.
namespace cd = ctxvars::detail;
CTXVARS_ALWAYS_INLINE cd::switch_record switch_to_unhooked(cd::thread_state& st, cd::context_impl* c) noexcept {
  cd::switch_record r{st.current, st.version};
  st.current = c;
  const std::uint64_t v = c->version_for(st);
  st.version = v ? v : cd::fresh_version(st);
  return r;
}
CTXVARS_ALWAYS_INLINE void switch_back_unhooked(cd::thread_state& st, cd::context_impl* c,
                                                const cd::switch_record& r) noexcept {
  c->note_leaving(st);
  st.current = r.prev;
  st.version = r.prev_version;
}

template <bool Hooked>
void switch_and_get(benchmark::State& state) {
  ctxvars::context c;
  c.run([&] {
    for (int i = 0; i < 8; ++i) (void)vars()[static_cast<std::size_t>(i)]->set(i);
  });
  cd::context_impl* impl = cd::context_access::impl(c);
  auto& v = target(8);
  for (auto _ : state) {
    cd::thread_state& st = cd::this_thread_state();
    if constexpr (Hooked) {
      const cd::switch_record r = cd::switch_to(st, impl);
      benchmark::DoNotOptimize(v.peek());
      cd::switch_back(st, impl, r);
    } else {
      const cd::switch_record r = switch_to_unhooked(st, impl);
      benchmark::DoNotOptimize(v.peek());
      switch_back_unhooked(st, impl, r);
    }
  }
}
void BM_Switch_WithHook_NoWatcher(benchmark::State& state) { switch_and_get<true>(state); }
void BM_Switch_WithoutHook(benchmark::State& state) { switch_and_get<false>(state); }
BENCHMARK(BM_Switch_WithHook_NoWatcher);
BENCHMARK(BM_Switch_WithoutHook);

// set+reset of a variable while watchers exist: 0 = a watcher of another
// variable only; 1 = a watcher of this variable (a counting callback).
void BM_ContextVar_SetReset_Watched(benchmark::State& state) {
  static ctxvars::context_var<int> other("other");
  long calls = 0;
  with_vars(8, [&] {
    auto& v = target(8);
    ctxvars::watcher w = state.range(0) ? ctxvars::watch(v, [&](const ctxvars::value_change<int>&) { ++calls; })
                                        : ctxvars::watch(other, [&](const ctxvars::value_change<int>&) { ++calls; });
    for (auto _ : state) {
      auto t = v.set(7);
      v.reset(t);
    }
  });
  benchmark::DoNotOptimize(calls);
}
BENCHMARK(BM_ContextVar_SetReset_Watched)->Arg(0)->Arg(1);

// run() of an empty lambda in a context of 8 variables (the thread's own has
// none) while watchers exist: 0 = a no-op context-switch watcher; 1 = a
// watcher of one of the 8 variables (each switch diffs the two contexts).
void BM_Context_Run_Watched(benchmark::State& state) {
  ctxvars::context c;
  c.run([&] {
    for (int i = 0; i < 8; ++i) (void)vars()[static_cast<std::size_t>(i)]->set(i);
  });
  long calls = 0;
  ctxvars::watcher w = state.range(0)
                           ? ctxvars::watch(target(8), [&](const ctxvars::value_change<int>&) { ++calls; })
                           : ctxvars::on_context_switch([&](const ctxvars::context_switch&) { ++calls; });
  for (auto _ : state) c.run([] { benchmark::ClobberMemory(); });
  benchmark::DoNotOptimize(calls);
}
BENCHMARK(BM_Context_Run_Watched)->Arg(0)->Arg(1);

BENCHMARK_MAIN();
