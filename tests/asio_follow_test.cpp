// Issue 17: a task's context follows its coroutine on every resumption,
// whatever executor or completion token delivers it, and nothing a step writes
// is visible outside the task's context. Compiled for both Asios
// (asio_follow_test, boost_asio_follow_test; see asio_test_net.hpp).
//
// Every case: a task spawned with the adapter sets rid = its id, awaits one
// operation whose completion Asio delivers through some executor, then checks
// the value on the resumed side and writes after it (a probe: if the step ran
// outside the task's context, the write lands in that thread's own context).
// Afterwards every thread that took part runs an unrelated job that must see
// the default (no leak), and the thread that ran the io_context gets its own
// context back.
#include "asio_test_channel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;
using net::awaitable;
using net::use_awaitable;

namespace {

using net_channel::as_tuple;

ctxvars::context_var<int> rid("rid", -1);

// Records what each resumption saw: a mismatch, or a step that ran outside the task.
struct probe {
  std::atomic<int> resumed{0};
  std::atomic<int> wrong{0};
  std::mutex m;
  std::vector<std::string> notes;
  void check(int id, const char* where) {
    ++resumed;
    const int seen = rid.get();
    if (seen != id) {
      ++wrong;
      std::lock_guard<std::mutex> l(m);
      notes.push_back(std::string(where) + ": saw " + std::to_string(seen) + ", want " + std::to_string(id));
    }
    (void)rid.set(id);  // a write after the resumption: must stay in the task's context
  }
  std::string text() {
    std::lock_guard<std::mutex> l(m);
    std::string s;
    for (auto& n : notes) s += n + "\n";
    return s;
  }
};

// Runs `n` jobs on `ex` that rendezvous (so each of the n threads runs one)
// and each reads rid outside any task: the thread's own context.
template <class Ex>
int leaked_values_on(const Ex& ex, int n) {
  std::atomic<int> arrived{0}, leaked{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < n; ++i) {
    net::post(ex, [&] {
      ++arrived;
      const auto until = std::chrono::steady_clock::now() + 2s;
      while (arrived.load() < n && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      if (rid.get() != -1) ++leaked;
      ++finished;  // last: nothing of this frame is touched after it
    });
  }
  while (finished.load() < n) std::this_thread::yield();
  return leaked.load();
}

// A fixture: the task's io_context (run by one thread), a thread_pool(2), a
// second io_context (run by one thread).
struct Follow : ::testing::Test {
  net::io_context io;
  net::thread_pool pool{2};
  net::io_context other;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> other_work{other.get_executor()};
  std::thread other_thread{[this] { other.run(); }};
  probe p;

  ~Follow() override {
    other_work.reset();
    other_thread.join();
    pool.join();
  }

  // Spawns `body(id)` as a task (several at once, interleaved) and runs io on
  // this thread until all are done; then checks for leaks everywhere.
  template <class Body>
  void run_tasks(Body body, int tasks = 4) {
    std::atomic<int> done{0};
    std::vector<std::exception_ptr> errors(tasks);
    for (int id = 0; id < tasks; ++id) {
      cx::co_spawn(io, body(id), [&, id](std::exception_ptr e) {
        errors[id] = e;
        ++done;
      });
    }
    io.run();
    EXPECT_EQ(done.load(), tasks);
    for (auto& e : errors)
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          ADD_FAILURE() << "task threw: " << x.what();
        }
      }
    EXPECT_GE(p.resumed.load(), tasks);
    EXPECT_EQ(p.wrong.load(), 0) << p.text();
    EXPECT_EQ(rid.get(), -1) << "the io thread's own context";
    EXPECT_EQ(leaked_values_on(pool.get_executor(), 2), 0) << "a pool thread kept a task's value";
    EXPECT_EQ(leaked_values_on(other.get_executor(), 1), 0) << "the other io_context's thread kept a task's value";
  }
};

TEST_F(Follow, PostThroughAnExecutorBoundToAThreadPool) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    for (int i = 0; i < 3; ++i) {
      co_await net::post(net::bind_executor(pool, use_awaitable));
      p.check(id, "post(bind_executor(pool))");
      co_await net::post(io.get_executor(), use_awaitable);
      p.check(id, "post(io) after the pool");
    }
  });
}

