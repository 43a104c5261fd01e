// Issue 17 §3, bugs 2 and 4 of the Asio adapter: a finished task's context is
// never entered again, and functions posted in order to a task's strand run in
// that order however busy the task's context is. Compiled for both Asios.
#include "asio_test_net.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using net::awaitable;
using net::use_awaitable;

namespace {

ctxvars::context_var<int> rid("order_rid", -1);
thread_local int thread_index = -1;

// Busy for d, holding whatever context is current.
void spin_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

// Spins until `flag` is true (bounded by the test's timeout).
void await_flag(const std::atomic<bool>& flag) {
  while (!flag.load()) std::this_thread::yield();
}

// ---- bug 2: nothing enters a finished task's context ----------------------------

// The task's last step posts functions to its own executor just before it
// returns: the io_context's other thread picks them up while the last step
// still holds the context, and (before the fix) entered it as soon as the task
// left it — after the task had finished, so the completion handler's c.run()
// threw context_in_use_error. Now such a function runs in the task's context
// only while the task runs, and in its own thread's context afterwards.
TEST(AsioOrder, WorkPostedToAFinishedTasksExecutorNeverEntersItsContext) {
  constexpr int rounds = 400, posts = 4;
  std::atomic<int> threw{0}, late{0}, wrong{0}, outside{0};
  for (int round = 0; round < rounds; ++round) {
    net::io_context io;
    auto guard = net::make_work_guard(io);
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t)
      ts.emplace_back([&io, t] {
        thread_index = t;
        (void)rid.set(1000 + t);  // the thread's own context
        io.run();
      });
    ctxvars::context c;
    std::atomic<bool> handled{false};
    std::atomic<int> ran{0};
    auto body = [&]() -> awaitable<void> {
      (void)rid.set(7);
      auto ex = co_await net::this_coro::executor;
      co_await net::post(ex, use_awaitable);  // the last step: on either thread
      for (int k = 0; k < posts; ++k)
        net::post(ex, [&] {
          const bool after = handled.load();
          const int v = rid.get();
          if (v != 7 && v != 1000 + thread_index) ++wrong;
          if (v != 7) ++outside;
          if (after && v == 7) ++late;  // in c although the task had finished
          spin_for(std::chrono::microseconds(10));  // long enough for the handler's c.run() to meet it
          ++ran;
        });
      // Linger so that the other thread is surely waiting for c when the task finishes.
      spin_for(std::chrono::microseconds(20 + round % 50));
    };
    cx::co_spawn(io, c, body, [&](std::exception_ptr e) {
      if (e) ++wrong;
      handled = true;
      // Right after the handler began, and for a while (a function that gave way comes back later).
      const auto until = std::chrono::steady_clock::now() + 300us;
      do {
        try {
          c.run([] {});
        } catch (const ctxvars::context_in_use_error&) {
          ++threw;
        }
      } while (std::chrono::steady_clock::now() < until);
    });
    while (ran.load() < posts || !handled.load()) std::this_thread::yield();
    guard.reset();
    for (auto& t : ts) t.join();
    EXPECT_EQ(c.get(rid), 7);
    EXPECT_FALSE(c.entered());
  }
  EXPECT_EQ(threw.load(), 0) << "c.run() right after the completion handler found c held";
  EXPECT_EQ(late.load(), 0) << "functions entered the context after the task had finished";
  EXPECT_EQ(wrong.load(), 0);
  std::printf("functions run outside the finished task's context: %d of %d\n", outside.load(), rounds * posts);
}

