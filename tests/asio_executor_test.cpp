// The Asio adapter with every executor kind a user passes, the waiting rule
// (no step waits for a context while its thread holds another), and what a
// finished task leaves behind. Compiled for standalone Asio and Boost.Asio.
#include "asio_test_net.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using net::awaitable;
using net::use_awaitable;

namespace {

ctxvars::context_var<int> rid("rid", -1);

// Waits (bounded) for a future; a hang is reported as a failure, then the
// process stops (the threads stuck in it cannot be joined).
template <class T>
T get_or_die(std::future<T>& f, const char* what) {
  if (f.wait_for(120s) != std::future_status::ready) {
    ADD_FAILURE() << what << ": did not finish within 120 s (deadlock or livelock)";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  return f.get();
}

// ---- every executor kind --------------------------------------------------------------

// One kind of executor: how to make it, and how to tell that code runs on it.
struct executor_kind {
  const char* name;
  bool serial;  // a strand: handlers never run concurrently
};

struct shared_counts {
  std::atomic<int> off_executor{0}, wrong_value{0}, leaked{0}, children_done{0};
  long serial_counter = 0;  // non-atomic on purpose: TSan proves the strand
  std::atomic<long> counter{0};
  std::promise<void> all_done;
};

constexpr int parents = 3, children = 6, steps = 30;

template <class Ex, class OnIt>
awaitable<void> child(int id, std::shared_ptr<shared_counts> s, OnIt on_it, bool serial) {
  if (rid.get() != 1000) ++s->wrong_value;  // a copy of the parent's context
  (void)rid.set(id);
  for (int i = 0; i < steps; ++i) {
    co_await net::post(co_await net::this_coro::executor, use_awaitable);
    if (!on_it()) ++s->off_executor;
    if (rid.get() != id) ++s->wrong_value;
    if (serial)
      ++s->serial_counter;
    else
      ++s->counter;
  }
  if (s->children_done.fetch_add(1) + 1 == parents * children) s->all_done.set_value();
}

template <class Ex, class OnIt>
awaitable<void> parent(int p, std::shared_ptr<shared_counts> s, OnIt on_it, bool serial) {
  (void)rid.set(1000);
  auto ex = co_await net::this_coro::executor;  // any_io_executor holding the task's executor
  for (int c = 0; c < children; ++c)
    cx::co_spawn(ex, child<Ex>(p * 100 + c, s, on_it, serial), net::detached);
  co_await net::post(ex, use_awaitable);
  if (!on_it()) ++s->off_executor;
  if (rid.get() != 1000) ++s->leaked;  // no child's set shows in the parent
}

// Spawns parents on `ex` (also wrapped in any_io_executor), each spawning
// children from inside itself, and checks every step ran on the executor.
template <class Ex, class OnIt>
void check_children_stay_on(Ex ex, OnIt on_it, bool serial, const std::function<void()>& drive) {
  for (int wrapped = 0; wrapped < 2; ++wrapped) {
    SCOPED_TRACE(wrapped ? "wrapped in any_io_executor" : "as it is");
    auto s = std::make_shared<shared_counts>();
    auto done = s->all_done.get_future();
    for (int p = 0; p < parents; ++p) {
      if (wrapped)
        cx::co_spawn(net::any_io_executor(ex), parent<Ex>(p, s, on_it, serial), net::detached);
      else
        cx::co_spawn(ex, parent<Ex>(p, s, on_it, serial), net::detached);
    }
    drive();
    get_or_die(done, "children");
    EXPECT_EQ(s->off_executor.load(), 0) << "every step runs on the executor given";
    EXPECT_EQ(s->wrong_value.load(), 0);
    EXPECT_EQ(s->leaked.load(), 0);
    const long total = serial ? s->serial_counter : s->counter.load();
    EXPECT_EQ(total, long{parents} * children * steps);
  }
}

struct io_runner {
  net::io_context io{2};
  void operator()() {
    io.restart();
    std::thread t([this] { io.run(); });
    io.run();
    t.join();
  }
};

TEST(AsioExecutors, IoContextExecutorKeepsChildrenOnIt) {
  io_runner r;
  auto ex = r.io.get_executor();
  check_children_stay_on(ex, [ex] { return ex.running_in_this_thread(); }, false, std::ref(r));
}

TEST(AsioExecutors, StrandOfAnIoContextKeepsChildrenOnTheStrand) {
  io_runner r;
  auto st = net::make_strand(r.io);
  check_children_stay_on(st, [st] { return st.running_in_this_thread(); }, true, std::ref(r));
}

TEST(AsioExecutors, StrandOfAnyIoExecutorKeepsChildrenOnTheStrand) {
  io_runner r;
  auto st = net::make_strand(net::any_io_executor(r.io.get_executor()));
  check_children_stay_on(st, [st] { return st.running_in_this_thread(); }, true, std::ref(r));
}

TEST(AsioExecutors, ThreadPoolExecutorKeepsChildrenInThePool) {
  net::thread_pool pool(2);
  auto ex = pool.get_executor();
  check_children_stay_on(ex, [ex] { return ex.running_in_this_thread(); }, false, [] {});
  pool.join();
}

TEST(AsioExecutors, StrandOfAThreadPoolKeepsChildrenOnTheStrand) {
  net::thread_pool pool(2);
  auto st = net::make_strand(pool.get_executor());
  check_children_stay_on(st, [st] { return st.running_in_this_thread(); }, true, [] {});
  pool.join();
}

TEST(AsioExecutors, SystemExecutorRunsTasksAndTheirChildren) {
  check_children_stay_on(net::system_executor(), [] { return true; }, false, [] {});
}

TEST(AsioExecutors, AnyIoExecutorHoldingASystemExecutorDoesNotCrash) {
  net::any_io_executor ex(net::system_executor{});
  (void)rid.set(5);
  auto f = cx::co_spawn(ex, []() -> awaitable<int> {
    auto inner = co_await net::this_coro::executor;
    co_return co_await cx::co_spawn(inner, []() -> awaitable<int> { co_return rid.get(); }, use_awaitable);
  }, net::use_future);
  EXPECT_EQ(get_or_die(f, "system executor"), 5);
  (void)rid.set(-1);
}

// Issue 9 item 5: a coroutine on a strand (its this_coro::executor is an
// any_io_executor holding the strand) spawning children: all on the strand.
TEST(AsioExecutors, ChildrenSpawnedFromACoroutineOnAStrandNeverRace) {
  net::io_context io;
  auto st = net::make_strand(io);
  long counter = 0;  // non-atomic: the strand serialises, TSan checks it
  cx::co_spawn(st, [](long& n) -> awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    for (int c = 0; c < 16; ++c)
      cx::co_spawn(ex, [](long& m) -> awaitable<void> {
        for (int i = 0; i < 200; ++i) {
          ++m;
          co_await net::post(co_await net::this_coro::executor, use_awaitable);
        }
      }(n), net::detached);
  }(counter), net::detached);
  std::thread t([&] { io.run(); });
  io.run();
  t.join();
  EXPECT_EQ(counter, 16 * 200);
}

// ---- the waiting rule -----------------------------------------------------------------

awaitable<void> touch(int v) {
  (void)rid.set(v);
  co_return;
}

// Issue 9 item 2: tasks in c1 and c2 that each spawn into the other's context
// (co_spawn's first step is dispatched inline) used to wait on each other
// forever, each thread spinning while holding its own context.
TEST(AsioWaiting, TasksSpawningIntoEachOthersContextsDoNotLivelock) {
  for (int round = 0; round < 3; ++round) {
    net::io_context io(2);
    ctxvars::context c1, c2;
    auto cross = [](ctxvars::context other, int v) -> awaitable<void> {
      auto ex = co_await net::this_coro::executor;
      for (int i = 0; i < 300; ++i) {
        // Hold this context a moment, so that the other task's inline first
        // step finds it busy while this one tries to enter the other's.
        const auto until = std::chrono::steady_clock::now() + 20us;
        while (std::chrono::steady_clock::now() < until) {
        }
        cx::co_spawn(ex, other, touch(v), net::detached);
        co_await net::post(ex, use_awaitable);
      }
    };
    auto f1 = cx::co_spawn(io, c1, cross(c2, 2), net::use_future);
    auto f2 = cx::co_spawn(io, c2, cross(c1, 1), net::use_future);
    std::thread t1([&] { io.run(); }), t2([&] { io.run(); });
    get_or_die(f1, "task in c1");
    get_or_die(f2, "task in c2");
    t1.join();
    t2.join();
    EXPECT_EQ(c1.get(rid), 1);
    EXPECT_EQ(c2.get(rid), 2);
    EXPECT_FALSE(c1.entered());
    EXPECT_FALSE(c2.entered());
  }
}

// The first step of a task spawned into a context another thread is inside
// does not run inline: co_spawn returns at once, the spawning step goes on,
// and the child runs once the context is free.
TEST(AsioWaiting, TheFirstStepOfATaskSpawnedIntoABusyContextIsNotRunInline) {
  net::io_context io;
  ctxvars::context busy;
  std::promise<void> inside, spawn_returned;
  auto spawn_returned_f = spawn_returned.get_future();
  std::thread holder([&] {
    busy.run([&] {
      inside.set_value();
      // Leave only once the spawning step went past co_spawn (bounded).
      if (spawn_returned_f.wait_for(120s) != std::future_status::ready)
        ADD_FAILURE() << "co_spawn waited for a busy context while holding its own";
    });
  });
  inside.get_future().wait();
  bool child_ran_inline = true;
  auto f = cx::co_spawn(io, [](ctxvars::context b, std::promise<void>& sr, bool& inl) -> awaitable<int> {
    (void)rid.set(7);
    bool child_ran = false;
    cx::co_spawn(co_await net::this_coro::executor, b, [](bool& cr) -> awaitable<void> {
      cr = true;
      (void)rid.set(8);
      co_return;
    }(child_ran), net::detached);
    inl = child_ran;
    sr.set_value();
    co_await net::post(co_await net::this_coro::executor, use_awaitable);
    co_return rid.get();
  }(busy, spawn_returned, child_ran_inline), net::use_future);
  io.run();
  holder.join();
  EXPECT_EQ(get_or_die(f, "spawner"), 7);
  EXPECT_FALSE(child_ran_inline);
  EXPECT_EQ(busy.get(rid), 8) << "the child ran later, in the busy context";
}

// Tasks sharing one explicit context on a multi-threaded io_context are
// serialised, never concurrent inside it.
TEST(AsioWaiting, TasksSharingOneContextAreSerialised) {
  net::io_context io(2);
  ctxvars::context shared;
  long counter = 0;  // non-atomic: serialised by the context (TSan checks)
  for (int t = 0; t < 8; ++t)
    cx::co_spawn(io, shared, [](long& n) -> awaitable<void> {
      for (int i = 0; i < 100; ++i) {
        ++n;
        co_await net::post(co_await net::this_coro::executor, use_awaitable);
      }
    }(counter), net::detached);
  std::thread th([&] { io.run(); });
  io.run();
  th.join();
  EXPECT_EQ(counter, 800);
  EXPECT_FALSE(shared.entered());
}

// ---- a finished task leaves nothing behind ---------------------------------------

TEST(AsioCompletion, APlainCoroutineAwaitingATaskSeesItsOwnValuesAfter) {
  net::io_context io;
  auto f = net::co_spawn(io, []() -> awaitable<std::pair<int, int>> {
    (void)rid.set(1);  // the thread's own context: a plain Asio coroutine has no other
    const int child = co_await cx::co_spawn(co_await net::this_coro::executor, []() -> awaitable<int> {
      (void)rid.set(2);
      co_return rid.get();
    }(), use_awaitable);
    const int after = rid.get();
    (void)rid.set(-1);
    co_return std::pair{child, after};
  }(), net::use_future);
  io.run();
  EXPECT_EQ(f.get(), (std::pair<int, int>{2, 1}));
}

TEST(AsioCompletion, ACallbackTokenRunsInTheThreadsContextNotTheTasks) {
  for (int threads = 1; threads <= 2; ++threads) {
    net::io_context io;
    std::atomic<int> seen{0}, seen_after_throw{0};
    cx::co_spawn(io, []() -> awaitable<int> {
      (void)rid.set(2);
      co_await net::post(co_await net::this_coro::executor, use_awaitable);
      co_return 3;
    }(), [&](std::exception_ptr, int) { seen = rid.get(); });
    cx::co_spawn(io, []() -> awaitable<void> {
      (void)rid.set(4);
      co_await net::post(co_await net::this_coro::executor, use_awaitable);
      throw std::runtime_error("x");
    }(), [&](std::exception_ptr e) { seen_after_throw = e ? rid.get() : 0; });
    std::thread t;
    if (threads == 2) t = std::thread([&] { io.run(); });
    io.run();
    if (t.joinable()) t.join();
    EXPECT_EQ(seen.load(), -1);
    EXPECT_EQ(seen_after_throw.load(), -1);
  }
}

TEST(AsioCompletion, ALambdaTaskDestroysItsCapturesInItsOwnContext) {
  struct probe {
    int* seen;
    ~probe() {
      if (seen) *seen = rid.get();
    }
    probe(int* s) : seen(s) {}
    probe(probe&& o) noexcept : seen(std::exchange(o.seen, nullptr)) {}
  };
  net::io_context io;
  int seen = 0;
  cx::co_spawn(io, [p = probe(&seen)]() -> awaitable<void> {
    (void)rid.set(9);
    co_return;
  }, net::detached);
  io.run();
  EXPECT_EQ(seen, 9);
  EXPECT_EQ(rid.get(), -1);
}

// ---- gather ---------------------------------------------------------------------------

awaitable<void> set_and_wait(int v) {
  (void)rid.set(v);
  co_await net::post(co_await net::this_coro::executor, use_awaitable);
}
awaitable<int> value_of(int v) {
  co_await net::post(co_await net::this_coro::executor, use_awaitable);
  co_return v + rid.get();
}

TEST(AsioGather, VoidBranchesGiveMonostateAndOwnCopies) {
  net::io_context io;
  auto f = cx::co_spawn(io, []() -> awaitable<int> {
    (void)rid.set(10);
    auto [a, b, c] = co_await cx::gather(set_and_wait(1), value_of(5), set_and_wait(2));
    static_assert(std::is_same_v<decltype(a), std::monostate>);
    static_assert(std::is_same_v<decltype(c), std::monostate>);
    co_return b * 100 + rid.get();
  }(), net::use_future);
  io.run();
  EXPECT_EQ(f.get(), 15 * 100 + 10);
}

}  // namespace