TEST_F(Follow, DispatchAndDeferThroughABoundPoolExecutor) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    co_await net::dispatch(net::bind_executor(pool, use_awaitable));
    p.check(id, "dispatch(bind_executor(pool))");
    co_await net::defer(net::bind_executor(pool, use_awaitable));
    p.check(id, "defer(bind_executor(pool))");
    co_await net::dispatch(net::bind_executor(pool, use_awaitable));  // already on the pool: may run inline
    p.check(id, "dispatch(bind_executor(pool)) on the pool");
  });
}

TEST_F(Follow, PostThroughAStrandAndAnotherIoContext) {
  auto strand = net::make_strand(pool);
  run_tasks([this, strand](int id) -> awaitable<void> {
    (void)rid.set(id);
    co_await net::post(net::bind_executor(strand, use_awaitable));
    p.check(id, "post(bind_executor(strand of pool))");
    co_await net::post(net::bind_executor(other, use_awaitable));
    p.check(id, "post(bind_executor(other io_context))");
    co_await net::dispatch(net::bind_executor(net::make_strand(io), use_awaitable));
    p.check(id, "dispatch(bind_executor(strand of io))");
  });
}

TEST_F(Follow, TimersWithBoundTokens) {
  auto strand = net::make_strand(pool);
  run_tasks([this, strand](int id) -> awaitable<void> {
    (void)rid.set(id);
    net::steady_timer t(co_await net::this_coro::executor, 1ms);
    co_await t.async_wait(net::bind_executor(pool, use_awaitable));
    p.check(id, "timer bound to the pool");
    t.expires_after(1ms);
    co_await t.async_wait(net::bind_executor(strand, use_awaitable));
    p.check(id, "timer bound to a strand");
    t.expires_after(1ms);
    auto [ec] = co_await t.async_wait(as_tuple(net::bind_executor(pool, use_awaitable)));
    EXPECT_FALSE(ec);
    p.check(id, "as_tuple(bind_executor(pool))");
    t.expires_after(1ms);
    auto [ec2] = co_await t.async_wait(net::bind_executor(pool, as_tuple(use_awaitable)));
    EXPECT_FALSE(ec2);
    p.check(id, "bind_executor(pool, as_tuple)");
    t.expires_after(1ms);
    net_error_code ec3;
    co_await t.async_wait(net::redirect_error(net::bind_executor(pool, use_awaitable), ec3));
    EXPECT_FALSE(ec3);
    p.check(id, "redirect_error(bind_executor(pool))");
  });
}

TEST_F(Follow, SocketsWithBoundTokensOverLoopback) {
  run_tasks(
      [this](int id) -> awaitable<void> {
        (void)rid.set(id);
        auto ex = co_await net::this_coro::executor;
        net::ip::tcp::acceptor acc(ex, {net::ip::make_address("127.0.0.1"), 0});
        net::ip::tcp::socket a(ex), b(ex);
        co_await a.async_connect(acc.local_endpoint(), net::bind_executor(pool, use_awaitable));
        p.check(id, "connect bound to the pool");
        co_await acc.async_accept(b, net::bind_executor(other, use_awaitable));
        p.check(id, "accept bound to another io_context");
        char out[4] = {'p', 'i', 'n', 'g'}, in[4] = {};
        co_await net::async_write(a, net::buffer(out), net::bind_executor(pool, use_awaitable));
        p.check(id, "write bound to the pool");
        co_await net::async_read(b, net::buffer(in), net::bind_executor(pool, use_awaitable));
        p.check(id, "read bound to the pool");
        EXPECT_EQ(std::string(in, 4), "ping");
      },
      3);
}

TEST_F(Follow, AwaitableOperatorsAndParallelGroups) {
  using namespace net::experimental::awaitable_operators;
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    auto nap = [this](int who, std::chrono::milliseconds d) -> awaitable<int> {
      net::steady_timer t(co_await net::this_coro::executor, d);
      co_await t.async_wait(net::bind_executor(pool, use_awaitable));
      p.check(who, "inside an operator's branch");
      co_return 1;
    };
    co_await (nap(id, 1ms) && nap(id, 2ms));
    p.check(id, "after a && b");
    auto r = co_await (nap(id, 1ms) || nap(id, 1h));  // the slow branch is cancelled
    EXPECT_EQ(r.index(), 0u);
    p.check(id, "after a || b with a cancelled branch");
    auto ex = co_await net::this_coro::executor;
    auto [order, e1, v1, e2, v2] =
        co_await net::experimental::make_parallel_group(
            net::co_spawn(ex, nap(id, 1ms), net::experimental::deferred),
            net::co_spawn(ex, nap(id, 2ms), net::experimental::deferred))
            .async_wait(net::experimental::wait_for_all(), use_awaitable);
    EXPECT_FALSE(e1);
    EXPECT_FALSE(e2);
    p.check(id, "after a parallel group");
  });
}

