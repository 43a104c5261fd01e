// ctxvars::generator (issue 20): a lookup inside a generator nested 3 deep,
// beside a plain get() and the raw thread_local baseline, in one run; and the
// cost of a pull through 3 layers, beside the same pull through plain
// coroutine generators (no context switching at all).
#include <ctxvars/async_generator.hpp>
#include <ctxvars/generator.hpp>
#include <ctxvars/task.hpp>

#include <benchmark/benchmark.h>

#include <coroutine>
#include <exception>
#include <utility>

#include "baseline.hpp"

namespace {

ctxvars::context_var<int> consumer_var("consumer_var", -1);  // set by the consumer
ctxvars::context_var<int> own_var("own_var", -1);            // set by the innermost body
ctxvars::context_var<int> level_var("level_var", -1);        // set by each wrapping level

// get() in a context holding a few variables (the plain case).
void BM_Generator_PlainGet(benchmark::State& state) {
  ctxvars::context().run([&] {
    consumer_var.set(1);
    own_var.set(2);
    for (auto _ : state) benchmark::DoNotOptimize(consumer_var.get());
  });
}

// The innermost body runs the timing loop: each iteration is one get() in a
// layer over a layer over a layer over the consumer's context. Arg 0 reads a
// variable the consumer set, 1 one the body set.
ctxvars::generator<int> timed_gets(benchmark::State& state, bool own) {
  own_var.set(2);
  const ctxvars::context_var<int>& v = own ? own_var : consumer_var;
  for (auto _ : state) benchmark::DoNotOptimize(v.get());
  co_yield 0;
}
ctxvars::generator<int> wrap(ctxvars::generator<int> inner, int level) {
  if (level >= 0) level_var.set(level);  // a layer of its own (else it only passes values on)
  for (int x : inner) co_yield x;
}
void BM_Generator_GetNested3(benchmark::State& state) {
  ctxvars::context().run([&] {
    consumer_var.set(1);
    for (int x : wrap(wrap(timed_gets(state, state.range(0) != 0), 1), 2)) benchmark::DoNotOptimize(x);
  });
}

// One pull through 3 nested generators, the innermost reading a variable.
ctxvars::generator<int> reads_forever() {
  for (;;) co_yield consumer_var.get();
}
void BM_Generator_PullNested3(benchmark::State& state) {
  ctxvars::context().run([&] {
    consumer_var.set(1);
    auto g = wrap(wrap(reads_forever(), 1), 2);
    auto it = g.begin();
    for (auto _ : state) {
      ++it;
      benchmark::DoNotOptimize(*it);
    }
  });
}
// The same, the consumer setting a variable before each pull: every level
// rebuilds its layer over the changed context below it. Arg 1: the two outer
// levels set a variable of their own (each rebuild writes it again); 0: none.
void BM_Generator_PullNested3_ConsumerSets(benchmark::State& state) {
  ctxvars::context().run([&] {
    consumer_var.set(1);
    const bool own = state.range(0) != 0;
    auto g = wrap(wrap(reads_forever(), own ? 1 : -1), own ? 2 : -1);
    auto it = g.begin();
    int i = 0;
    for (auto _ : state) {
      consumer_var.set(++i);
      ++it;
      benchmark::DoNotOptimize(*it);
    }
  });
}

// A plain generator: the smallest correct one, with no context layer.
template <class T>
class plain_generator {
 public:
  struct promise_type {
    const T* value = nullptr;
    plain_generator get_return_object() noexcept {
      return plain_generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(const T& v) noexcept {
      value = &v;
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
  explicit plain_generator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  plain_generator(plain_generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  ~plain_generator() {
    if (h_) h_.destroy();
  }
  bool next() {
    h_.resume();
    return !h_.done();
  }
  const T& value() const { return *h_.promise().value; }

 private:
  std::coroutine_handle<promise_type> h_;
};
plain_generator<int> plain_reads_forever() {
  for (;;) co_yield consumer_var.get();
}
plain_generator<int> plain_wrap(plain_generator<int> inner) {
  while (inner.next()) co_yield inner.value();
}
void BM_PlainGenerator_PullNested3(benchmark::State& state) {
  ctxvars::context().run([&] {
    consumer_var.set(1);
    auto g = plain_wrap(plain_wrap(plain_reads_forever()));
    for (auto _ : state) {
      g.next();
      benchmark::DoNotOptimize(g.value());
    }
  });
}

// One pull of an async generator (its body reads a variable), from a task;
// beside one pull of a generator<int> from the same task.
ctxvars::async_generator<int> async_reads_forever() {
  for (;;) co_yield consumer_var.get();
}
ctxvars::task<void> pull_async(benchmark::State& state) {
  consumer_var.set(1);
  auto g = async_reads_forever();
  for (auto _ : state) benchmark::DoNotOptimize(*co_await g.next());
}
void BM_AsyncGenerator_Pull(benchmark::State& state) { ctxvars::sync_wait(pull_async(state)); }
ctxvars::task<void> pull_sync(benchmark::State& state) {
  consumer_var.set(1);
  auto g = reads_forever();
  auto it = g.begin();
  for (auto _ : state) {
    ++it;
    benchmark::DoNotOptimize(*it);
  }
  co_return;
}
void BM_Generator_PullFromTask(benchmark::State& state) { ctxvars::sync_wait(pull_sync(state)); }

}  // namespace

BENCHMARK(ctxvars_bench::BM_ThreadLocal_Read);
BENCHMARK(BM_Generator_PlainGet);
BENCHMARK(BM_Generator_GetNested3)->Arg(0)->Arg(1);
BENCHMARK(BM_PlainGenerator_PullNested3);
BENCHMARK(BM_Generator_PullNested3);
BENCHMARK(BM_Generator_PullNested3_ConsumerSets)->Arg(0)->Arg(1);
BENCHMARK(BM_Generator_PullFromTask);
BENCHMARK(BM_AsyncGenerator_Pull);

BENCHMARK_MAIN();
