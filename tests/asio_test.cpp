#include "asio_test_net.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using net::awaitable;
using net::use_awaitable;

namespace {

ctxvars::context_var<int> rid("rid", -1);
thread_local int tl_rid = -1;  // the thing ctxvars replaces
int global_rid = -1;

awaitable<void> sleep_for(std::chrono::milliseconds d) {
  net::steady_timer t(co_await net::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

// Sets the three "current request" holders, then checks them after each wait.
awaitable<void> request(int id, std::atomic<int>& ctx_bad, std::atomic<int>& tl_bad, int waits) {
  (void)rid.set(id);
  tl_rid = id;
  global_rid = id;
  for (int i = 0; i < waits; ++i) {
    co_await sleep_for(std::chrono::milliseconds(1 + (id + i) % 3));
    if (rid.get() != id) ++ctx_bad;
    if (tl_rid != id) ++tl_bad;
  }
}

void run_threads(net::io_context& io, int n) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back([&] { io.run(); });
  for (auto& t : ts) t.join();
}

TEST(Asio, InterleavedTasksOnOneThreadEachKeepTheirOwnValue) {
  net::io_context io;
  std::atomic<int> ctx_bad{0}, tl_bad{0};
  for (int i = 0; i < 50; ++i) cx::co_spawn(io, request(i, ctx_bad, tl_bad, 5), net::detached);
  io.run();
  EXPECT_EQ(ctx_bad.load(), 0);
  EXPECT_GT(tl_bad.load(), 0) << "thread_local should bleed between interleaved tasks";
  EXPECT_EQ(rid.get(), -1) << "the thread gets back its own context";
}

TEST(Asio, TasksHoppingBetweenFourThreadsKeepTheirOwnValue) {
  net::io_context io;
  std::atomic<int> ctx_bad{0}, tl_bad{0};
  for (int i = 0; i < 200; ++i) cx::co_spawn(io.get_executor(), request(i, ctx_bad, tl_bad, 5), net::detached);
  run_threads(io, 4);
  EXPECT_EQ(ctx_bad.load(), 0);
}

TEST(Asio, ASpawnedTaskRunsInACopyOfTheCallersContext) {
  net::io_context io;
  (void)rid.set(5);
  auto f = cx::co_spawn(io, []() -> awaitable<int> {
    const int seen = rid.get();
    (void)rid.set(6);
    co_return seen;
  }(), net::use_future);
  (void)rid.set(7);  // after the spawn: not seen by the task
  io.run();
  EXPECT_EQ(f.get(), 5);
  EXPECT_EQ(rid.get(), 7);
  (void)rid.set(-1);
}

TEST(Asio, TheExplicitContextOverloadRunsInThatContext) {
  net::io_context io;
  ctxvars::context c;
  cx::co_spawn(io, c, []() -> awaitable<void> {
    (void)rid.set(11);
    co_await sleep_for(1ms);
    (void)rid.set(rid.get() + 1);
  }(), net::detached);
  io.run();
  EXPECT_EQ(c.get(rid), 12);
  EXPECT_FALSE(c.entered());
}

awaitable<void> child_sets(int v) {
  co_await sleep_for(1ms);
  (void)rid.set(v);
}

TEST(Asio, DirectAwaitSharesTheContextNestedSpawnCopiesIt) {
  net::io_context io;
  auto f = cx::co_spawn(io, []() -> awaitable<std::pair<int, int>> {
    (void)rid.set(1);
    co_await child_sets(2);  // direct await: shares
    const int after_direct = rid.get();
    co_await cx::co_spawn(co_await net::this_coro::executor, child_sets(3), use_awaitable);  // nested task: a copy
    co_return std::pair{after_direct, rid.get()};
  }(), net::use_future);
  io.run();
  EXPECT_EQ(f.get(), (std::pair<int, int>{2, 2}));
}

TEST(Asio, NestedSpawnsOnAMultiThreadedContextDoNotFightOverTheParentsContext) {
  net::io_context io;
  std::atomic<int> bad{0};
  auto parent = [](std::atomic<int>& b) -> awaitable<void> {
    (void)rid.set(100);
    auto ex = co_await net::this_coro::executor;
    for (int i = 0; i < 20; ++i)
      cx::co_spawn(ex, [](int id, std::atomic<int>& bb) -> awaitable<void> {
        if (rid.get() != 100) ++bb;  // inherited from the parent
        (void)rid.set(id);
        co_await sleep_for(2ms);
        if (rid.get() != id) ++bb;
      }(i, b), net::detached);
    co_await sleep_for(5ms);
    if (rid.get() != 100) ++b;
  };
  for (int k = 0; k < 10; ++k) cx::co_spawn(io, parent(bad), net::detached);
  run_threads(io, 4);
  EXPECT_EQ(bad.load(), 0);
}

TEST(Asio, StrandsPostAndDispatchKeepTheContext) {
  net::io_context io;
  std::atomic<int> bad{0};
  auto strand = net::make_strand(io);
  for (int i = 0; i < 50; ++i)
    cx::co_spawn(strand, [](int id, std::atomic<int>& b) -> awaitable<void> {
      (void)rid.set(id);
      auto ex = co_await net::this_coro::executor;
      co_await net::post(ex, use_awaitable);
      if (rid.get() != id) ++b;
      co_await net::dispatch(ex, use_awaitable);  // completes inline
      if (rid.get() != id) ++b;
      co_await net::post(net::make_strand(ex), use_awaitable);
      if (rid.get() != id) ++b;
    }(i, bad), net::detached);
  run_threads(io, 3);
  EXPECT_EQ(bad.load(), 0);
}

TEST(Asio, AHandlerRunningWhileATaskIsSuspendedSeesItsOwnContext) {
  net::io_context io;
  int seen = 0, seen_on_task_executor = 0;
  cx::co_spawn(io, [](net::io_context& ioc, int& s, int& st) -> awaitable<void> {
    (void)rid.set(1);
    net::post(ioc, [&s] { s = rid.get(); });  // a plain handler: the thread's own context
    net::post(co_await net::this_coro::executor, [&st] { st = rid.get(); });  // the task's
    co_await sleep_for(2ms);
  }(io, seen, seen_on_task_executor), net::detached);
  io.run();
  EXPECT_EQ(seen, -1);
  EXPECT_EQ(seen_on_task_executor, 1);
}

TEST(Asio, BoundCallbacksCarryTheCallersContext) {
  net::io_context io;
  int seen = 0;
  ctxvars::context().run([&] {
    (void)rid.set(33);
    net::post(io, ctxvars::bind([&] { seen = rid.get(); }));
  });
  io.run();
  EXPECT_EQ(seen, 33);
}

awaitable<int> read_rid_twice() {
  co_await sleep_for(1ms);
  co_return rid.get() * 2;
}

TEST(Asio, BindKeepsTheHandlersExecutorAllocatorAndCancellationSlot) {
  net::io_context io;
  auto strand = net::make_strand(io);
  net::cancellation_signal sig;
  bool on_strand = false, cancelled = false;
  int seen = 0;
  net::steady_timer timer(io, net::steady_timer::time_point::max());  // only the cancel ends it
  ctxvars::context().run([&] {
    (void)rid.set(44);
    auto h = net::bind_cancellation_slot(
        sig.slot(), net::bind_executor(strand, [&](net_error_code ec) {
          on_strand = strand.running_in_this_thread();
          cancelled = ec == net::error::operation_aborted;
          seen = rid.get();
        }));
    auto bound = ctxvars::bind(h);
    static_assert(std::is_same_v<net::associated_executor_t<decltype(bound)>, decltype(strand)>);
    EXPECT_TRUE(net::get_associated_cancellation_slot(bound).is_connected());
    timer.async_wait(std::move(bound));
  });
  net::post(io, [&] { sig.emit(net::cancellation_type::terminal); });
  run_threads(io, 2);
  EXPECT_TRUE(on_strand) << "the handler ran on its strand";
  EXPECT_TRUE(cancelled) << "the cancellation slot reached the timer";
  EXPECT_EQ(seen, 44) << "and in the bound context";
}

TEST(Asio, CompletionTokensFutureCallbackAndAwaitable) {
  net::io_context io;
  (void)rid.set(2);
  int cb_value = 0;
  std::exception_ptr cb_error;
  cx::co_spawn(io.get_executor(), read_rid_twice(), [&](std::exception_ptr e, int v) {
    cb_error = e;
    cb_value = v;
  });
  auto fut = cx::co_spawn(io, []() -> awaitable<int> {
    co_return co_await cx::co_spawn(co_await net::this_coro::executor, read_rid_twice(), use_awaitable);
  }, net::use_future);  // the function-object overload
  io.run();
  EXPECT_FALSE(cb_error);
  EXPECT_EQ(cb_value, 4);
  EXPECT_EQ(fut.get(), 4);
  (void)rid.set(-1);
}

TEST(Asio, ExceptionsReachTheCompletionTokenAndTheThreadKeepsItsContext) {
  net::io_context io;
  auto fut = cx::co_spawn(io, []() -> awaitable<int> {
    (void)rid.set(9);
    co_await sleep_for(1ms);
    throw std::runtime_error("handler failed");
  }(), net::use_future);
  io.run();
  EXPECT_THROW(fut.get(), std::runtime_error);
  EXPECT_EQ(rid.get(), -1);
}

TEST(Asio, CancellationWakesTheTaskInItsOwnContext) {
  net::io_context io;
  net::cancellation_signal sig;
  int seen_in_catch = 0;
  cx::co_spawn(io, [](int& seen) -> awaitable<void> {
    (void)rid.set(77);
    try {
      co_await sleep_for(std::chrono::hours(24));  // only the cancel ends it
    } catch (const net_system_error& e) {
      if (e.code() == net::error::operation_aborted) seen = rid.get();
    }
  }(seen_in_catch), net::bind_cancellation_slot(sig.slot(), net::detached));
  net::steady_timer t(io, 5ms);
  t.async_wait([&](auto) { sig.emit(net::cancellation_type::terminal); });
  io.run();
  EXPECT_EQ(seen_in_catch, 77);
}

awaitable<int> branch(int v) {
  const int inherited = rid.get();
  (void)rid.set(v);
  co_await sleep_for(std::chrono::milliseconds(v % 3 + 1));
  co_return rid.get() == v ? inherited : -1000;
}

TEST(Asio, GatherRunsEachBranchInItsOwnCopy) {
  net::io_context io;
  auto fut = cx::co_spawn(io, []() -> awaitable<std::tuple<int, int, int>> {
    (void)rid.set(5);
    auto [a, b] = co_await cx::gather(branch(10), branch(11));
    co_return std::tuple{a, b, rid.get()};
  }(), net::use_future);
  run_threads(io, 2);
  EXPECT_EQ(fut.get(), (std::tuple<int, int, int>{5, 5, 5}));
}

TEST(Asio, GatherRethrowsTheFirstFailure) {
  net::io_context io;
  auto fut = cx::co_spawn(io, []() -> awaitable<int> {
    auto [a, b] = co_await cx::gather(branch(1), []() -> awaitable<int> {
      co_await sleep_for(1ms);
      throw std::runtime_error("branch");
    }());
    co_return a + b;
  }(), net::use_future);
  io.run();
  EXPECT_THROW(fut.get(), std::runtime_error);
}

TEST(Asio, AwaitableOperatorsShareOneContextBetweenBranches) {
  // The documented trap: && runs both branches inside ONE task's context.
  using namespace net::experimental::awaitable_operators;
  net::io_context io;
  auto fut = cx::co_spawn(io, []() -> awaitable<int> {
    (void)rid.set(0);
    co_await ([]() -> awaitable<void> { (void)rid.set(1); co_return; }() &&
              sleep_for(2ms));
    co_return rid.get();
  }(), net::use_future);
  io.run();
  EXPECT_EQ(fut.get(), 1) << "a branch's set is visible to the whole task";
}

// A real socket round trip: each connection handled by a task whose request
// id must survive the socket waits.
awaitable<void> serve_one(net::ip::tcp::socket s, std::atomic<int>& bad) {
  char buf[16];
  const std::size_t n = co_await s.async_read_some(net::buffer(buf), use_awaitable);
  const int id = std::stoi(std::string(buf, n));
  (void)rid.set(id);
  co_await sleep_for(std::chrono::milliseconds(id % 4));
  const std::string reply = std::to_string(rid.get());
  if (rid.get() != id) ++bad;
  co_await net::async_write(s, net::buffer(reply), use_awaitable);
}

TEST(Asio, SocketsOnLoopbackKeepEachConnectionsContext) {
  net::io_context io;
  net::ip::tcp::acceptor acc(io, {net::ip::make_address("127.0.0.1"), 0});
  const auto ep = acc.local_endpoint();
  std::atomic<int> bad{0}, ok{0};
  constexpr int clients = 40;
  cx::co_spawn(io, [](net::ip::tcp::acceptor& a, std::atomic<int>& b) -> awaitable<void> {
    for (int i = 0; i < clients; ++i) {
      auto s = co_await a.async_accept(use_awaitable);
      cx::co_spawn(a.get_executor(), serve_one(std::move(s), b), net::detached);
    }
  }(acc, bad), net::detached);
  for (int i = 0; i < clients; ++i)
    cx::co_spawn(io, [](net::ip::tcp::endpoint e, int id, std::atomic<int>& good) -> awaitable<void> {
      net::ip::tcp::socket s(co_await net::this_coro::executor);
      co_await s.async_connect(e, use_awaitable);
      const std::string msg = std::to_string(id);
      co_await net::async_write(s, net::buffer(msg), use_awaitable);
      char buf[16];
      const std::size_t n = co_await s.async_read_some(net::buffer(buf), use_awaitable);
      if (std::string(buf, n) == msg) ++good;
    }(ep, 1000 + i, ok), net::detached);
  run_threads(io, 4);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(ok.load(), clients);
}

struct counted_id {
  static inline std::atomic<long> alive{0};
  int v;
  explicit counted_id(int x) : v(x) { ++alive; }
  counted_id(const counted_id& o) : v(o.v) { ++alive; }
  ~counted_id() { --alive; }
};

TEST(AsioStress, ThousandsOfTasksOnAFourThreadIoContextKeepTheirValuesAndFreeThemOnce) {
  {
    ctxvars::context_var<counted_id> cid("cid");
    net::io_context io;
    std::atomic<int> bad{0}, finished{0};
    for (int i = 0; i < 3000; ++i)
      cx::co_spawn(io, [](ctxvars::context_var<counted_id>& v, int id, std::atomic<int>& b,
                          std::atomic<int>& f) -> awaitable<void> {
        (void)v.set(counted_id(id));
        auto ex = co_await net::this_coro::executor;
        for (int k = 0; k < 4; ++k) {
          if (k % 2)
            co_await net::post(ex, use_awaitable);
          else
            co_await sleep_for(std::chrono::milliseconds(k));
          if (v.get().v != id) ++b;
        }
        ++f;
      }(cid, i, bad, finished), net::detached);
    run_threads(io, 4);
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(finished.load(), 3000);
  }
  EXPECT_EQ(counted_id::alive.load(), 0) << "every value destroyed exactly once";
}

// The task's executor is copied and destroyed on many threads at once (Asio's
// own copies during steps on a four-thread io_context, functions posted to it
// from the task, copies that outlive the task and die on other threads): the
// context stays alive exactly as long as some copy does, then is freed once.
TEST(AsioStress, ExecutorCopiesOnOtherThreadsAndAfterTheTaskEndsFreeItsContextOnce) {
  {
    ctxvars::context_var<counted_id> cid("cid");
    constexpr int tasks = 200;
    std::mutex m;
    std::vector<net::any_io_executor> kept;
    {
      net::io_context io;
      std::atomic<int> bad{0}, posted{0};
      for (int i = 0; i < tasks; ++i)
        cx::co_spawn(io, [](ctxvars::context_var<counted_id>& v, int id, std::atomic<int>& b,
                            std::atomic<int>& p, std::mutex& mu,
                            std::vector<net::any_io_executor>& out) -> awaitable<void> {
          (void)v.set(counted_id(id));
          auto ex = co_await net::this_coro::executor;
          for (int k = 0; k < 6; ++k) {
            // A copy travels to whichever thread runs the function and dies there,
            // while this task goes on on another thread.
            net::post(ex, [ex, &v, &b, &p, id] {
              auto again = ex;
              // The task's own value; none if the task finished first.
              if (auto got = v.try_get(); got && got->v != id) ++b;
              ++p;
            });
            co_await net::post(ex, use_awaitable);
            if (v.get().v != id) ++b;
          }
          std::lock_guard<std::mutex> g(mu);
          out.push_back(ex);  // outlives the task
        }(cid, i, bad, posted, m, kept), net::detached);
      run_threads(io, 4);
      EXPECT_EQ(bad.load(), 0);
      EXPECT_EQ(posted.load(), tasks * 6);
    }
    ASSERT_EQ(kept.size(), std::size_t{tasks});
    EXPECT_EQ(counted_id::alive.load(), tasks) << "a surviving executor copy keeps its task's context";
    // Copy and drop the survivors on four threads at once, then let the last go.
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&kept] {
        for (int r = 0; r < 50; ++r)
          for (const auto& e : kept) {
            net::any_io_executor c = e;
            (void)c;
          }
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(counted_id::alive.load(), tasks);
    kept.clear();
  }
  EXPECT_EQ(counted_id::alive.load(), 0) << "every value destroyed exactly once";
}

}  // namespace

namespace {

// A child spawned in its parent's own context (the explicit-context overload)
// runs its first step inline, inside the parent's step. When it finishes there,
// only the child's step may end: the parent's code after co_spawn still runs
// in the parent's context, and the thread running io.run() keeps its own.
TEST(Asio, AChildSharingItsParentsContextThatFinishesInlineLeavesTheParentInIt) {
  net::io_context io;
  ctxvars::context c;
  auto fut = cx::co_spawn(io, c, [](ctxvars::context cc) -> awaitable<std::pair<int, int>> {
    (void)rid.set(1);
    cx::co_spawn(co_await net::this_coro::executor, cc,
                 []() -> awaitable<void> {
                   (void)rid.set(rid.get() + 1);
                   co_return;
                 }(),
                 net::detached);
    const int after_spawn = rid.get();  // 1, or 2 if the child ran inline: c either way
    (void)rid.set(10);
    co_await sleep_for(1ms);
    co_return std::pair{after_spawn, rid.get()};
  }(c), net::use_future);
  io.run();
  const auto [after_spawn, at_end] = fut.get();
  EXPECT_TRUE(after_spawn == 1 || after_spawn == 2) << after_spawn;
  EXPECT_EQ(at_end, 10);
  EXPECT_EQ(c.get(rid), 10) << "the parent's set after the spawn went to c";
  EXPECT_EQ(rid.get(), -1) << "not to the context of the thread running io.run()";
  EXPECT_FALSE(c.entered());
}

// A thread that runs the io_context inside c.run(...) holds c for as long as it
// runs. A step of a task in c that another thread picks up must not wait for c
// (that would wait for the loop, which waits for the step): it gives way, and
// runs once re-posted (on the loop inside c, or whenever c is free).
TEST(Asio, AStepOfATaskInAContextHeldByAThreadRunningTheLoopInsideItDoesNotWaitForever) {
  net::io_context io;
  ctxvars::context c;
  c.run([] { (void)rid.set(0); });
  constexpr int tasks = 10, waits = 20;
  for (int i = 0; i < tasks; ++i)
    cx::co_spawn(io, c, []() -> awaitable<void> {
      for (int k = 0; k < waits; ++k) {
        (void)rid.set(rid.get() + 1);  // steps in c never overlap: no increment lost
        net::steady_timer t(co_await net::this_coro::executor, std::chrono::microseconds(200));
        co_await t.async_wait(use_awaitable);
      }
    }(), net::detached);
  // The second thread starts once this one holds c: were it started first, a
  // step in c on it could hold c when c.run is called, and entering a context
  // another thread has entered is an error (RuntimeError in Python).
  std::thread other;
  c.run([&] {
    other = std::thread([&] { io.run(); });
    io.run();
  });
  other.join();
  EXPECT_EQ(c.get(rid), tasks * waits);
  EXPECT_FALSE(c.entered());
}

// ---- the biased reference count of a task's executor -------------------------------
// While a thread runs a step inside the task's context it counts copies of the
// task's executor in a plain counter; the tests below make copies and drop them
// in every place that ownership could get wrong, and check that each task's
// context lives exactly as long as some copy does (counted_id), once.

// Steps on threads that live for one or two steps each: a new thread often gets
// the TLS block (and so any address-based identity) of one that just exited.
// Copies made in one step die in later steps on other threads.
TEST(AsioStress, StepsOnShortLivedThreadsCountEveryExecutorCopyOfEveryTask) {
  {
    ctxvars::context_var<counted_id> cid("cid");
    constexpr int tasks = 40, steps = 12;
    net::io_context io;
    std::atomic<int> bad{0}, done{0};
    for (int i = 0; i < tasks; ++i)
      cx::co_spawn(io, [](ctxvars::context_var<counted_id>& v, int id, std::atomic<int>& b,
                          std::atomic<int>& d) -> awaitable<void> {
        (void)v.set(counted_id(id));
        std::vector<net::any_io_executor> keep;
        for (int k = 0; k < steps; ++k) {
          auto ex = co_await net::this_coro::executor;
          keep.push_back(ex);
          if (keep.size() > 3) keep.erase(keep.begin());  // made 3 steps (threads) ago
          co_await net::post(ex, use_awaitable);
          if (v.get().v != id) ++b;
        }
        ++d;
      }(cid, i, bad, done), net::detached);
    // Two threads at a time, each running a few handlers and exiting.
    while (!io.stopped()) {
      std::thread a([&] { for (int k = 0; k < 3; ++k) io.run_one(); });
      std::thread b([&] { for (int k = 0; k < 2; ++k) io.run_one(); });
      a.join();
      b.join();
    }
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(done.load(), tasks);
  }
  EXPECT_EQ(counted_id::alive.load(), 0) << "every task's context freed exactly once";
}

// A task's step dispatches a function to another (suspended) task's executor:
// it runs inline, entering that task's context, and from there dispatches back
// to the first task's executor (its context is entered further down the
// stack). Copies of both executors are made and dropped at every level.
TEST(AsioStress, InlineStepsOfAnotherTaskNestedInAStepCountBothTasksCopies) {
  {
    ctxvars::context_var<counted_id> cid("cid");
    net::io_context io;
    std::optional<net::any_io_executor> b_ex;
    std::atomic<int> bad{0}, nested{0};
    net::steady_timer b_wakes(io, net::steady_timer::time_point::max());  // only A's cancel wakes B
    cx::co_spawn(io, [](ctxvars::context_var<counted_id>& v, std::optional<net::any_io_executor>& out,
                        net::steady_timer& t) -> awaitable<void> {
      (void)v.set(counted_id(2));
      out = co_await net::this_coro::executor;
      net_error_code ec;
      co_await t.async_wait(net::redirect_error(use_awaitable, ec));
    }(cid, b_ex, b_wakes), net::detached);
    cx::co_spawn(io, [](ctxvars::context_var<counted_id>& v, std::optional<net::any_io_executor>& bx,
                        net::steady_timer& t, std::atomic<int>& b, std::atomic<int>& n) -> awaitable<void> {
      (void)v.set(counted_id(1));
      auto ax = co_await net::this_coro::executor;
      while (!bx) co_await net::post(ax, use_awaitable);
      for (int round = 0; round < 50; ++round) {
        std::vector<net::any_io_executor> kept_a(3, ax);
        net::dispatch(*bx, [ax, bxc = *bx, &v, &b, &n] {  // inline, in B's context
          if (v.get().v != 2) ++b;
          std::vector<net::any_io_executor> copies{ax, bxc, ax, bxc};
          net::dispatch(ax, [copies, &v, &b, &n] {  // inline, back in A's
            if (v.get().v != 1) ++b;
            auto more = copies;
            ++n;
          });
          if (v.get().v != 2) ++b;
        });
        if (v.get().v != 1) ++b;
        if (n.load() != round + 1) ++b;  // both dispatches ran inline, before this line
        co_await net::post(ax, use_awaitable);
      }
      bx.reset();
      t.cancel();
    }(cid, b_ex, b_wakes, bad, nested), net::detached);
    io.run();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(nested.load(), 50);
  }
  EXPECT_EQ(counted_id::alive.load(), 0) << "both contexts freed exactly once";
}

// The executor's last copies other than the one running the function are
// dropped inside the step (by the function itself, and by another thread while
// the step runs): the context lives until the step is over, then is freed once.
TEST(AsioStress, TheLastCopiesOfAnExecutorDroppedInsideItsStepFreeTheContextAfterIt) {
  ctxvars::context_var<counted_id> cid("cid");
  for (int round = 0; round < 200; ++round) {
    net::io_context io;
    std::atomic<int> seen{0};
    {
      ctxvars::context c;
      c.run([&] { (void)cid.set(counted_id(round)); });
      using ex_t = cx::context_executor<net::io_context::executor_type>;
      auto mine = std::make_shared<std::optional<ex_t>>(ex_t(io.get_executor(), c));
      auto theirs = std::make_shared<std::optional<ex_t>>(**mine);
      std::atomic<bool> go{false}, dropped{false};
      std::thread other([theirs, &go, &dropped] {
        while (!go.load()) std::this_thread::yield();
        theirs->reset();  // while the step runs, on another thread
        dropped = true;
      });
      net::post(**mine, [mine, &cid, &seen, &go, &dropped] {
        go = true;
        mine->reset();  // inside the step, by the thread that owns the count
        while (!dropped.load()) std::this_thread::yield();
        seen = cid.get().v;
      });
      theirs.reset();
      mine.reset();
      io.run();
      other.join();
      EXPECT_EQ(seen.load(), round);
    }
    EXPECT_EQ(counted_id::alive.load(), 0) << "round " << round;
  }
}

// A moved-from context_executor (its move hands the task over): destroying,
// copying, assigning and comparing it are safe, and get_context() and execute()
// throw std::logic_error (they dereferenced null). The executor it was moved to
// is unaffected.
TEST(Asio, AMovedFromContextExecutorThrowsLogicErrorAndEverythingElseStaysSafe) {
  net::io_context io;
  ctxvars::context c;
  c.run([&] { (void)rid.set(5); });
  using ex_t = cx::context_executor<net::io_context::executor_type>;
  ex_t e(io.get_executor(), c);
  ex_t e2 = std::move(e);
  EXPECT_TRUE(e2.get_context() == c);
  EXPECT_THROW((void)e.get_context(), std::logic_error);
  EXPECT_THROW(e.execute([] {}), std::logic_error);
  EXPECT_THROW(net::post(e, [] {}), std::logic_error);
  EXPECT_FALSE(e == e2);
  EXPECT_TRUE(e != e2);
  ex_t e3 = e;  // a copy of a moved-from one is moved-from too
  EXPECT_TRUE(e3 == e);
  EXPECT_THROW((void)e3.get_context(), std::logic_error);
  int seen = 0;
  net::post(e2, [&] { seen = rid.get(); });
  io.run();
  EXPECT_EQ(seen, 5) << "the executor it was moved to runs in c";
  e = e2;  // assigned: usable again
  EXPECT_TRUE(e == e2);
  EXPECT_TRUE(e.get_context() == c);
  EXPECT_FALSE(c.entered());
}

// Functions posted to a task's executor from other threads, before and after
// the task finished, on a thread_pool and on a strand of it: each runs in the
// task's context while the task runs and in none afterwards, and the last
// copy, wherever it dies, frees the context once.
TEST(AsioStress, FunctionsPostedToATaskOnAThreadPoolBeforeAndAfterItFinishesFreeItOnce) {
  {
    ctxvars::context_var<counted_id> cid("cid");
    constexpr int tasks = 60;
    net::thread_pool pool(3);
    std::mutex m;
    std::vector<std::pair<int, net::any_io_executor>> exs;
    std::atomic<int> bad{0}, done{0}, ran{0};
    for (int i = 0; i < tasks; ++i) {
      auto on = (i % 2) ? net::any_io_executor(net::make_strand(pool.get_executor()))
                        : net::any_io_executor(pool.get_executor());
      cx::co_spawn(on, [](ctxvars::context_var<counted_id>& v, int id, std::mutex& mu,
                          std::vector<std::pair<int, net::any_io_executor>>& out, std::atomic<int>& b,
                          std::atomic<int>& d) -> awaitable<void> {
        (void)v.set(counted_id(id));
        auto ex = co_await net::this_coro::executor;
        {
          std::lock_guard<std::mutex> g(mu);
          out.emplace_back(id, ex);
        }
        for (int k = 0; k < 5; ++k) {
          co_await net::post(ex, use_awaitable);
          if (v.get().v != id) ++b;
        }
        ++d;
      }(cid, i, m, exs, bad, done), net::detached);
    }
    // Meanwhile and afterwards, other threads post to the tasks' executors: they go on until
    // every task has finished and then post a few rounds more, so on a loaded machine (where the
    // pool may not have run a single step yet when the posters start) functions are still posted
    // both while the tasks run and after they finished.
    std::vector<std::thread> posters;
    for (int t = 0; t < 2; ++t)
      posters.emplace_back([&] {
        for (int after = 0; after < 5;) {
          if (done.load() == tasks) ++after;
          std::vector<std::pair<int, net::any_io_executor>> snap;
          {
            std::lock_guard<std::mutex> g(m);
            snap = exs;
          }
          for (auto& [id, e] : snap)
            net::post(e, [id = id, e = e, &cid, &bad, &ran] {
              // The task's own value while it runs; none once it finished.
              if (auto got = cid.try_get(); got && got->v != id) ++bad;
              ++ran;
            });
          std::this_thread::yield();
        }
      });
    for (auto& t : posters) t.join();
    pool.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(done.load(), tasks);
    EXPECT_GT(ran.load(), 0);
    {
      std::lock_guard<std::mutex> g(m);
      exs.clear();
    }
  }
  EXPECT_EQ(counted_id::alive.load(), 0) << "every task's context freed exactly once";
}

}  // namespace