TEST_F(Follow, ChannelsAcrossTasksAndThreads) {
  // Concurrent: the producer runs on the pool, the consumer on the io thread.
  using channel = net::experimental::concurrent_channel<void(net_error_code, int)>;
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    auto ex = co_await net::this_coro::executor;
    auto ch = std::make_shared<channel>(ex, 0);
    // The producer: a task of its own on the pool, in its own context.
    cx::co_spawn(pool, [ch, id]() -> awaitable<void> {
      (void)rid.set(1000 + id);
      for (int i = 0; i < 4; ++i) co_await ch->async_send(net_error_code{}, i, use_awaitable);
    }, net::detached);
    for (int i = 0; i < 3; ++i) {
      int v = co_await ch->async_receive(use_awaitable);
      EXPECT_EQ(v, i);
      p.check(id, "channel receive");
    }
    int last = co_await ch->async_receive(net::bind_executor(pool, use_awaitable));
    EXPECT_EQ(last, 3);
    p.check(id, "channel receive bound to the pool");
  }, 1);
}

TEST_F(Follow, CancellationAfterATimeoutThroughABoundSlot) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    auto ex = co_await net::this_coro::executor;
    net::cancellation_signal sig;
    net::steady_timer forever(ex, std::chrono::steady_clock::time_point::max());
    net::steady_timer timeout(ex, 2ms);
    timeout.async_wait([&](net_error_code) { sig.emit(net::cancellation_type::terminal); });
    auto [ec] = co_await forever.async_wait(
        as_tuple(net::bind_cancellation_slot(sig.slot(), net::bind_executor(pool, use_awaitable))));
    EXPECT_EQ(ec, net::error::operation_aborted);
    p.check(id, "cancelled wait bound to the pool");
  });
}

TEST_F(Follow, AChildSpawnedOnAnotherExecutorAndAwaited) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    int child_saw = co_await cx::co_spawn(
        pool,
        [this](int me) -> awaitable<int> {
          const int saw = rid.get();
          (void)rid.set(2000 + me);  // the child's own copy
          co_await net::post(net::bind_executor(other, use_awaitable));
          p.check(2000 + me, "child after a hop to another io_context");
          co_return saw;
        }(id),
        use_awaitable);
    EXPECT_EQ(child_saw, id);
    p.check(id, "parent after awaiting a child spawned on the pool");
  });
}

TEST_F(Follow, UseFutureCompletesATaskThatHoppedExecutors) {
  auto f = cx::co_spawn(
      pool,
      [this]() -> awaitable<int> {
        (void)rid.set(7);
        co_await net::post(net::bind_executor(other, use_awaitable));
        p.check(7, "after a hop, spawned with use_future");
        co_return rid.get();
      },
      net::use_future);
  EXPECT_EQ(f.get(), 7);
  EXPECT_EQ(p.wrong.load(), 0) << p.text();
  EXPECT_EQ(rid.get(), -1);
  EXPECT_EQ(leaked_values_on(pool.get_executor(), 2), 0);
  EXPECT_EQ(leaked_values_on(other.get_executor(), 1), 0);
}

}  // namespace

// ---- to_thread (Python's asyncio.to_thread) ----------------------------------

namespace {

TEST_F(Follow, ToThreadRunsFOnThePoolInACopyAndResumesOnTheTasksOwnExecutor) {
  const auto io_thread = std::this_thread::get_id();
  std::atomic<int> on_pool{0}, back_on_io{0};
  run_tasks([&, this](int id) -> awaitable<void> {
    (void)rid.set(id);
    int seen = co_await cx::to_thread(pool, [&, id] {
      if (std::this_thread::get_id() != io_thread) ++on_pool;
      const int v = rid.get();
      (void)rid.set(3000 + id);  // the copy's: never reaches the task
      return v;
    });
    EXPECT_EQ(seen, id);
    if (std::this_thread::get_id() == io_thread) ++back_on_io;
    p.check(id, "after to_thread");
    // On an executor, a void function, and a move-only result.
    co_await cx::to_thread(pool.get_executor(), [] { (void)rid.set(-5); });
    p.check(id, "after a void to_thread");
    auto up = co_await cx::to_thread(pool, [] { return std::make_unique<int>(rid.get()); });
    EXPECT_EQ(*up, id);
    p.check(id, "after a move-only result");
  });
  EXPECT_EQ(on_pool.load(), 4);
  EXPECT_EQ(back_on_io.load(), 4);
}

TEST_F(Follow, ToThreadRethrowsFsExceptionInTheTaskWithItsContextIntact) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    bool caught = false;
    try {
      co_await cx::to_thread(pool, [] {
        (void)rid.set(-7);
        throw std::runtime_error("boom");
      });
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "boom";
    }
    EXPECT_TRUE(caught);
    p.check(id, "after to_thread threw");
  });
}