// ---- `using namespace ctxvars;` ---------------------------------------------------------
// `asio` alone is then ambiguous (::asio or ctxvars::asio); code that does
// this writes ::asio:: (here net::, an alias of ::asio or ::boost::asio) and
// the adapter's full name.
namespace using_directive {
using namespace ctxvars;

context_var<int> uid("uid", 0);

TEST(AsioUsingNamespaceCtxvars, TheAdapterAndAsiosNamesStayUsable) {
  ::net::io_context io;
  (void)uid.set(3);
  auto f = ::cx::co_spawn(io, []() -> ::net::awaitable<int> { co_return uid.get(); }, ::net::use_future);
#if defined(CTXVARS_TEST_BOOST_ASIO)
  ::boost::asio::steady_timer t(io);
  auto g = ctxvars::boost_asio::co_spawn(io, []() -> ::boost::asio::awaitable<int> { co_return 4; }, ::boost::asio::use_future);
#else
  ::asio::steady_timer t(io);
  auto g = ctxvars::asio::co_spawn(io, []() -> ::asio::awaitable<int> { co_return 4; }, ::asio::use_future);
#endif
  io.run();
  EXPECT_EQ(f.get(), 3);
  EXPECT_EQ(g.get(), 4);
}
}  // namespace using_directive
