#include "ctxvars/task.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "counted.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

context_var<int> rid("rid", -1);

// Threads started by resume_on_new_thread, joined after each test.
struct spawned_threads {
  std::mutex m;
  std::vector<std::thread> all;
  void add(std::thread t) {
    std::lock_guard lk(m);
    all.push_back(std::move(t));
  }
  void join_all() {
    for (;;) {
      std::vector<std::thread> batch;
      {
        std::lock_guard lk(m);
        batch.swap(all);
      }
      if (batch.empty()) return;
      for (auto& t : batch) t.join();
    }
  }
};
spawned_threads& threads() {
  static spawned_threads s;
  return s;
}
struct join_after_each_test : ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo&) override { threads().join_all(); }
};
const bool listener_installed = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new join_after_each_test);
  return true;
}();

// An arbitrary (non-task) awaitable: resumes the coroutine on a new thread.
struct resume_on_new_thread {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const { threads().add(std::thread([h] { h.resume(); })); }
  void await_resume() const noexcept {}
};
// An awaitable whose await_suspend declines to suspend.
struct declines_to_suspend {
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<>) const noexcept { return false; }
  int await_resume() const noexcept { return 5; }
};

task<int> read_rid() { co_return rid.get(); }
task<void> set_rid(int v) {
  (void)rid.set(v);
  co_return;
}

TEST(Task, SpawnedTaskRunsInACopyOfItsCreatorsContext) {
  thread_pool pool(2);
  context().run([&] {
    (void)rid.set(7);
    auto s = spawn(pool, [](thread_pool& p) -> task<int> {
      co_await p.schedule();
      const int seen = rid.get();
      (void)rid.set(100);  // stays in the task's copy
      co_return seen;
    }(pool));
    EXPECT_EQ(s.get(), 7);
    EXPECT_EQ(rid.get(), 7);
  });
}

TEST(Task, SpawnedTaskDoesNotSeeLaterChangesOfItsCreator) {
  thread_pool pool(1);
  context().run([&] {
    (void)rid.set(1);
    std::atomic<bool> go{false};
    auto s = spawn(pool, [](std::atomic<bool>& g) -> task<int> {
      while (!g.load()) co_await resume_on_new_thread{};
      co_return rid.get();
    }(go));
    (void)rid.set(2);
    go = true;
    EXPECT_EQ(s.get(), 1);
  });
}

TEST(Task, AnAwaitedTaskSharesItsAwaitersContext) {
  EXPECT_EQ(sync_wait([]() -> task<int> {
              (void)rid.set(1);
              co_await set_rid(2);  // direct await: its set is ours
              co_return co_await read_rid();
            }()),
            2);
}

TEST(Task, ContextFollowsEveryTaskAcrossThreadsWithoutBleeding) {
  thread_pool pool(4);
  std::atomic<int> bad{0};
  std::vector<spawned<int>> tasks;
  for (int i = 0; i < 200; ++i) {
    auto t = [](thread_pool& p, int id, std::atomic<int>& b) -> task<int> {
      (void)rid.set(id);
      for (int k = 0; k < 20; ++k) {
        if (k % 3 == 0)
          co_await resume_on_new_thread{};
        else
          co_await p.schedule();
        if (rid.get() != id) ++b;
      }
      co_return rid.get();
    }(pool, i, bad);
    tasks.push_back(spawn(pool, std::move(t)));
  }
  for (int i = 0; i < 200; ++i) EXPECT_EQ(tasks[i].get(), i);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(rid.get(), -1);
}

TEST(Task, WhileATaskIsSuspendedTheThreadHasItsOwnContext) {
  thread_pool pool(1);
  std::atomic<int> seen_by_other_work{0};
  auto s = spawn(pool, [](thread_pool& p, std::atomic<int>& seen) -> task<void> {
    co_await p.schedule();
    (void)rid.set(42);
    // While we are suspended, other work runs on the single pool thread.
    p.post([&seen] { seen = rid.get(); });
    co_await p.schedule();
    EXPECT_EQ(rid.get(), 42);
  }(pool, seen_by_other_work));
  s.get();
  EXPECT_EQ(seen_by_other_work.load(), -1);
}

TEST(Task, AnExplicitContextKeepsTheTasksSets) {
  thread_pool pool(2);
  context c;
  spawn(pool, c, set_rid(9)).get();
  EXPECT_EQ(c.get(rid), 9);
  EXPECT_EQ(rid.get(), -1);
  EXPECT_FALSE(c.entered()) << "the task left its context before reporting completion";
  EXPECT_EQ(sync_wait(c, read_rid()), 9);
}

TEST(Task, ExceptionsPropagateToTheAwaiterAndToGet) {
  thread_pool pool(2);
  auto thrower = [](thread_pool& p) -> task<int> {
    co_await p.schedule();
    throw std::runtime_error("task failed");
  };
  EXPECT_THROW(spawn(pool, thrower(pool)).get(), std::runtime_error);
  EXPECT_THROW(sync_wait(thrower(pool)), std::runtime_error);
  const int r = sync_wait([](thread_pool& p, auto make) -> task<int> {
    (void)rid.set(3);
    try {
      co_await make(p);
    } catch (const std::runtime_error&) {
      co_return rid.get();  // still in our context after the failed child
    }
    co_return 0;
  }(pool, thrower));
  EXPECT_EQ(r, 3);
  EXPECT_EQ(rid.get(), -1);
}

