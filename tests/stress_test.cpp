// Stress, bounded in time: many threads and contexts, contexts handed between
// threads, contexts read while another thread runs in them, thousands of Asio
// tasks on a 4-thread io_context, bind across a thread pool. Each checks that
// no value shows up where it does not belong and that every value is
// destroyed exactly once (counted).
#include "ctxvars/ctxvars.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "counted.hpp"
#include "ctxvars/task.hpp"

using namespace ctxvars;
using ctxvars_test::counted;

namespace {

constexpr auto budget = std::chrono::milliseconds(600);  // per test, wall time

// Loops run at least once, so a thread that starts late (a loaded machine) still counts.
bool time_left(std::chrono::steady_clock::time_point start) {
  return std::chrono::steady_clock::now() - start < budget;
}

TEST(Stress, ManyThreadsEachRunningManyContexts) {
  const long alive = counted::alive.load();
  {
    context_var<counted> v("v");
    context_var<int> w("w", -1);
    std::atomic<long> bad{0}, ops{0};
    std::vector<std::thread> ts;
    const auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < 6; ++t)
      ts.emplace_back([&, t] {
        long local = 0;
        for (bool first = true; first || time_left(start); first = false) {  // at least once
          context c;
          c.run([&] {
            for (int i = 0; i < 50; ++i) {
              auto tok = v.set(counted(t * 1000 + i));
              if (v.get().v != t * 1000 + i) ++bad;
              context inner = copy_context();
              inner.run([&] {
                (void)w.set(i);
                if (v.get().v != t * 1000 + i) ++bad;
              });
              if (w.get() != -1) ++bad;  // inner's set stayed inside
              if (i % 2) v.reset(tok);
              ++local;
            }
          });
        }
        ops += local;
      });
    for (auto& th : ts) th.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(ops.load(), 0);
    RecordProperty("operations", std::to_string(ops.load()));
    std::printf("[figures] stress: %ld set/get/copy/run rounds on 6 threads\n", ops.load());
  }
  EXPECT_EQ(counted::alive.load(), alive) << "every value destroyed exactly once";
}

TEST(Stress, ContextsHandedBetweenThreadsAndReadWhileRunning) {
  const long alive = counted::alive.load();
  {
    context_var<counted> v("v");
    std::vector<context> ctxs(8);
    for (int i = 0; i < 8; ++i) ctxs[static_cast<std::size_t>(i)].run([&] { (void)v.set(counted(i * 1000)); });
    std::atomic<long> bad{0}, in_use{0}, reads{0};
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    // Writers: enter any context (racing each other), bump its value by 1.
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        unsigned k = static_cast<unsigned>(t);
        for (bool first = true; first || time_left(start); first = false) {  // at least once
          context& c = ctxs[(k += 3) % 8];
          try {
            c.run([&] {
              const int before = v.get().v;
              (void)v.set(counted(before + 1));
              if (v.get().v != before + 1) ++bad;
            });
          } catch (const context_in_use_error&) {
            ++in_use;
          }
        }
      });
    // Readers: read contexts others are running in; values only grow, and
    // each context's values stay in its own range.
    for (int t = 0; t < 2; ++t)
      ts.emplace_back([&] {
        std::vector<int> last(8, 0);
        for (bool first = true; first || time_left(start); first = false) {  // at least once
          for (int i = 0; i < 8; ++i) {
            auto x = ctxs[static_cast<std::size_t>(i)].get(v);
            const int val = x ? x->v : -1;
            if (val < i * 1000 || val < last[static_cast<std::size_t>(i)]) ++bad;
            last[static_cast<std::size_t>(i)] = val;
            for (auto e : ctxs[static_cast<std::size_t>(i)].copy()) (void)e.name();
            ++reads;
          }
        }
      });
    for (auto& th : ts) th.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(reads.load(), 0);
    RecordProperty("contended_entries", std::to_string(in_use.load()));
    std::printf("[figures] stress: %ld foreign reads of running contexts, %ld contended entries refused\n",
                reads.load(), in_use.load());
  }
  EXPECT_EQ(counted::alive.load(), alive);
}

TEST(Stress, BindAcrossAThreadPool) {
  const long alive = counted::alive.load();
  {
    context_var<counted> v("v");
    std::atomic<long> bad{0}, done{0};
    {
      thread_pool pool(4);
      for (int i = 0; i < 4000; ++i) {
        context().run([&] {
          (void)v.set(counted(i));
          pool.post(ctxvars::bind([&v, &bad, &done, i] {
            if (v.get().v != i) ++bad;
            (void)v.set(counted(-i));  // stays in this call's copy
            ++done;
          }));
        });
      }
    }
    EXPECT_EQ(done.load(), 4000);
    EXPECT_EQ(bad.load(), 0);
  }
  EXPECT_EQ(counted::alive.load(), alive);
}

TEST(Stress, ThousandsOfTasksOnAThreadPool) {
  const long alive = counted::alive.load();
  {
    context_var<counted> v("v");
    std::atomic<long> bad{0};
    thread_pool pool(4);
    std::vector<spawned<int>> all;
    for (int i = 0; i < 2000; ++i) {
      auto t = [](thread_pool& p, context_var<counted>& var, std::atomic<long>& b, int id) -> task<int> {
        (void)var.set(counted(id));
        for (int k = 0; k < 5; ++k) {
          co_await p.schedule();
          if (var.get().v != id) ++b;
        }
        co_return var.get().v;
      }(pool, v, bad, i);
      all.push_back(spawn(pool, std::move(t)));
    }
    for (int i = 0; i < 2000; ++i) EXPECT_EQ(all[static_cast<std::size_t>(i)].get(), i);
    EXPECT_EQ(bad.load(), 0);
  }
  EXPECT_EQ(counted::alive.load(), alive);
}

}  // namespace
