// thread_pool (thread_pool.hpp): move-only jobs, and the destructor that
// helps when its thread holds a context (issue 17).
#include "ctxvars/thread_pool.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "counted.hpp"
#include "ctxvars/ctxvars.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

context_var<int> rid("rid", -1);

TEST(ThreadPool, DestroyedInsideAContextItRunsQueuedWorkItselfInAFreshContext) {
  context c;
  std::atomic<int> saw_default{0}, jobs{0}, on_destroyer{0};
  std::atomic<bool> go{false};
  const std::thread::id me = std::this_thread::get_id();
  std::thread releaser;
  c.run([&] {
    (void)rid.set(5);
    thread_pool p(1);
    std::atomic<bool> blocking{false};
    p.post([&] {
      blocking = true;
      while (!go) std::this_thread::yield();  // keeps the one worker busy while ~thread_pool runs
    });
    while (!blocking) std::this_thread::yield();
    for (int i = 0; i < 50; ++i)
      p.post([&] {
        if (rid.get() == -1) ++saw_default;
        if (std::this_thread::get_id() == me) ++on_destroyer;
        (void)rid.set(42);
        (void)rid.set(-1);  // a worker's own context: leave it as found
        ++jobs;
      });
    releaser = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      go = true;
    });
  });
  releaser.join();
  EXPECT_EQ(jobs.load(), 50);
  EXPECT_GT(on_destroyer.load(), 0) << "the destroying thread did not help";
  EXPECT_EQ(saw_default.load(), 50) << "helped work saw the destroying thread's context";
  EXPECT_EQ(c.get(rid), 5) << "helped work wrote into the context the destroying thread held";
}


TEST(ThreadPool, PostAcceptsMoveOnlyCallablesSmallAndLarge) {
  std::atomic<int> sum{0};
  {
    thread_pool p(2);
    p.post([u = std::make_unique<int>(1), &sum] { sum += *u; });
    std::array<char, 200> big{};
    big[199] = 2;
    p.post([u = std::make_unique<int>(3), big, &sum] { sum += *u + big[199]; });
    std::promise<int> pr;
    std::future<int> f = pr.get_future();
    p.post([pr = std::move(pr)]() mutable { pr.set_value(7); });
    EXPECT_EQ(f.get(), 7);
  }
  EXPECT_EQ(sum.load(), 6);
}

TEST(ThreadPool, QueuedCallablesAreDestroyedOnceAndNeverCopied) {
  const long before = counted::alive.load();
  counted::reset_counts();
  {
    thread_pool p(1);
    for (int i = 0; i < 10; ++i) p.post([c = counted(i)] { (void)c; });
  }
  EXPECT_EQ(counted::alive.load(), before);
  EXPECT_EQ(counted::copies.load(), 0);
}

TEST(ThreadPool, AMoveAssignedFunctionDestroysItsOldCallableLastAndOnlyOnce) {
  using detail::unique_function;
  std::vector<int> log;
  struct noisy {
    std::vector<int>* log;
    int id;
    std::unique_ptr<int> owned = std::make_unique<int>(0);  // move-only
    void operator()() { log->push_back(id); }
    noisy(std::vector<int>* l, int i) : log(l), id(i) {}
    noisy(noisy&&) noexcept = default;
    ~noisy() {
      if (owned) log->push_back(-id);
    }
  };
  unique_function a(noisy(&log, 1));
  unique_function b(noisy(&log, 2));
  std::array<char, 100> big{};
  unique_function c([&log, big] { log.push_back(3 + big[0]); });  // on the heap
  a();
  a = std::move(b);  // 1 dies
  a();
  b = std::move(c);
  b();
  EXPECT_FALSE(static_cast<bool>(c));
  a = unique_function();  // 2 dies
  EXPECT_EQ(log, (std::vector<int>{1, -1, 2, 3, -2}));
}

}  // namespace