// The same with the task on a strand of a thread_pool and functions posted to
// it from another thread while it finishes: after the completion handler began,
// none of them is inside the task's context.
TEST(AsioOrder, WorkPostedFromAnotherThreadToAFinishingTaskOnAStrandStaysOutOfItsContext) {
  constexpr int rounds = 300;
  std::atomic<int> threw{0}, late{0}, wrong{0};
  for (int round = 0; round < rounds; ++round) {
    net::thread_pool pool(2);
    ctxvars::context c;
    std::atomic<bool> handled{false}, have_ex{false}, stop{false};
    std::atomic<int> ran{0}, posted{0};
    net::any_io_executor ex;
    auto body = [&]() -> awaitable<void> {
      (void)rid.set(9);
      ex = co_await net::this_coro::executor;
      have_ex = true;
      for (int k = 0; k < 3; ++k) co_await net::post(ex, use_awaitable);
    };
    cx::co_spawn(net::make_strand(pool), c, body, [&](std::exception_ptr e) {
      if (e) ++wrong;
      handled = true;
      try {
        c.run([] {});
      } catch (const ctxvars::context_in_use_error&) {
        ++threw;
      }
    });
    std::thread poster([&] {
      await_flag(have_ex);
      for (int k = 0; k < 50 && !stop.load(); ++k) {
        ++posted;
        net::post(ex, [&] {
          const bool after = handled.load();
          const int v = rid.get();
          if (v != 9 && v != -1) ++wrong;
          if (after && v == 9) ++late;
          ++ran;
        });
        if (handled.load()) stop = true;  // a few posted after the finish, then stop
      }
    });
    poster.join();
    pool.join();
    EXPECT_EQ(ran.load(), posted.load());
    EXPECT_FALSE(c.entered());
  }
  EXPECT_EQ(threw.load(), 0);
  EXPECT_EQ(late.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

// ---- bug 4: a strand's order survives a busy context -------------------------------

// Posts `n` functions in order to a context_executor over `strand` (context c)
// while another thread holds c for `hold`; returns the order they ran in, and
// counts those that did not run in c.
template <class Strand>
std::vector<int> post_in_order_while_busy(const Strand& strand, int n, std::chrono::microseconds hold,
                                          std::atomic<int>& not_in_c, const std::function<void()>& wait_all) {
  ctxvars::context c;
  c.run([] { (void)rid.set(5); });
  std::mutex m;
  std::vector<int> order;
  std::atomic<bool> inside{false};
  std::thread holder([&] {
    c.run([&] {
      inside = true;
      const auto until = std::chrono::steady_clock::now() + hold;
      while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
    });
  });
  await_flag(inside);
  cx::context_executor<Strand> ex(strand, c);
  for (int i = 0; i < n; ++i) {
    net::post(ex, [&, i] {
      if (rid.get() != 5) ++not_in_c;
      std::lock_guard<std::mutex> g(m);
      order.push_back(i);
    });
    if (i == n / 2) std::this_thread::sleep_for(hold / 4);  // some posted while the queue drains
  }
  wait_all();
  holder.join();
  std::lock_guard<std::mutex> g(m);
  return order;
}

std::vector<int> iota_vector(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(i);
  return v;
}

TEST(AsioOrder, FunctionsPostedToAStrandOfAnIoContextWhileItsContextIsBusyRunInOrder) {
  constexpr int rounds = 60, n = 8;
  std::atomic<int> not_in_c{0};
  int out_of_order = 0;
  for (int round = 0; round < rounds; ++round) {
    net::io_context io;
    auto guard = net::make_work_guard(io);
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t) ts.emplace_back([&io] { io.run(); });
    auto strand = net::make_strand(io);
    const auto got = post_in_order_while_busy(strand, n, std::chrono::microseconds(200 + 100 * (round % 20)),
                                              not_in_c, [&] {
                                                guard.reset();
                                                for (auto& t : ts) t.join();
                                              });
    if (got != iota_vector(n)) ++out_of_order;
    EXPECT_EQ(got.size(), std::size_t(n));
  }
  EXPECT_EQ(out_of_order, 0) << "rounds whose functions ran in another order than posted";
  EXPECT_EQ(not_in_c.load(), 0);
}

TEST(AsioOrder, FunctionsPostedToAStrandOfAThreadPoolWhileItsContextIsBusyRunInOrder) {
  constexpr int rounds = 60, n = 8;
  std::atomic<int> not_in_c{0};
  int out_of_order = 0;
  for (int round = 0; round < rounds; ++round) {
    net::thread_pool pool(2);
    auto strand = net::make_strand(pool.get_executor());
    const auto got = post_in_order_while_busy(strand, n, std::chrono::microseconds(200 + 100 * (round % 20)),
                                              not_in_c, [&] { pool.join(); });
    if (got != iota_vector(n)) ++out_of_order;
    EXPECT_EQ(got.size(), std::size_t(n));
  }
  EXPECT_EQ(out_of_order, 0) << "rounds whose functions ran in another order than posted";
  EXPECT_EQ(not_in_c.load(), 0);
}

// "Is the holder me?": one of the loop's two threads runs it inside c.run(...),
// so a function may find c busy on one thread and current on the other. A
// function that finds the context current must still not overtake one that
// is waiting for it.
TEST(AsioOrder, AStrandKeepsItsOrderWhenOneThreadRunsTheLoopInsideTheContext) {
  constexpr int rounds = 40, n = 16;
  int out_of_order = 0, not_in_c = 0;
  for (int round = 0; round < rounds; ++round) {
    net::io_context io;
    auto guard = net::make_work_guard(io);
    ctxvars::context c;
    c.run([] { (void)rid.set(3); });
    std::atomic<bool> inside{false};
    std::thread in_c([&] {
      c.run([&] {
        inside = true;
        io.run();
      });
    });
    await_flag(inside);  // c.run(...) must enter before any function can
    std::thread plain([&] { io.run(); });
    auto strand = net::make_strand(io);
    cx::context_executor<decltype(strand)> ex(strand, c);
    std::vector<int> order;  // the strand serialises the functions
    int bad = 0;
    std::atomic<int> ran{0};
    for (int i = 0; i < n; ++i) {
      net::post(ex, [&, i] {
        if (rid.get() != 3) ++bad;
        order.push_back(i);
        ++ran;
      });
      if (i % 4 == 3) std::this_thread::sleep_for(50us);
    }
    while (ran.load() < n) std::this_thread::yield();
    guard.reset();
    plain.join();
    in_c.join();
    if (order != iota_vector(n)) ++out_of_order;
    not_in_c += bad;
  }
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(not_in_c, 0);
}

// A task on a strand whose context another task (on another strand) keeps busy
// for a millisecond per step: the functions the task posts to its own executor,
// and its resumption posted after them, keep the strand's order.
TEST(AsioOrder, ATasksStrandKeepsOrderWhileAnotherTaskHoldsTheSharedContext) {
  constexpr int rounds = 40, n = 10;
  int out_of_order = 0;
  for (int round = 0; round < rounds; ++round) {
    net::io_context io;
    ctxvars::context c;
    std::vector<int> order;  // on the strand
    auto hog = [](int spins) -> awaitable<void> {
      for (int k = 0; k < spins; ++k) {
        spin_for(1ms);  // holding c
        co_await net::post(co_await net::this_coro::executor, use_awaitable);
      }
    };
    auto poster = [&]() -> awaitable<void> {
      auto ex = co_await net::this_coro::executor;
      for (int i = 0; i < n; ++i) net::post(ex, [&order, i] { order.push_back(i); });
      co_await net::post(ex, use_awaitable);  // behind every one of them
      order.push_back(n);
    };
    cx::co_spawn(net::make_strand(io), c, hog(4), net::detached);
    cx::co_spawn(net::make_strand(io), c, poster, net::detached);
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t) ts.emplace_back([&io] { io.run(); });
    for (auto& t : ts) t.join();
    if (order != iota_vector(n + 1)) ++out_of_order;
  }
  EXPECT_EQ(out_of_order, 0);
}

