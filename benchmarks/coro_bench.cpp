// Coroutine overheads, each with its baseline in the same run:
//  - Asio ping-pong: N tasks each yielding K times through one io_context
//    (asio::post and zero-length timers), spawned with asio::co_spawn vs
//    ctxvars::asio::co_spawn.
//  - ctxvars::task resumes vs a bare coroutine on the same scheduler.
#include <benchmark/benchmark.h>

#include "baseline.hpp"

#include <ctxvars/asio.hpp>
#include <ctxvars/task.hpp>

#include <asio.hpp>
#include <coroutine>
#include <vector>

namespace {

using ctxvars_bench::BM_ThreadLocal_Read;
BENCHMARK(BM_ThreadLocal_Read);

ctxvars::context_var<int> rid("rid", 0);

template <bool UseTimer>
asio::awaitable<void> pinger(int k, bool read_var) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer t(ex);
  for (int i = 0; i < k; ++i) {
    if constexpr (UseTimer) {
      t.expires_after(std::chrono::nanoseconds(0));
      co_await t.async_wait(asio::use_awaitable);
    } else {
      co_await asio::post(ex, asio::use_awaitable);
    }
    if (read_var) benchmark::DoNotOptimize(rid.get());
  }
}

// range(0): 0 = asio::co_spawn, 1 = ctxvars::asio::co_spawn. Items = resumes.
template <bool UseTimer>
void BM_Asio_PingPong(benchmark::State& state) {
  const bool with_ctx = state.range(0) == 1;
  constexpr int tasks = 100, k = 100;
  for (auto _ : state) {
    asio::io_context io(1);
    for (int i = 0; i < tasks; ++i) {
      if (with_ctx)
        ctxvars::asio::co_spawn(io, pinger<UseTimer>(k, true), asio::detached);
      else
        asio::co_spawn(io, pinger<UseTimer>(k, true), asio::detached);
    }
    io.run();
  }
  state.SetItemsProcessed(state.iterations() * tasks * k);
  state.SetLabel(with_ctx ? "ctxvars::asio::co_spawn" : "asio::co_spawn");
}
BENCHMARK(BM_Asio_PingPong<false>)->Arg(0)->Arg(1)->Name("BM_Asio_PingPongPost")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Asio_PingPong<true>)->Arg(0)->Arg(1)->Name("BM_Asio_PingPongTimer")->Unit(benchmark::kMicrosecond);

// ---- task switching ---------------------------------------------------------------
// A scheduler that resumes queued coroutines on the calling thread.
struct loop {
  std::vector<std::coroutine_handle<>> q;
  std::size_t head = 0;
  auto schedule() {
    struct aw {
      loop* l;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) { l->q.push_back(h); }
      void await_resume() const noexcept {}
    };
    return aw{this};
  }
  void run() {
    while (head < q.size()) q[head++].resume();
    q.clear();
    head = 0;
  }
};

// The baseline: a bare coroutine, no context handling.
struct bare {
  struct promise_type {
    bare get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};
bare bare_yielder(loop& l, int k) {
  for (int i = 0; i < k; ++i) co_await l.schedule();
}
ctxvars::task<void> task_yielder(loop& l, int k) {
  for (int i = 0; i < k; ++i) co_await l.schedule();
}

void BM_Task_Resume(benchmark::State& state) {
  const bool with_ctx = state.range(0) == 1;
  constexpr int k = 1000;
  loop l;
  l.q.reserve(k + 8);
  for (auto _ : state) {
    if (with_ctx) {
      auto s = ctxvars::spawn(l, task_yielder(l, k));
      l.run();
      s.get();
    } else {
      bare_yielder(l, k);
      l.run();
    }
  }
  state.SetItemsProcessed(state.iterations() * k);
  state.SetLabel(with_ctx ? "ctxvars::task" : "bare coroutine");
}
BENCHMARK(BM_Task_Resume)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
