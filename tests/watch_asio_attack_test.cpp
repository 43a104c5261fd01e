// Adversarial review of watchers (watch.hpp) under the Asio adapter: a value
// watcher mirroring a variable into a thread_local (the documented use case)
// must see exactly the value changes each thread's view goes through.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "asio_test_net.hpp"
#include "ctxvars/watch.hpp"

using namespace std::chrono_literals;
using net::awaitable;
using net::use_awaitable;

namespace {

ctxvars::context_var<int> mv("mv");
thread_local std::optional<int> mirror;  // what the watcher keeps in step
std::atomic<int> seq_bad{0}, view_bad{0}, calls{0};

std::optional<int> view() {
  const int* p = mv.peek();
  return p ? std::optional<int>(*p) : std::nullopt;
}
void check() {
  if (mirror != view()) ++view_bad;
}

awaitable<void> child(int id) {
  check();
  (void)mv.set(id * 1000);
  check();
  co_await net::post(co_await net::this_coro::executor, use_awaitable);
  check();
}

awaitable<void> request(int id) {
  check();
  (void)mv.set(id);
  check();
  auto ex = co_await net::this_coro::executor;
  for (int i = 0; i < 4; ++i) {
    net::steady_timer t(ex, std::chrono::microseconds(100 * ((id + i) % 3)));
    co_await t.async_wait(use_awaitable);
    check();
    co_await net::post(ex, use_awaitable);
    check();
    co_await net::dispatch(ex, use_awaitable);
    check();
    co_await net::post(net::make_strand(ex), use_awaitable);
    check();
    auto tok = mv.set(id + 1);
    check();
    co_await cx::co_spawn(ex, child(id), use_awaitable);
    check();
    mv.reset(tok);
    check();
  }
}

TEST(WatchAsioAttack, AMirroringValueWatcherStaysInStepWithEveryThreadsViewUnderStrandsAndTimers) {
  ctxvars::watcher w = ctxvars::watch(mv, [](const ctxvars::value_change<int>& c) {
    ++calls;
    const std::optional<int> before = c.before ? std::optional<int>(*c.before) : std::nullopt;
    if (before != mirror) ++seq_bad;  // a change the watcher was not told of
    mirror = c.after ? std::optional<int>(*c.after) : std::nullopt;
  });
  net::io_context io;
  auto strand = net::make_strand(io);
  for (int i = 1; i <= 60; ++i) {
    if (i % 2)
      cx::co_spawn(strand, request(i), net::detached);
    else
      cx::co_spawn(io, request(i), net::detached);
  }
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i)
    ts.emplace_back([&] {
      check();
      io.run();
      check();
    });
  for (auto& t : ts) t.join();
  EXPECT_GT(calls.load(), 60 * 4 * 8) << calls.load();
  EXPECT_EQ(seq_bad.load(), 0) << "value changes reported out of step with the thread's view";
  EXPECT_EQ(view_bad.load(), 0) << "the mirror differs from the thread's view";
}

}  // namespace
