#include "ctxvars/async_generator.hpp"

#include <gtest/gtest.h>

#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ctxvars/ctxvars.hpp"
#include "ctxvars/task.hpp"

using namespace ctxvars;

namespace {

context_var<int> a("a", -1);
context_var<int> b("b", -1);

// Threads started by hop_to_new_thread, joined after each test.
std::mutex threads_m;
std::vector<std::thread> threads;
// Joins until none is left (a hop thread may start the next hop's thread).
void join_threads() {
  for (;;) {
    std::thread t;
    {
      std::lock_guard lk(threads_m);
      if (threads.empty()) return;
      t = std::move(threads.front());
      threads.erase(threads.begin());
    }
    t.join();
  }
}

// Resumes the awaiting coroutine on a new thread (whose context is empty).
struct hop_to_new_thread {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    std::lock_guard lk(threads_m);
    threads.emplace_back([h] { h.resume(); });
  }
  void await_resume() const noexcept {}
};

struct AsyncGenerator : ::testing::Test {
  void TearDown() override { join_threads(); }
};

async_generator<int> reads_a_sets_b(int hops) {
  b.set(100);
  for (int i = 0;; ++i) {
    co_yield a.get() * 1000 + b.get();
    if (i < hops) {
      co_await hop_to_new_thread{};
      co_yield a.get() * 1000 + b.get() + 1;  // after resuming on another thread
    }
  }
}

task<std::vector<int>> consume(async_generator<int> g, int pulls) {
  std::vector<int> got;
  a.set(1);
  for (int i = 0; i < pulls; ++i) {
    auto v = co_await g.next();
    if (!v) break;
    got.push_back(*v);
    got.push_back(b.get());  // never the body's
    a.set(a.get() + 1);
  }
  co_return got;
}

TEST_F(AsyncGenerator, TheBodySeesTheConsumersValuesAtEachPullAndKeepsItsOwnSetsAcrossThreads) {
  auto got = sync_wait(consume(reads_a_sets_b(2), 5));
  EXPECT_EQ(got, (std::vector<int>{1100, -1, 2101, -1, 3100, -1, 4101, -1, 5100, -1}));
  EXPECT_EQ(b.get(), -1);
  EXPECT_EQ(a.get(), -1);
}

task<int> reads_and_sets_in_a_task() {
  co_await hop_to_new_thread{};
  a.set(a.get() + 5);  // a task awaited directly: the body's layer
  co_return a.get();
}

async_generator<int> awaits_a_task() {
  a.set(10);
  int v = co_await reads_and_sets_in_a_task();
  co_yield v;
  co_yield a.get();
}

task<std::vector<int>> consume_all(async_generator<int> g) {
  std::vector<int> got;
  a.set(1);
  while (auto v = co_await g.next()) {
    got.push_back(*v);
    got.push_back(a.get());
  }
  co_return got;
}

TEST_F(AsyncGenerator, ATaskAwaitedInTheBodyRunsInItsLayer) {
  auto got = sync_wait(consume_all(awaits_a_task()));
  EXPECT_EQ(got, (std::vector<int>{15, 1, 15, 1}));
}

async_generator<int> throws_after(int n) {
  a.set(99);
  for (int i = 0; i < n; ++i) co_yield i;
  co_await hop_to_new_thread{};
  throw std::runtime_error("boom");
}

task<std::string> consume_until_throw() {
  a.set(1);
  auto g = throws_after(1);
  std::string log;
  try {
    while (auto v = co_await g.next()) log += std::to_string(*v) + ",";
  } catch (const std::runtime_error& e) {
    log += e.what();
  }
  log += "," + std::to_string(a.get());
  auto after = co_await g.next();  // finished
  log += after ? ",more" : ",end";
  co_return log;
}

TEST_F(AsyncGenerator, AnExceptionFromTheBodyReachesNextAndLeavesTheConsumersContextAsItWas) {
  EXPECT_EQ(sync_wait(consume_until_throw()), "0,boom,1,end");
}

struct probe {
  std::vector<int>* seen;
  ~probe() { seen->push_back(a.get() * 1000 + b.get()); }
};

async_generator<int> with_cleanup(std::vector<int>& seen) {
  probe p{&seen};
  auto guard = a.scoped_set(7);
  b.set(8);
  for (;;) {
    co_await hop_to_new_thread{};
    co_yield a.get();
  }
}

task<std::vector<int>> stop_early(std::vector<int>& seen) {
  std::vector<int> got;
  a.set(1);
  {
    auto g = with_cleanup(seen);
    got.push_back(*co_await g.next());
    got.push_back(*co_await g.next());
    a.set(3);  // the cleanup's guard undoes into this
  }  // the consumer stops early: the body's cleanup runs here, in its layer
  got.push_back(a.get());
  got.push_back(b.get());
  co_return got;
}

TEST_F(AsyncGenerator, AConsumerThatStopsEarlyRunsTheBodysCleanupInItsLayer) {
  std::vector<int> seen;
  auto got = sync_wait(stop_early(seen));
  EXPECT_EQ(got, (std::vector<int>{7, 7, 3, -1}));
  EXPECT_EQ(seen, (std::vector<int>{3008}));
}

async_generator<int> inner_gen() {
  b.set(2);
  for (int i = 0; i < 2; ++i) {
    co_await hop_to_new_thread{};
    co_yield a.get() * 10 + b.get();
  }
}
async_generator<int> outer_gen() {
  a.set(5);
  auto in = inner_gen();
  while (auto v = co_await in.next()) co_yield *v * 100 + b.get() + 1;
}

TEST_F(AsyncGenerator, AsyncGeneratorsNest) {
  auto got = sync_wait(consume_all(outer_gen()));
  EXPECT_EQ(got, (std::vector<int>{5200, 1, 5200, 1}));
}

struct alignas(64) over_aligned {
  int v;
};

async_generator<over_aligned> over_aligned_values() {
  co_await hop_to_new_thread{};
  co_yield over_aligned{a.get()};
}

// A task<over_aligned>: its frame, holding the optional below, is aligned too.
task<over_aligned> consume_over_aligned() {
  a.set(4);
  auto g = over_aligned_values();
  auto v = co_await g.next();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&*v) % 64, 0u);
  co_return *v;
}

async_generator<std::unique_ptr<int>> move_only_values() {
  co_yield std::make_unique<int>(a.get());
  co_await hop_to_new_thread{};
  auto p = std::make_unique<int>(a.get() + 1);
  co_yield std::move(p);
}

task<int> consume_move_only() {
  a.set(20);
  auto g = move_only_values();
  int sum = 0;
  while (auto v = co_await g.next()) sum += **v;
  co_return sum;
}

TEST_F(AsyncGenerator, MoveOnlyValues) { EXPECT_EQ(sync_wait(consume_move_only()), 41); }

TEST_F(AsyncGenerator, OverAlignedValues) { EXPECT_EQ(sync_wait(consume_over_aligned()).v, 4); }

}  // namespace