// A queued function that throws: the exception leaves io.run() as any
// handler's does, and the functions queued behind it still run, in order, in
// the context, when the loop is run again.
TEST(AsioOrder, AQueuedFunctionThatThrowsDoesNotStopTheOnesBehindIt) {
  net::io_context io;
  ctxvars::context c;
  c.run([] { (void)rid.set(4); });
  std::atomic<bool> inside{false}, release{false};
  std::thread holder([&] {
    c.run([&] {
      inside = true;
      await_flag(release);
    });
  });
  await_flag(inside);
  cx::context_executor<net::io_context::executor_type> ex(io.get_executor(), c);
  std::vector<int> order;
  int not_in_c = 0;
  net::post(ex, [] { throw std::runtime_error("first"); });
  for (int i = 1; i <= 3; ++i)
    net::post(ex, [&, i] {
      if (rid.get() != 4) ++not_in_c;
      order.push_back(i);
    });
  EXPECT_EQ(io.run_one(), 1u);  // the first finds c busy (held until now): it is queued
  release = true;
  holder.join();
  int thrown = 0;
  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::runtime_error&) {
      ++thrown;
      io.restart();
    }
  }
  EXPECT_EQ(thrown, 1);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(not_in_c, 0);
  EXPECT_FALSE(c.entered());
}