TEST_F(Follow, ToThreadTakesAMoveOnlyFunction) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    // Named, not a temporary inside co_await: g++ 12 destroys such a temporary
    // twice (docs/coroutines.md, "g++ 12 crashes on a lambda temporary").
    auto f = [o = std::make_unique<int>(41)] { return *o + 1; };
    int r = co_await cx::to_thread(pool, std::move(f));
    EXPECT_EQ(r, 42);
    p.check(id, "after a move-only function");
  });
}

}  // namespace

// ---- flow policy: co_spawn and to_thread start new work in a fork -------------

namespace {

awaitable<void> read_into(ctxvars::context_var<int>& iso, ctxvars::context_var<int>& mapped,
                          std::pair<int, int>& seen) {
  seen = {iso.get(), mapped.get()};
  co_return;
}

TEST(AsioFlow, CoSpawnAndToThreadStartNewWorkInAFork) {
  ctxvars::context_var<int> iso("iso", 0, ctxvars::flow::isolate);
  ctxvars::context_var<int> mapped("mapped", 0, ctxvars::on_fork([](const int& x) { return x + 1; }));
  net::io_context io;
  net::thread_pool pool(1);
  std::pair<int, int> seen{-1, -1}, seen_ex{-1, -1}, in_c{-1, -1}, in_thread{-1, -1};
  ctxvars::context c;
  c.run([&] {
    (void)iso.set(5);
    (void)mapped.set(5);
    cx::co_spawn(io, read_into(iso, mapped, seen), net::detached);
    cx::co_spawn(io.get_executor(), read_into(iso, mapped, seen_ex), net::detached);
  });
  cx::co_spawn(io, c.copy(), read_into(iso, mapped, in_c), net::detached);  // in a context given: no fork
  cx::co_spawn(io, c.copy(), [&]() -> awaitable<void> {
    auto read_both = [&] { return std::pair(iso.get(), mapped.get()); };
    in_thread = co_await cx::to_thread(pool, read_both);
  }, net::detached);
  io.run();
  pool.join();
  EXPECT_EQ(seen, std::pair(0, 6));
  EXPECT_EQ(seen_ex, std::pair(0, 6));
  EXPECT_EQ(in_c, std::pair(5, 5));
  EXPECT_EQ(in_thread, std::pair(0, 6));
}

TEST(AsioFlow, CoSpawnWithAThrowingOnForkThrowsAndNothingRuns) {
  ctxvars::context_var<int> mapped("mapped", 0,
                                   ctxvars::on_fork([](const int&) -> int { throw std::runtime_error("f"); }));
  ctxvars::context_var<int> iso("iso", 0, ctxvars::flow::isolate);
  net::io_context io;
  std::pair<int, int> seen{-1, -1};
  ctxvars::context().run([&] {
    (void)mapped.set(1);
    EXPECT_THROW(cx::co_spawn(io, read_into(iso, mapped, seen), net::detached), std::runtime_error);
  });
  io.run();
  EXPECT_EQ(seen, std::pair(-1, -1));
}

}  // namespace

// ---- attacks on the merged adapter (review after issue 17) -------------------

namespace {

// A deferred operation bound to another executor, awaited later: initiated
// inside the task's step, so its resumption must follow the task too.
TEST_F(Follow, ADeferredOperationBoundToAnotherExecutorFollowsWhenAwaited) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
#if defined(CTXVARS_TEST_BOOST_ASIO)
    co_await net::post(net::bind_executor(pool, net::deferred));  // awaited directly (Boost >= 1.80)
    p.check(id, "co_await post(bind_executor(pool, deferred))");
    auto op = net::post(net::bind_executor(pool, net::experimental::deferred));
    co_await std::move(op)(use_awaitable);
    p.check(id, "post(bind_executor(pool, experimental::deferred))(use_awaitable)");
#else
    auto op = net::post(net::bind_executor(pool, net::experimental::deferred));
    co_await std::move(op)(use_awaitable);
    p.check(id, "post(bind_executor(pool, deferred))(use_awaitable)");
#endif
    net::steady_timer t(co_await net::this_coro::executor, 1ms);
    auto wait = t.async_wait(net::bind_executor(other, net::experimental::deferred));
    co_await std::move(wait)(use_awaitable);
    p.check(id, "timer wait(bind_executor(other, deferred))(use_awaitable)");
  });
}