TEST(Task, EnteringAContextInUseFailsTheTaskNotTheThread) {
  context c;
  c.run([&] { EXPECT_THROW(sync_wait(c, read_rid()), context_in_use_error); });
}

TEST(Task, CancellationIsCooperativeThroughTheStopToken) {
  thread_pool pool(1);
  auto s = spawn(pool, [](thread_pool& p) -> task<int> {
    int spins = 0;
    for (;;) {
      std::stop_token st = co_await this_task::stop_token();
      if (st.stop_requested()) co_return spins;
      ++spins;
      co_await p.schedule();
    }
  }(pool));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s.request_stop();
  EXPECT_GE(s.get(), 1);
}

TEST(Task, AwaitingASpawnedTaskFromATaskWorks) {
  thread_pool pool(2);
  const int r = sync_wait([](thread_pool& p) -> task<int> {
    (void)rid.set(1);
    auto child = spawn(p, [](thread_pool& q) -> task<int> {
      co_await q.schedule();
      (void)rid.set(rid.get() + 1);  // the child's copy
      co_return rid.get();
    }(p));
    const int c = co_await child;
    co_return c * 10 + rid.get();
  }(pool));
  EXPECT_EQ(r, 21);
}

TEST(Task, ArbitraryAwaitablesIncludingNonSuspendingOnesWork) {
  EXPECT_EQ(sync_wait([]() -> task<int> {
              (void)rid.set(8);
              const int five = co_await declines_to_suspend{};
              co_await std::suspend_never{};
              co_await resume_on_new_thread{};
              co_return five + rid.get();
            }()),
            13);
}

TEST(Task, AScopedSetHeldAcrossCoAwaitRestoresInTheTasksContext) {
  thread_pool pool(2);
  context c;
  spawn(pool, c, [](thread_pool& p) -> task<void> {
    (void)rid.set(1);
    {
      auto g = rid.scoped_set(2);
      co_await p.schedule();  // maybe another thread: the task's context follows
      co_await resume_on_new_thread{};
      EXPECT_EQ(rid.get(), 2);
    }
    EXPECT_EQ(rid.get(), 1);
  }(pool)).get();
  EXPECT_EQ(c.get(rid), 1);
}

// Misuse, documented: a plain coroutine (not a ctxvars::task) holding a
// scoped_set across a co_await that resumes on another thread. The guard's
// destructor then runs in that thread's context, where its token does not
// belong: it does nothing, and the value stays in the original context.
struct plain_coro {
  struct promise_type {
    plain_coro get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
};
plain_coro guard_across_suspend(std::atomic<int>& seen_after, std::atomic<bool>& finished) {
  {
    auto g = rid.scoped_set(55);
    co_await resume_on_new_thread{};
    seen_after = rid.get();  // a new thread: its own (empty) context
  }  // the guard dies here, on the new thread
  finished = true;
}

TEST(Task, AScopedSetInAPlainCoroutineResumedElsewhereIsADocumentedNoOp) {
  context c;
  std::atomic<int> seen{0};
  std::atomic<bool> finished{false};
  c.run([&] { guard_across_suspend(seen, finished); });
  while (!finished.load()) std::this_thread::yield();
  EXPECT_EQ(seen.load(), -1);
  EXPECT_EQ(c.get(rid), 55) << "never reset: the guard died in another context";
}

TEST(Task, ACoroutineCreatedInsideRunDoesNotCaptureThatContext) {
  context c;
  c.run([] { (void)rid.set(1); });
  // Like Python's ctx.run(coro_fn): run only creates the (lazy) task.
  auto t = c.run([] { return read_rid(); });
  EXPECT_EQ(sync_wait(std::move(t)), -1) << "it runs in a copy of the context current at sync_wait";
}

TEST(Task, AVariableDestroyedWhileATaskHoldsItsValueIsSafe) {
  thread_pool pool(1);
  const long before = counted::alive.load();
  auto var = std::make_unique<context_var<counted>>("short_lived");
  std::atomic<bool> release{false}, was_set{false};
  context c;
  auto s = spawn(pool, c, [](context_var<counted>& v, std::atomic<bool>& r, std::atomic<bool>& done_set,
                             thread_pool& p) -> task<int> {
    (void)v.set(counted(3));
    done_set = true;  // from here on the task never touches the variable again
    while (!r.load()) co_await p.schedule();
    co_return 0;
  }(*var, release, was_set, pool));
  while (!was_set.load()) std::this_thread::yield();
  var.reset();  // destroyed while the task (and its context) still hold its value
  release = true;
  EXPECT_EQ(s.get(), 0);
  EXPECT_EQ(c.size(), 1u);
  for (auto e : c) EXPECT_EQ(e.name(), "short_lived");
  c = context();
  EXPECT_EQ(counted::alive.load(), before);
}

TEST(Task, ATaskThatNeverRunsIsDestroyedWithoutLeaks) {
  const long before = counted::alive.load();
  {
    auto t = [](counted c) -> task<int> { co_return c.v; }(counted(1));
    EXPECT_EQ(counted::alive.load(), before + 1);
  }
  EXPECT_EQ(counted::alive.load(), before);
}

}  // namespace