// A task whose last step waits in the queue (another task holds the shared
// context, and the loop's threads, each inside a context of its own, may not
// wait for it): functions posted to its executor behind that step run after it,
// in order, and — the task having finished in between — outside its context.
TEST(AsioOrder, FunctionsQueuedBehindATasksLastStepRunOutsideItsContextAfterIt) {
  constexpr int rounds = 40, n = 6;
  int out_of_order = 0, late = 0, wrong = 0;
  for (int round = 0; round < rounds; ++round) {
    net::io_context io;
    ctxvars::context c;
    auto strand = net::make_strand(io);
    std::vector<int> order;  // on the strand
    std::atomic<bool> handled{false}, hogging{false}, have_ex{false};
    std::optional<net::any_io_executor> task_ex;
    auto hog = [&]() -> awaitable<void> {
      hogging = true;
      spin_for(4ms);  // holding c while the other task's last step arrives
      co_return;
    };
    auto body = [&]() -> awaitable<void> {
      (void)rid.set(7);
      task_ex.emplace(co_await net::this_coro::executor);
      have_ex = true;
      net::steady_timer t(*task_ex, 1ms);
      co_await t.async_wait(use_awaitable);  // the last step: c is busy by then, it waits in the queue
    };
    cx::co_spawn(strand, c, body, [&](std::exception_ptr) { handled = true; });
    std::thread poster([&] {
      await_flag(have_ex);
      cx::co_spawn(net::make_strand(io), c, hog, net::detached);
      await_flag(hogging);
      std::this_thread::sleep_for(2ms);  // the last step is queued by now
      for (int i = 0; i < n; ++i)
        net::post(*task_ex, [&, i] {
          const int v = rid.get();
          if (v != 7 && v != -1) ++wrong;
          if (handled.load() && v == 7) ++late;
          order.push_back(i);
        });
    });
    auto guard = net::make_work_guard(io);  // until every function is posted
    std::vector<std::thread> ts;
    // Each loop thread runs inside a context of its own (rid unset there): a step that finds c
    // busy then never waits (the waiting rule), so the last step is surely queued.
    for (int t = 0; t < 2; ++t) ts.emplace_back([&io] { ctxvars::context().run([&io] { io.run(); }); });
    poster.join();
    guard.reset();
    for (auto& t : ts) t.join();
    if (order != iota_vector(n)) ++out_of_order;
    EXPECT_TRUE(handled.load());
    EXPECT_FALSE(c.entered());
  }
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(late, 0);
  EXPECT_EQ(wrong, 0);
}

// The queue of functions waiting for a busy context dies with its io_context
// (destroyed without running): nothing leaks, nothing runs.
TEST(AsioOrder, FunctionsWaitingForABusyContextAreDestroyedWithTheirIoContext) {
  ctxvars::context c;
  auto alive = std::make_shared<int>(0);
  std::atomic<int> ran{0};
  {
    net::io_context io;
    std::atomic<bool> inside{false}, release{false};
    std::thread holder([&] {
      c.run([&] {
        inside = true;
        await_flag(release);
      });
    });
    await_flag(inside);
    cx::context_executor<net::io_context::executor_type> ex(io.get_executor(), c);
    for (int i = 0; i < 5; ++i) net::post(ex, [alive, &ran] { ++ran; });
    io.run_one();  // the first finds c busy, queues itself and posts the queue's runner
    release = true;
    holder.join();
  }
  EXPECT_EQ(alive.use_count(), 1) << "every queued function destroyed";
  EXPECT_LE(ran.load(), 5);
  EXPECT_FALSE(c.entered());
}

}  // namespace