// A task's value whose destructor writes a context variable; the io_context
// is destroyed while the task is suspended.
struct writes_on_destruction {
  int* destroyed;
  ~writes_on_destruction() {
    ++*destroyed;
    (void)rid.set(4242);
  }
};

TEST(AsioFollowAttack, ATaskDestroyedWithItsIoContextLeaksNothingIntoTheDestroyingThread) {
  int destroyed = 0;
  {
    net::thread_pool pool(1);
    {
      net::io_context io;
      for (int i = 0; i < 3; ++i) {
        cx::co_spawn(io, [&destroyed, &pool, i]() -> awaitable<void> {
          (void)rid.set(i);
          writes_on_destruction w{&destroyed};
          auto big = std::make_unique<std::vector<int>>(1000, i);
          net::steady_timer t(co_await net::this_coro::executor, 1h);
          if (i == 1) co_await net::post(net::bind_executor(pool, use_awaitable));
          co_await t.async_wait(use_awaitable);
        }, net::detached);
      }
      io.run_for(20ms);
    }
    pool.join();
  }
  EXPECT_EQ(destroyed, 3);
  EXPECT_EQ(rid.get(), -1) << "a frame destroyed with its io_context wrote into the destroying thread's context";
}

// An io_context stopped with tasks pending, then restarted: they go on in their contexts.
TEST(AsioFollowAttack, AStoppedIoContextRestartedResumesTasksInTheirContexts) {
  net::io_context io;
  net::thread_pool pool(2);
  std::atomic<int> wrong{0}, done{0};
  for (int i = 0; i < 8; ++i) {
    cx::co_spawn(io, [&, i]() -> awaitable<void> {
      (void)rid.set(i);
      for (int k = 0; k < 20; ++k) {
        co_await net::post(net::bind_executor(pool, use_awaitable));
        if (rid.get() != i) ++wrong;
        co_await net::post(io.get_executor(), use_awaitable);
        if (rid.get() != i) ++wrong;
      }
      ++done;
    }, net::detached);
  }
  auto guard = net::make_work_guard(io);
  std::thread stopper([&] {
    for (int k = 0; k < 5; ++k) {
      std::this_thread::sleep_for(1ms);
      io.stop();
    }
  });
  for (int round = 0; round < 200 && done.load() < 8; ++round) {
    io.restart();
    io.run_for(2ms);
    EXPECT_EQ(rid.get(), -1);
  }
  stopper.join();
  guard.reset();
  io.restart();
  io.run();
  EXPECT_EQ(done.load(), 8);
  EXPECT_EQ(wrong.load(), 0);
  pool.join();
}

// A blocking.always executor must have run the function when execute returns.
TEST(AsioFollowAttack, BlockingAlwaysRunsTheFunctionBeforeExecuteReturnsEvenIfTheContextIsBusy) {
  net::thread_pool pool(1);
  ctxvars::context c;
  std::atomic<bool> inside{false}, release{false};
  std::thread holder([&] {
    c.run([&] {
      inside = true;
      while (!release.load()) std::this_thread::yield();
    });
  });
  while (!inside.load()) std::this_thread::yield();
  cx::context_executor<net::thread_pool::executor_type> cex(pool.get_executor(), c);
  auto bex = net::require(cex, net::execution::blocking.always);
  std::atomic<int> ran{0};
  std::thread releaser([&] {
    std::this_thread::sleep_for(100ms);
    release = true;
  });
  net::execution::execute(bex, [&] { ++ran; });
  EXPECT_EQ(ran.load(), 1) << "execute(blocking.always) returned before its function ran";
  releaser.join();
  holder.join();
  pool.join();
}

}  // namespace

// ---- attacks, second batch -------------------------------------------------

namespace {

// A minimal executor of the standard concept (execute, ==, the context query,
// blocking.never accepted), running functions on a thread_pool.
struct minimal_executor {
  net::thread_pool* pool;
  template <class F>
  void execute(F f) const {
    net::execution::execute(pool->get_executor(), std::move(f));  // not post: it would use f's associated executor
  }
  net::execution_context& query(net::execution::context_t) const noexcept { return *pool; }
  static constexpr net::execution::blocking_t query(net::execution::blocking_t) noexcept {
    return net::execution::blocking.never;
  }
  minimal_executor require(net::execution::blocking_t::never_t) const noexcept { return *this; }
  friend bool operator==(const minimal_executor& a, const minimal_executor& b) noexcept { return a.pool == b.pool; }
};

// An allocator that counts (the executors' allocator property).
template <class T>
struct counting_allocator {
  using value_type = T;
  std::atomic<int>* n;
  explicit counting_allocator(std::atomic<int>* c) noexcept : n(c) {}
  template <class U>
  counting_allocator(const counting_allocator<U>& o) noexcept : n(o.n) {}
  T* allocate(std::size_t k) {
    ++*n;
    return std::allocator<T>().allocate(k);
  }
  void deallocate(T* p, std::size_t k) { std::allocator<T>().deallocate(p, k); }
  template <class U>
  bool operator==(const counting_allocator<U>& o) const noexcept { return n == o.n; }
  template <class U>
  bool operator!=(const counting_allocator<U>& o) const noexcept { return n != o.n; }
};

TEST_F(Follow, EveryKindOfBoundExecutor) {
  minimal_executor mini{&pool};
  std::atomic<int> allocs{0};
  auto with_alloc = net::require(pool.get_executor(), net::execution::allocator(counting_allocator<void>(&allocs)));
  run_tasks([&, this](int id) -> awaitable<void> {
    (void)rid.set(id);
    co_await net::post(net::bind_executor(mini, use_awaitable));
    p.check(id, "a minimal user executor");
    co_await net::post(net::bind_executor(with_alloc, use_awaitable));
    p.check(id, "a pool executor with a custom allocator");
    co_await net::post(net::bind_executor(net::system_executor(), use_awaitable));
    p.check(id, "system_executor");
    co_await net::post(net::bind_executor(net::any_io_executor(net::make_strand(pool)), use_awaitable));
    p.check(id, "any_io_executor holding a strand of the pool");
    co_await net::post(net::bind_executor(net::make_strand(net::any_io_executor(other.get_executor())), use_awaitable));
    p.check(id, "a strand of any_io_executor of another io_context");
    co_await net::post(net::bind_allocator(std::allocator<void>(), net::bind_executor(pool, use_awaitable)));
    p.check(id, "bind_allocator around bind_executor");
  });
}

TEST(AsioFollowAttack, TasksOnEveryKindOfExecutorKeepTheirContexts) {
  net::thread_pool pool(2);
  net::io_context io;
  minimal_executor mini{&pool};
  std::atomic<int> wrong{0}, done{0};
  auto body = [&](int id) {
    return [&, id]() -> awaitable<void> {
      (void)rid.set(id);
      for (int i = 0; i < 5; ++i) {
        co_await net::post(co_await net::this_coro::executor, use_awaitable);
        if (rid.get() != id) ++wrong;
        co_await net::post(net::bind_executor(io, use_awaitable));
        if (rid.get() != id) ++wrong;
      }
      ++done;
    };
  };
  auto work = net::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  cx::co_spawn(mini, body(1), net::detached);
  cx::co_spawn(net::system_executor(), body(2), net::detached);
  cx::co_spawn(net::make_strand(net::system_executor()), body(3), net::detached);
  cx::co_spawn(net::any_io_executor(net::make_strand(pool)), body(4), net::detached);
  auto f = cx::co_spawn(pool, body(5), net::use_future);
  f.get();
  while (done.load() < 5) std::this_thread::sleep_for(1ms);
  work.reset();
  io_thread.join();
  pool.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(rid.get(), -1);
}

// Exceptions thrown by the task body at each stage: before any suspension,
// after a hop to a pool, after a resumption on the task's own executor.
TEST(AsioFollowAttack, ExceptionsFromTheBodyAtEachStageReachTheHandlerOutsideTheContext) {
  net::io_context io;
  net::thread_pool pool(1);
  std::vector<std::string> seen;
  std::vector<int> rid_in_handler;
  for (int stage = 0; stage < 3; ++stage) {
    cx::co_spawn(io, [&pool, stage]() -> awaitable<int> {
      (void)rid.set(50 + stage);
      if (stage == 0) throw std::runtime_error("stage 0");
      co_await net::post(net::bind_executor(pool, use_awaitable));
      if (stage == 1) throw std::runtime_error("stage 1");
      co_await net::post(co_await net::this_coro::executor, use_awaitable);
      throw std::runtime_error("stage 2");
    }, [&](std::exception_ptr e, int) {
      rid_in_handler.push_back(rid.get());
      try {
        std::rethrow_exception(e);
      } catch (const std::runtime_error& x) {
        seen.push_back(x.what());
      }
    });
  }
  io.run();
  pool.join();
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"stage 0", "stage 1", "stage 2"}));
  EXPECT_EQ(rid_in_handler, (std::vector<int>{-1, -1, -1}));
  EXPECT_EQ(rid.get(), -1);
}

// A handler bound to the task's own executor throws out of io.run(); the loop
// is run again: the thread is back in its own context, and the task goes on in its.
TEST(AsioFollowAttack, AHandlerThrowingOutOfRunLeavesTheThreadInItsOwnContext) {
  net::io_context io;
  int after = -2;
  cx::co_spawn(io, [&]() -> awaitable<void> {
    (void)rid.set(70);
    auto ex = co_await net::this_coro::executor;
    net::post(ex, [] {
      (void)rid.set(71);
      throw std::runtime_error("handler");
    });
    co_await net::post(ex, use_awaitable);
    after = rid.get();
  }, net::detached);
  int threw = 0;
  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::runtime_error&) {
      ++threw;
      EXPECT_EQ(rid.get(), -1) << "the thread kept the task's context after an exception";
    }
  }
  EXPECT_EQ(threw, 1);
  EXPECT_EQ(after, 71);
  EXPECT_EQ(rid.get(), -1);
}

// Values whose copy throws, and over-aligned values, set inside handlers
// running in the task's context.
struct alignas(64) wide {
  int v = 0;
};
struct throwing_copy {
  int v = 0;
  throwing_copy() = default;
  explicit throwing_copy(int x) : v(x) {}
  throwing_copy(const throwing_copy& o) : v(o.v) {
    if (o.v < 0) throw std::runtime_error("copy");
  }
  throwing_copy& operator=(const throwing_copy&) = default;
};
ctxvars::context_var<wide> wide_var("wide", wide{});
ctxvars::context_var<throwing_copy> throwing_var("throwing", throwing_copy{});

TEST_F(Follow, ThrowingAndOverAlignedValuesSetInsideHandlers) {
  run_tasks([this](int id) -> awaitable<void> {
    (void)rid.set(id);
    (void)wide_var.set(wide{id});
    co_await net::post(net::bind_executor(pool, use_awaitable));
    EXPECT_EQ(wide_var.get().v, id);
    (void)throwing_var.set(throwing_copy(id));
    bool threw = false;
    try {
      (void)throwing_var.set(throwing_copy(-1));
      throwing_copy c = throwing_var.get();
      (void)c;
    } catch (const std::runtime_error&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    co_await net::post(net::bind_executor(other, use_awaitable));
    p.check(id, "after throwing values on the pool");
    (void)wide_var.set(wide{id + 1});
    co_await net::post(co_await net::this_coro::executor, use_awaitable);
    EXPECT_EQ(wide_var.get().v, id + 1);
    p.check(id, "back home");
  });
  EXPECT_EQ(wide_var.get().v, 0);
}

// A task spawned from a plain handler that runs inside another task's context.
TEST_F(Follow, ATaskSpawnedFromAHandlerInsideAnotherTasksContext) {
  std::atomic<int> child_saw{-2}, child_after{-2};
  run_tasks([&, this](int id) -> awaitable<void> {
    (void)rid.set(id);
    auto ex = co_await net::this_coro::executor;
    net::steady_timer t(ex, 1ms);
    t.async_wait(net::bind_executor(ex, [&, this, id](net_error_code) {
      if (rid.get() != id) ++p.wrong;
      cx::co_spawn(pool, [&, id]() -> awaitable<void> {
        child_saw = rid.get();
        (void)rid.set(900 + id);
        co_await net::post(net::bind_executor(other, use_awaitable));
        child_after = rid.get();
      }, net::detached);
      (void)rid.set(id);  // unchanged by the child
    }));
    net::steady_timer t2(ex, 20ms);
    co_await t2.async_wait(use_awaitable);
    p.check(id, "after spawning from a handler");
  }, 1);
  EXPECT_EQ(child_saw.load(), 0);
  EXPECT_EQ(child_after.load(), 900);
}

}  // namespace

namespace {

// Threads join and leave io_context::run (short-lived threads, run_for)
// while many tasks share one strand and hop to a pool: every resumption in
// its task's context, the strand's exclusivity kept, nothing left behind.
TEST(AsioFollowAttack, ThreadsComingAndGoingWhileManyTasksShareOneStrand) {
  net::io_context io;
  net::thread_pool pool(2);
  auto strand = net::make_strand(io);
  constexpr int tasks = 40, rounds = 15;
  std::atomic<int> wrong{0}, overlap{0}, inside{0}, done{0};
  for (int id = 0; id < tasks; ++id) {
    cx::co_spawn(strand, [&, id]() -> awaitable<void> {
      (void)rid.set(id);
      for (int r = 0; r < rounds; ++r) {
        if (inside.fetch_add(1) != 0) ++overlap;
        if (rid.get() != id) ++wrong;
        (void)rid.set(id);
        inside.fetch_sub(1);
        if (r % 3 == 0) {
          co_await net::post(net::bind_executor(pool, use_awaitable));  // off the strand...
          if (rid.get() != id) ++wrong;
        }
        co_await net::post(co_await net::this_coro::executor, use_awaitable);  // ...and back on it
        if (rid.get() != id) ++wrong;
      }
      ++done;
    }, net::detached);
  }
  auto work = net::make_work_guard(io);
  std::vector<std::thread> gone;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (done.load() < tasks && std::chrono::steady_clock::now() < until) {
    for (int k = 0; k < 3; ++k)
      gone.emplace_back([&io, k] {
        io.run_for(std::chrono::milliseconds(1 + k));
        if (rid.get() != -1) std::abort();  // a short-lived thread kept a task's value
      });
    for (auto& t : gone) t.join();
    gone.clear();
  }
  work.reset();
  io.run();
  pool.join();
  EXPECT_EQ(done.load(), tasks);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(overlap.load(), 0) << "two steps of the strand ran at once";
  EXPECT_EQ(rid.get(), -1);
}

}  // namespace

namespace {

// A task cancelled from outside through the slot bound to co_spawn's token
// (terminal and partial), while suspended on a timer (its own executor, or
// bound to a pool). The same with plain asio::co_spawn, for reference.
template <class Spawn>
void cancel_a_task(Spawn spawn, bool ours, bool bound, net::cancellation_type type, const char* what) {
  net::thread_pool pool(1);
  int after = -2;
  bool aborted = false, finished = false;
  // A coroutine lets only terminal cancellation through by default: a
  // partial one leaves the timer waiting, and the io_context is destroyed
  // with the task suspended (before the pool joins: the bound wait keeps
  // the pool's work count).
  const bool terminal = type == net::cancellation_type::terminal;
  {
    net::io_context io;
    net::cancellation_signal sig;
    spawn(io, [&]() -> awaitable<void> {
      (void)rid.set(44);
      net::steady_timer t(co_await net::this_coro::executor, 1h);
      net_error_code ec;
      if (bound)
        std::tie(ec) = co_await t.async_wait(as_tuple(net::bind_executor(pool, use_awaitable)));
      else
        std::tie(ec) = co_await t.async_wait(as_tuple(use_awaitable));
      aborted = ec == net::error::operation_aborted;
      after = rid.get();
    }, net::bind_cancellation_slot(sig.slot(), [&](std::exception_ptr) { finished = true; }));
    net::steady_timer later(io, 5ms);
    later.async_wait([&](net_error_code) { sig.emit(type); });
    io.run_for(terminal ? 2s : 50ms);
  }
  pool.join();
  EXPECT_EQ(finished, terminal) << what;
  EXPECT_EQ(aborted, terminal) << what;
  if (ours) {
    EXPECT_EQ(after, terminal ? 44 : -2) << what;
    EXPECT_EQ(rid.get(), -1) << what;
  }
}

TEST(AsioFollowAttack, ATaskCancelledThroughItsCompletionTokensSlot) {
  auto plain = [](auto& io, auto f, auto token) { net::co_spawn(io, f, std::move(token)); };
  auto ours = [](auto& io, auto f, auto token) { cx::co_spawn(io, f, std::move(token)); };
  for (auto type : {net::cancellation_type::terminal, net::cancellation_type::partial}) {
    ctxvars::context().run([&] {  // plain co_spawn's writes land in this thread's context: a throwaway one
      cancel_a_task(plain, false, false, type, "plain co_spawn, own executor");
      cancel_a_task(plain, false, true, type, "plain co_spawn, bound to the pool");
    });
    cancel_a_task(ours, true, false, type, "ctxvars co_spawn, own executor");
    cancel_a_task(ours, true, true, type, "ctxvars co_spawn, bound to the pool");
  }
}

}  // namespace
